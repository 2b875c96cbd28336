"""The CLI with an Audio2Face-3D regression folder: several tracks, emotions, params, geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.a2f_folders import make_regression_folder
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def model_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models") / "mark"
    make_regression_folder(root, seed=3)
    return root / "model.json"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(5)
    paths = []
    for i, seconds in enumerate((0.7, 1.3, 0.4)):
        path = folder / f"line{i}.wav"
        sf.write(path, 0.3 * rng.standard_normal(int(44100 * seconds)), 44100)
        paths.append(path)
    return paths


@pytest.mark.slow
def test_several_tracks_as_one_batch_equal_single_runs(tmp_path: Path, model_json: Path, clips: list[Path]) -> None:
    batch_dir = tmp_path / "batch"
    proc = run_cli("animate", *map(str, clips), "--model", str(model_json), "-o", f"{batch_dir}/",
                   "--format", "npz", "--fps", "30", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for clip in clips:
        single = tmp_path / f"{clip.stem}.npz"
        proc = run_cli("animate", str(clip), "--model", str(model_json), "-o", str(single), "--fps", "30", "-q")
        assert proc.returncode == 0, proc.stderr
        with np.load(batch_dir / f"{clip.stem}.npz") as b, np.load(single) as s:
            for key in ("weights", "tongue_weights", "jaw_transforms", "eye_rotations"):
                assert np.array_equal(b[key], s[key]), key


def test_json_carries_tongue_jaw_eyes_and_emotions(tmp_path: Path, model_json: Path, clips: list[Path]) -> None:
    out = tmp_path / "joy.json"
    proc = run_cli("animate", str(clips[1]), "--model", str(model_json), "-o", str(out),
                   "--emotion", "joy=0.7", "--param", "input_strength=1.0", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    block = data["a2x"]
    assert block["parameters"]["input_strength"] == 1.0
    emotions = np.array(block["emotions"])
    joy = block["emotionNames"].index("joy")
    assert np.allclose(emotions[:, joy], 0.7) and np.array(block["tongueWeightMat"]).shape[1] == 16
    assert np.array(block["jawTransforms"]).shape[1:] == (4, 4)


def test_geometry_in_npz(tmp_path: Path, model_json: Path, clips: list[Path]) -> None:
    out = tmp_path / "geo.npz"
    proc = run_cli("animate", str(clips[2]), "--model", str(model_json), "-o", str(out), "--geometry", "-q")
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as data:
        assert data["skin_geometry"].ndim == 3 and data["skin_geometry"].shape[0] == data["weights"].shape[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--emotion", "glee=0.5"], "glee"), (["--param", "input_strength=abc"], "input_strength"),
     (["--param", "upper_face_smoothing=5"], "upper_face_smoothing"), (["--param", "nonsense=1"], "nonsense")],
)  # fmt: skip
def test_bad_emotion_and_params_are_clean_errors(tmp_path: Path, model_json: Path, clips: list[Path],
                                                 args: list[str], fragment: str) -> None:  # fmt: skip
    proc = run_cli("animate", str(clips[0]), "--model", str(model_json), "-o", str(tmp_path / "x.json"), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and fragment in proc.stderr, proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_info_and_models_list_the_folder(model_json: Path) -> None:
    info = run_cli("info", str(model_json.parent), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)
    listing = run_cli("models", str(model_json.parent.parent))
    assert listing.returncode == 0 and str(model_json) in listing.stdout and "regression" in listing.stdout


def test_default_model_only_options_are_flagged(tmp_path: Path, model_json: Path, clips: list[Path]) -> None:
    out = tmp_path / "t.json"
    proc = run_cli("animate", str(clips[0]), "--model", str(model_json), "-o", str(out),
                   "--transcript", "hello there", "--fast")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--transcript and --fast only apply to the default model" in proc.stderr
    assert "only apply to the default model" in json.loads(out.read_text())["a2x"]["warnings"][0]
    proc = run_cli("animate", str(clips[0]), "--model", str(model_json), "-o", str(out),
                   "--overwrite", "--language", "de")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--language only applies to the default model" in proc.stderr


@pytest.mark.slow
def test_engine_choice_is_recorded(tmp_path: Path, model_json: Path, clips: list[Path]) -> None:
    pytest.importorskip("torch")
    outs = {}
    for engine in ("onnxruntime", "torch"):
        outs[engine] = tmp_path / f"{engine}.json"
        proc = run_cli("animate", str(clips[0]), "--model", str(model_json), "-o", str(outs[engine]),
                       "--engine", engine, "--device", "cpu", "-q")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    data = {k: json.loads(v.read_text()) for k, v in outs.items()}
    assert data["torch"]["a2x"]["parameters"]["engine"] == "torch"
    assert data["onnxruntime"]["a2x"]["parameters"]["engine"] == "onnxruntime"
    assert np.allclose(data["torch"]["weightMat"], data["onnxruntime"]["weightMat"], atol=1e-4)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--engine", "onnxruntime", "--precision", "tf32"], "fp32 only"),
     (["--device", "gpu7"], "device"), (["--engine", "tensorrt"], "TensorRT")],
)  # fmt: skip
def test_engine_flag_errors(tmp_path: Path, model_json: Path, clips: list[Path], args: list[str],
                            fragment: str) -> None:  # fmt: skip
    try:
        import tensorrt  # noqa: F401

        if "tensorrt" in args:
            pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    proc = run_cli("animate", str(clips[0]), "--model", str(model_json), "-o", str(tmp_path / "x.json"), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and fragment in proc.stderr, proc.stderr


@pytest.mark.slow
def test_identity_and_emotion_flags_without_their_models_are_flagged(
    tmp_path: Path, model_json: Path, clips: list[Path]
) -> None:
    out = tmp_path / "i.json"
    proc = run_cli("animate", str(clips[2]), "--model", str(model_json), "-o", str(out),
                   "--identity", "claire", "--emotion-skip", "1", "--emotion-param",
                   "emotion_strength=1", "--emotion", "joy=0.5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warnings = json.loads(out.read_text())["a2x"]["warnings"]
    assert "--identity only applies to diffusion models; the regression model has one face" in warnings
    assert "--emotion-skip, --emotion-param only apply with an emotion model (--emotion-model)" in warnings
    options = json.loads(out.read_text())["a2x"]["options"]
    assert options["identity"] == "claire" and options["emotion_parameters"] == {"emotion_strength": 1}


@pytest.mark.slow
def test_compile_flag_without_a_cuda_torch_engine_is_flagged(
    tmp_path: Path, model_json: Path, clips: list[Path]
) -> None:
    plain, compiled = tmp_path / "plain.json", tmp_path / "compiled.json"
    assert run_cli("animate", str(clips[0]), "--model", str(model_json), "-o", str(plain)).returncode == 0
    proc = run_cli("animate", str(clips[0]), "--model", str(model_json), "-o", str(compiled),
                   "--compile", "--engine", "onnxruntime")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--compile only applies to regression models on the torch engine with CUDA" in proc.stderr
    data = json.loads(compiled.read_text())
    assert data["a2x"]["options"]["compile_network"] is True
    assert data["weightMat"] == json.loads(plain.read_text())["weightMat"]
