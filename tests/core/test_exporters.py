"""Writers: Audio2Face JSON layout, Live Link Face CSV, NPZ, and atomic writes."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.errors import OutputError
from a2x_core.export.writers import (
    arkit_weights_from,
    check_output_path,
    live_link_timecode,
    read_a2f_json,
    write_json,
    write_result,
)
from a2x_core.names import ARKIT_52, LIVE_LINK_FACE_52
from a2x_core.options import InferenceOptions
from a2x_core.result import AnimationResult


def _result(frames: int = 90, fps: Fraction = Fraction(30), **extra) -> AnimationResult:
    rng = np.random.default_rng(1)
    weights = rng.uniform(0, 1, (frames, 52)).astype(np.float32)
    return AnimationResult(
        weights=weights, fps=fps, audio_path="/clips/line 01.wav", duration_s=frames / float(fps),
        model="default", model_version="1", options=InferenceOptions(fps=fps),
        parameters={"gain": 1.5}, **extra,
    )  # fmt: skip


def test_json_has_the_audio2face_layout_and_a2x_block(tmp_path: Path) -> None:
    result = _result(fps=Fraction(30000, 1001))
    path = write_result(result, tmp_path / "take.json")
    data = json.loads(path.read_text())
    assert data["exportFps"] == pytest.approx(29.97, abs=1e-3)
    assert data["trackPath"] == "/clips/line 01.wav"
    assert data["numPoses"] == 52 and data["numFrames"] == 90
    assert data["facsNames"] == list(ARKIT_52)
    assert np.allclose(np.array(data["weightMat"]), result.weights, atol=1e-6)
    assert data["a2x"]["fps"] == "30000/1001" and data["a2x"]["parameters"] == {"gain": 1.5}
    assert data["a2x"]["options"]["fps"] == "30000/1001"
    names, weights, fps = read_a2f_json(path)
    assert names == list(ARKIT_52) and weights.shape == (90, 52) and fps == pytest.approx(29.97, abs=1e-3)


def test_json_carries_the_audio2face_extras(tmp_path: Path) -> None:
    frames = 10
    result = _result(
        frames,
        tongue_weights=np.full((frames, 16), 0.25, np.float32),
        tongue_names=tuple(f"t{i}" for i in range(16)),
        jaw_transforms=np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1)),
        eye_rotations=np.zeros((frames, 6), np.float32),
        emotions=np.zeros((frames, 10), np.float32),
        emotion_names=tuple(f"e{i}" for i in range(10)),
    )
    block = json.loads(write_result(result, tmp_path / "x.json").read_text())["a2x"]
    assert np.array(block["tongueWeightMat"]).shape == (frames, 16)
    assert np.array(block["jawTransforms"]).shape == (frames, 4, 4)
    assert np.array(block["eyeRotations"]).shape == (frames, 6)
    assert len(block["emotionNames"]) == 10


def test_csv_matches_a_real_live_link_take(tmp_path: Path, shared_data: Path) -> None:
    with open(shared_data / "arkit_capture_no_audio" / "livelinkface_alex_rom_3.csv") as handle:
        real_header = next(csv.reader(handle))
    result = _result(frames=130, fps=Fraction(60))
    path = write_result(result, tmp_path / "take.csv")
    with open(path) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == real_header
    assert len(rows) == 131 and all(len(r) == len(real_header) for r in rows)
    assert rows[1][0] == "00:00:00:00.000" and rows[1][1] == "61"
    assert rows[61][0] == "00:00:01:00.000" and rows[130][0] == "00:00:02:09.000"
    # values land under the right (PascalCase, JawRight-before-JawLeft) column
    for name in ("JawLeft", "JawRight", "MouthLeft", "MouthRight", "TongueOut", "EyeBlinkLeft"):
        column = rows[0].index(name)
        source = ARKIT_52.index(name[0].lower() + name[1:])
        assert float(rows[5][column]) == pytest.approx(result.weights[4, source], abs=1e-9)


def test_csv_timecodes_at_fractional_fps_use_the_nominal_rate() -> None:
    assert live_link_timecode(30, 30) == "00:00:01:00.000"
    assert live_link_timecode(3600 * 30 + 61, 30) == "01:00:02:01.000"


def test_npz_holds_every_array(tmp_path: Path) -> None:
    result = _result(12)
    result.arrays["loudness"] = np.linspace(0, 1, 12, dtype=np.float32)
    path = write_result(result, tmp_path / "take.npz")
    with np.load(path) as data:
        assert set(data.files) >= {"weights", "names", "times_s", "fps", "loudness", "a2x_json"}
        assert np.array_equal(data["weights"], result.weights)
        assert data["fps"].tolist() == [30, 1]
        assert json.loads(str(data["a2x_json"]))["model"] == "default"


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    result = _result(5)
    result.weights[2, 3] = np.nan  # JSON cannot hold NaN: the JSON writer fails half-way
    with pytest.raises(ValueError):
        write_json(result, tmp_path / "bad.json")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="NaN"):  # write_result refuses before writing
        write_result(result, tmp_path / "bad.json")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "artist.json"
    path.write_text("mine")
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_path(path, overwrite=False)
    assert check_output_path(path, overwrite=True) == ".json"
    with pytest.raises(OutputError, match="unknown output format"):
        check_output_path(tmp_path / "x.fbx", overwrite=False)
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "x.json", overwrite=False)


def test_reorder_any_named_matrix_to_arkit() -> None:
    weights = np.array([[0.1, 0.9]], np.float32)
    out = arkit_weights_from(["Face.JawOpen", "AK_00_EyeBlinkLeft"], weights)
    assert out[0, ARKIT_52.index("jawOpen")] == pytest.approx(0.1)
    assert out[0, 0] == pytest.approx(0.9) and out.sum() == pytest.approx(1.0)
    assert len(LIVE_LINK_FACE_52) == 52


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    import os

    mask = os.umask(0)
    os.umask(mask)
    for ext in ("json", "csv", "npz"):
        path = write_result(_result(3), tmp_path / f"take.{ext}")
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask
