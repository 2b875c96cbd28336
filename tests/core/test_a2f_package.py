"""Regression model folders: loading, strict validation messages, engine bindings, parameters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from a2x_core.errors import EngineError, ModelError, ModelPackageError, ParameterError
from a2x_core.models.registry import load_model
from a2x_core.models.regression import RegressionModel
from a2x_core.models.regression_folder import load_regression_package
from a2x_core.names import ARKIT_52, TONGUE_16
from tests.a2f_folders import make_regression_folder, write_onnx


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory):
    return make_regression_folder(tmp_path_factory.mktemp("a2f") / "model")


@pytest.fixture
def folder(pristine, tmp_path: Path) -> Path:
    """A private copy of the generated folder that a test may damage."""
    target = tmp_path / "model"
    shutil.copytree(pristine.folder, target)
    return target


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_npz(path: Path, change) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(path, **arrays)


def test_loads_every_file_and_falls_back_from_trt_to_onnx(pristine) -> None:
    package = load_regression_package(pristine.model_json)
    assert package.trt_path.name == "network.trt" and not package.trt_path.exists()
    assert package.onnx_path == pristine.folder / "network.onnx"
    info = package.network_info
    assert (info.actor, info.buffer_len, info.buffer_ofs, info.emotion_size) == (
        "testactor",
        8320,
        4160,
        26,
    )
    assert info.result_size == 6 + 4 + 15 + 4
    assert package.skin.data.pose_names == ARKIT_52
    assert package.skin.data.deltas.shape == (52, 90 * 3)
    assert package.skin.data.frontal_mask.dtype == np.int32
    assert package.tongue.data.frontal_mask is None
    assert package.config["input_strength"] == 1.3
    assert package.emotion_db.shots["cp2_joy"] == (5, 3)
    np.testing.assert_array_equal(package.emotion_db.row("cp1_neutral", 2), pristine.emo_db[2])


def test_load_model_dispatches_to_regression(pristine) -> None:
    model = load_model(pristine.model_json, backend="onnxruntime", threads=1)
    assert isinstance(model, RegressionModel)
    assert (model.name, model.kind, model.version) == ("testactor", "regression", "2.3")
    assert model.emotion_names[0] == "amazement" and len(model.emotion_names) == 10
    info = model.info()
    assert info["engine"]["backend"] == "onnxruntime"
    assert "skin.strengthL2regularization" in info["parameters"]
    assert "tongue.bsWeightMultipliers.<pose>" in info["parameter_ranges"]


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("network_info.json", lambda d: d["id"].update(type="diffusion"), "id.type/id.output"),
        ("network_info.json", lambda d: d["params"].pop("num_verts_skin"), "params.num_verts_skin"),
        (
            "network_info.json",
            lambda d: d["params"].update(default_emotion=[0.0] * 9),
            "default_emotion has 9",
        ),
        (
            "network_info.json",
            lambda d: d["audio_params"].update(samplerate=22050),
            "samplerate is 22050",
        ),
        (
            "model_config.json",
            lambda d: d["config"].update(face_mask_softness=0.0),
            "face_mask_softness=0.0 is below",
        ),
        (
            "model_config.json",
            lambda d: d["config"].update(lower_face_strength=2.5),
            "above its maximum 2.0",
        ),
        (
            "model_config.json",
            lambda d: d["config"].update(eye_saccade_seed=5000),
            "eye_saccade_seed=5000",
        ),
        (
            "model_config.json",
            lambda d: d["config"].update(skin_strength="NaN"),
            "must be a number",
        ),
        (
            "model_config.json",
            lambda d: d["config"].pop("tongue_strength"),
            "config.tongue_strength",
        ),
        (
            "model_config.json",
            lambda d: d["config"].update(source_shot="nope"),
            "source_shot 'nope'",
        ),
        (
            "model_config.json",
            lambda d: d["config"].update(source_frame=5),
            "source_frame 5 is outside",
        ),
        (
            "bs_skin_config.json",
            lambda d: d["blendshape_params"].update(numPoses=51),
            "numPoses is 51",
        ),
        (
            "bs_skin_config.json",
            lambda d: d["blendshape_params"].update(strengthL2regularization=-1),
            "below its minimum",
        ),
        (
            "bs_skin_config.json",
            lambda d: d["blendshape_params"].update(templateBBSize=0.5),
            "templateBBSize=0.5",
        ),
        (
            "bs_skin_config.json",
            lambda d: d["blendshape_params"]["bsSolveCancelPoses"].__setitem__(3, 7),
            "exactly 2",
        ),
        (
            "bs_tongue_config.json",
            lambda d: d["blendshape_params"].update(bsSolveActivePoses=[0] * 16),
            "at least one",
        ),
        (
            "bs_tongue_config.json",
            lambda d: d["blendshape_params"].update(bsWeightOffsets=[0.0] * 15),
            "has 15 values",
        ),
        ("model.json", lambda d: d.pop("modelDataPath"), "'modelDataPath' is missing"),
    ],
)
def test_json_errors_name_file_key_and_values(
    folder: Path, file: str, change, message: str
) -> None:
    _edit_json(folder / file, change)
    with pytest.raises(ModelPackageError) as error:
        load_regression_package(folder / "model.json")
    assert message in str(error.value)
    assert file in str(error.value)


def test_nan_parameter_in_config_is_rejected(folder: Path) -> None:
    text = (
        (folder / "model_config.json")
        .read_text()
        .replace('"skin_strength": 1.1', '"skin_strength": NaN')
    )
    (folder / "model_config.json").write_text(text)
    with pytest.raises(ModelPackageError, match="config.skin_strength is NaN"):
        load_regression_package(folder / "model.json")


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (
            "model_data.npz",
            lambda a: a.update(shapes_mean_skin=a["shapes_mean_skin"].astype(np.float64)),
            "'shapes_mean_skin' has dtype float64, expected float32",
        ),
        (
            "model_data.npz",
            lambda a: a.update(shapes_matrix_skin=a["shapes_matrix_skin"][:5]),
            "'shapes_matrix_skin' has shape [5, 90, 3], expected [6, 90, 3]",
        ),
        ("model_data.npz", lambda a: a.pop("neutral_jaw"), "'neutral_jaw' is missing"),
        ("model_data.npz", lambda a: a["lip_open_pose_delta"].__setitem__((0, 0), np.nan), "NaN"),
        (
            "implicit_emo_db.npz",
            lambda a: a.update(emo_spec_start=a["emo_spec_start"].astype(np.int64)),
            "'emo_spec_start' has dtype int64, expected int32",
        ),
        ("implicit_emo_db.npz", lambda a: a.update(emo_db=a["emo_db"][:, :15]), "expected [*, 16]"),
        ("implicit_emo_db.npz", lambda a: a.update(emo_spec_names=np.zeros(3)), "string array"),
        ("bs_skin.npz", lambda a: a.update(poseNames=a["poseNames"][::-1]), "poseNames[0] is"),
        (
            "bs_skin.npz",
            lambda a: a.update(jawOpen=a["jawOpen"][:-1]),
            "'jawOpen' has 267 values, expected 270",
        ),
        (
            "bs_skin.npz",
            lambda a: a.update(frontalMask=np.array([0, 999], np.int32)),
            "frontalMask",
        ),
        (
            "bs_tongue.npz",
            lambda a: a.update(neutral=a["neutral"].reshape(-1)[:-1]),
            "multiple of 3",
        ),
    ],
)
def test_npz_errors_name_file_array_and_expected(
    folder: Path, file: str, change, message: str
) -> None:
    _edit_npz(folder / file, change)
    with pytest.raises(ModelPackageError) as error:
        load_regression_package(folder / "model.json")
    assert message in str(error.value)
    assert file in str(error.value)


def test_missing_files(folder: Path) -> None:
    (folder / "network.onnx").unlink()
    with pytest.raises(
        ModelPackageError, match=r"network\.onnx: missing \(model.json names network\.trt"
    ):
        load_regression_package(folder / "model.json")
    shutil.copy(folder / "model_config.json", folder / "network.onnx")  # restore a file there
    # trt_info.json is optional, as in the SDK (only a TensorRT build reads it)
    (folder / "trt_info.json").unlink()
    assert load_regression_package(folder / "model.json").onnx_path == folder / "network.onnx"


def test_no_blendshape_paths_is_a_model_error(folder: Path) -> None:
    _edit_json(folder / "model.json", lambda d: d.update(blendshapePaths={}))
    with pytest.raises(ModelError, match="blendshapePaths"):
        load_regression_package(folder / "model.json")


def test_missing_arkit_pose_is_named(tmp_path: Path) -> None:
    names = tuple(n if n != "cheekPuff" else "cheekBlow" for n in ARKIT_52)
    model = make_regression_folder(tmp_path / "m", skin_pose_names=names)
    with pytest.raises(ModelPackageError, match="lacks the ARKit-52 skin poses cheekPuff"):
        load_model(model.model_json, backend="onnxruntime")


def test_pose_names_map_by_name_in_any_order_and_case(tmp_path: Path) -> None:
    skin = tuple(reversed(ARKIT_52))
    tongue = tuple(n[0].upper() + n[1:] for n in TONGUE_16)  # Claire spells TongueTipUp
    model = load_model(
        make_regression_folder(
            tmp_path / "m", skin_pose_names=skin, tongue_pose_names=tongue
        ).model_json,
        backend="onnxruntime",
    )
    np.testing.assert_array_equal(model._skin_columns, np.arange(51, -1, -1))
    np.testing.assert_array_equal(model._tongue_columns, np.arange(16))


@pytest.mark.parametrize(
    ("names", "shapes", "message"),
    [
        (("input", "emotions"), None, "network inputs are ['emotions', 'input']"),
        (("input", "emotion"), 25, "network input emotion [B, 1, 25] float32 does not match"),
    ],
)
def test_engine_checks_bindings_against_network_info(
    folder: Path, names, shapes, message: str
) -> None:
    emo = shapes or 26
    write_onnx(
        folder / "network.onnx", np.zeros((8320, 29), np.float32), np.zeros((emo, 29), np.float32),
        np.zeros(29, np.float32), input_names=names, emotion_size=emo,
    )  # fmt: skip
    with pytest.raises(EngineError) as error:
        load_model(folder / "model.json", backend="onnxruntime")
    assert message in str(error.value)


def test_engine_checks_output_width(folder: Path) -> None:
    zeros = np.zeros((8320, 30), np.float32)
    write_onnx(folder / "network.onnx", zeros, zeros[:26], zeros[0])
    with pytest.raises(EngineError, match=r"result \[B, 1, 30\].*expected result \[B, 1, 29\]"):
        load_model(folder / "model.json", backend="onnxruntime")


def test_unavailable_backend(pristine) -> None:
    with pytest.raises(EngineError, match="not available"):
        load_model(pristine.model_json, backend="tensorrt")


# ----------------------------------------------------------------------------- parameter overrides


@pytest.fixture(scope="module")
def model(pristine) -> RegressionModel:
    return load_model(pristine.model_json, backend="onnxruntime", threads=1)


def test_overrides_merge_with_model_defaults(model: RegressionModel) -> None:
    settings = model.settings(
        {
            "input_strength": 1.0,
            "source_shot": "cp2_joy",
            "source_frame": 1,
            "skin.strengthL2regularization": 2.0,
            "skin.bsWeightMultipliers.jawOpen": 1.5,
            "tongue.bsWeightOffsets": {"tongueUp": 0.1},
            "tongue.bsSolveActivePoses": [1] * 15 + [0],
        }
    )
    assert settings.animator["input_strength"] == 1.0
    assert settings.animator["upper_face_smoothing"] == 0.001  # untouched default
    assert settings.skin.l2 == 2.0 and settings.skin.l1 == 0.5
    assert settings.skin.multipliers[ARKIT_52.index("jawOpen")] == np.float32(1.5)
    assert settings.tongue.offsets[TONGUE_16.index("tongueUp")] == np.float32(0.1)
    assert settings.tongue.active[-1] == 0
    np.testing.assert_array_equal(settings.implicit_emotion, model.package.emotion_db.emo_db[6])
    # the package itself is not modified
    assert model.package.skin.config.l2 == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"inputstrength": 1.0},
            "unknown parameter 'inputstrength'; valid parameters: input_strength",
        ),
        ({"skin.strengthL9": 1.0}, "unknown parameter 'skin.strengthL9'"),
        ({"upper_face_smoothing": 0.2}, "upper_face_smoothing=0.2 is above its maximum 0.1"),
        ({"face_mask_softness": float("nan")}, "face_mask_softness is NaN"),
        ({"eyelid_open_offset": "high"}, "must be a number"),
        ({"source_shot": "cp9"}, "source_shot 'cp9' is not in the emotion database"),
        ({"skin.strengthSymmetry": -3}, "skin.strengthSymmetry=-3 is below its minimum 0.0"),
        ({"skin.bsWeightMultipliers": [1.0] * 51}, "has 51 values, expected 52"),
        ({"skin.bsWeightMultipliers.jawOpenn": 1.0}, "unknown pose 'jawOpenn'"),
        ({"tongue.bsSolveSymmetryPoses.tongueUp": 4}, "exactly 2"),
        ({"tongue.bsSolveActivePoses": [0] * 16}, "at least one pose must be active"),
        ({"skin.bsWeightOffsets.jawOpen": float("inf")}, "NaN or infinite"),
    ],
)
def test_override_errors(model: RegressionModel, overrides, message: str) -> None:
    with pytest.raises(ParameterError) as error:
        model.settings(overrides)
    assert message in str(error.value)
