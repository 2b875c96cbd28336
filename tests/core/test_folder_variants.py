"""Model folders NVIDIA's SDK accepts load and animate (issue 11 point 1, sdk_audit.md §1).

Each variant is the canonical generated folder rewritten (``tests.a2f_folders.FolderVariant``):
arrays flat or reshaped, JSON integers as floats, no ``trt_info.json``, extra keys and arrays, a
longer diffusion ``blendshapePaths``. A content-identical variant must give exactly the canonical
folder's output (real ONNX Runtime runs of the generated networks on real speech); the A2E
variants the SDK tolerates with different content (strengths outside [0, 1]) load with a warning
and animate.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.audio.decode import Audio, decode_audio
from a2x_core.backends import EngineSettings
from a2x_core.errors import ModelPackageError, ParameterError
from a2x_core.models.audio2emotion import EmotionModel
from a2x_core.models.registry import load_model
from a2x_core.options import InferenceOptions
from tests.a2e_folders import make_emotion_folder
from tests.a2f_folders import EXTRA_NAME, FolderVariant, make_regression_folder
from tests.conftest import SAMPLE
from tests.diffusion_folders import make_diffusion_folder

#: Every content-identical variant, one at a time and all together.
VARIANTS = {
    "flat-arrays": FolderVariant(array_layout="flat"),
    "row-arrays": FolderVariant(array_layout="rows"),
    "float-ints": FolderVariant(float_ints=True),
    "no-trt-info": FolderVariant(trt_info=False),
    "extra-keys-and-arrays": FolderVariant(extras=True),
    "all": FolderVariant(array_layout="flat", float_ints=True, trt_info=False, extras=True),
}


@pytest.fixture(scope="module")
def speech() -> Audio:
    """1.5 s of real speech (the bundled JFK sample)."""
    return decode_audio(SAMPLE, start_s=1.0, end_s=2.5)


def _options(**changes: Any) -> InferenceOptions:
    return InferenceOptions(fps=30, backend="onnxruntime", threads=1, **changes)


def _run(model_json: Path, speech: Audio, **changes: Any) -> Any:
    model = load_model(model_json, backend="onnxruntime", threads=1)
    return model.animate([speech], _options(**changes))[0]


def _assert_same(got: Any, want: Any) -> None:
    np.testing.assert_array_equal(got.weights, want.weights)
    np.testing.assert_array_equal(got.tongue_weights, want.tongue_weights)
    assert np.all(np.isfinite(got.weights)) and np.ptp(got.weights) > 0


# ----------------------------------------------------------------------------- regression


@pytest.fixture(scope="module")
def regression_reference(tmp_path_factory: pytest.TempPathFactory, speech: Audio) -> Any:
    generated = make_regression_folder(tmp_path_factory.mktemp("canonical") / "model")
    return _run(generated.model_json, speech, geometry=True)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_regression_variant_loads_and_animates_as_the_canonical_folder(
    tmp_path: Path, speech: Audio, regression_reference: Any, name: str
) -> None:
    generated = make_regression_folder(tmp_path / "model", variant=VARIANTS[name])
    if name == "row-arrays":  # the variant really is on disk as the SDK would meet it
        with np.load(generated.folder / "model_data.npz") as npz:
            assert npz["shapes_matrix_skin"].shape == (6, 270)
    result = _run(generated.model_json, speech, geometry=True)
    _assert_same(result, regression_reference)
    assert "skin_geometry" in regression_reference.arrays
    for key, want in regression_reference.arrays.items():
        np.testing.assert_array_equal(result.arrays[key], want)


def test_half_integers_and_wrong_counts_stay_errors(tmp_path: Path) -> None:
    """Integral floats are integers; 2.5 is not. A flat array of the wrong size names both."""
    generated = make_regression_folder(tmp_path / "model", variant=FolderVariant(float_ints=True))
    config = generated.folder / "model_config.json"
    data = json.loads(config.read_text())
    data["config"]["source_frame"] = 2.5
    config.write_text(json.dumps(data))
    with pytest.raises(ModelPackageError, match=r"model_config\.json: .*source_frame.*2\.5"):
        load_model(generated.model_json, backend="onnxruntime")
    data["config"]["source_frame"] = 2.0
    config.write_text(json.dumps(data))
    info = generated.folder / "network_info.json"
    net = json.loads(info.read_text())
    net["params"]["num_verts_tongue"] = 30.5
    info.write_text(json.dumps(net))
    with pytest.raises(ModelPackageError, match=r"network_info\.json: .*num_verts_tongue.*30\.5"):
        load_model(generated.model_json, backend="onnxruntime")
    net["params"]["num_verts_tongue"] = 30.0
    info.write_text(json.dumps(net))
    path = generated.folder / "model_data.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["lip_open_pose_delta"] = arrays["lip_open_pose_delta"].reshape(-1)[:-1]
    np.savez(path, **arrays)
    with pytest.raises(ModelPackageError) as error:
        load_model(generated.model_json, backend="onnxruntime")
    text = str(error.value)
    assert "model_data.npz" in text and "'lip_open_pose_delta'" in text
    assert "expected [90, 3]" in text and "any layout of 270 values; found 269" in text


# ----------------------------------------------------------------------------- diffusion


@pytest.fixture(scope="module")
def diffusion_reference(tmp_path_factory: pytest.TempPathFactory, speech: Audio) -> Any:
    generated = make_diffusion_folder(tmp_path_factory.mktemp("canonical") / "model", latent=8)
    return _run(generated.model_json, speech, identity="Mark", seed=3)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(VARIANTS["flat-arrays"], id="flat-arrays"),
        pytest.param(VARIANTS["float-ints"], id="float-ints"),
        pytest.param(FolderVariant(extra_blendshape_paths=2), id="longer-blendshapePaths"),
        pytest.param(
            FolderVariant(
                array_layout="flat",
                float_ints=True,
                trt_info=False,
                extras=True,
                extra_blendshape_paths=1,
            ),
            id="all",
        ),  # fmt: skip
    ],
)
def test_diffusion_variant_loads_and_animates_as_the_canonical_folder(
    tmp_path: Path, speech: Audio, diffusion_reference: Any, variant: FolderVariant
) -> None:
    generated = make_diffusion_folder(tmp_path / "model", latent=8, variant=variant)
    if variant.extra_blendshape_paths:
        listed = json.loads(generated.model_json.read_text())["blendshapePaths"]
        assert len(listed) == 3 + variant.extra_blendshape_paths
    _assert_same(_run(generated.model_json, speech, identity="Mark", seed=3), diffusion_reference)


def test_diffusion_blendshape_paths_shorter_than_identities_is_an_error(tmp_path: Path) -> None:
    generated = make_diffusion_folder(tmp_path / "model", latent=8)
    data = json.loads(generated.model_json.read_text())
    data["blendshapePaths"].pop()
    generated.model_json.write_text(json.dumps(data))
    with pytest.raises(ModelPackageError, match="'blendshapePaths' lists 2 entries.*3 identities"):
        load_model(generated.model_json, backend="onnxruntime")


# ----------------------------------------------------------------------------- Audio2Emotion


def _emotions(model_json: Path, speech: Audio) -> np.ndarray:
    model = EmotionModel.load(model_json, EngineSettings("onnxruntime", threads=1))
    return model.detect(speech, 30).values


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(FolderVariant(float_ints=True), id="float-ints"),
        pytest.param(FolderVariant(trt_info=False), id="no-trt-info"),
        pytest.param(FolderVariant(extras=True), id="extra-keys-and-correspondence-names"),
    ],
)
def test_emotion_variant_detects_as_the_canonical_folder(
    tmp_path: Path, speech: Audio, variant: FolderVariant, caplog: pytest.LogCaptureFixture
) -> None:
    canonical = make_emotion_folder(tmp_path / "canonical")
    generated = make_emotion_folder(tmp_path / "variant", variant=variant)
    if variant.float_ints:
        config = json.loads((generated.folder / "model_config.json").read_text())
        assert config["post_processing_config"]["max_emotions"] == 6.0
    with caplog.at_level(logging.WARNING, logger="a2x_core"):
        got = _emotions(generated.model_json, speech)
    if variant.extras:  # the extra correspondence name is named in one warning
        notes = [r.getMessage() for r in caplog.records if EXTRA_NAME in r.getMessage()]
        assert len(notes) == 1 and "model_config.json" in notes[0]
    want = _emotions(canonical.model_json, speech)
    np.testing.assert_array_equal(got, want)
    assert want.max() > 0


def test_emotion_strengths_outside_unit_range_load_with_a_warning_and_animate(
    tmp_path: Path, speech: Audio, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "emotion_strength": 1.2, "preferred_emotion_strength": 1.5,
        "preferred_emotion": [0.0] * 9 + [1.4], "enable_preferred_emotion": True,
    }  # fmt: skip
    a2e = make_emotion_folder(tmp_path / "a2e", config=config, variant=FolderVariant(extras=True))
    with caplog.at_level(logging.WARNING, logger="a2x_core"):
        emotion_model = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))
    text = "\n".join(r.getMessage() for r in caplog.records)
    for key in ("emotion_strength=1.2", "preferred_emotion_strength=1.5", "preferred_emotion[9]"):
        assert key in text
    assert "model_config.json" in text
    assert emotion_model.package.config.emotion_strength == pytest.approx(1.2)
    regression = make_regression_folder(tmp_path / "mark")
    animator = Animator(regression.model_json, _options(), emotion_model=emotion_model)
    result = animator.animate(speech)
    assert np.all(np.isfinite(result.weights)) and result.num_frames == 45
    # an override is still held to the range a user may ask for
    with pytest.raises(ParameterError, match="emotion_strength"):
        emotion_model.detect(speech, 30, parameters={"emotion_strength": 1.3})
