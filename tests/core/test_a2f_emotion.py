"""Emotion input: keyed curves like the SDK's EmotionAccumulator, CLI flags, track files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a2x_core.errors import ParameterError
from a2x_core.models.emotion_input import (
    A2F_EMOTIONS,
    EmotionCurve,
    explicit_emotion_curve,
    load_emotion_track,
    parse_emotion_args,
    parse_parameter_args,
)

JOY = A2F_EMOTIONS.index("joy")
ANGER = A2F_EMOTIONS.index("anger")


def test_curve_clamps_before_and_after_and_lerps_between() -> None:
    curve = EmotionCurve(np.array([1000, 3000]), np.array([[0.0, 1.0], [1.0, 0.5]], np.float32))
    out = curve.sample(np.array([0, 1000, 1500, 2000, 3000, 9000]))
    expected = [[0, 1], [0, 1], [0.25, 0.875], [0.5, 0.75], [1, 0.5], [1, 0.5]]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    assert out.dtype == np.float32


def test_curve_lerp_rounds_like_two_float32_fmas() -> None:
    a, b = np.float32(0.1), np.float32(0.7)
    curve = EmotionCurve(np.array([0, 3]), np.array([[a], [b]], np.float32))
    t = np.float32(np.float32(1) / np.float32(3))
    inner = np.float32(float(a) - float(t) * float(a))  # fma(-t, a, a)
    expected = np.float32(float(t) * float(b) + float(inner))  # fma(t, b, inner)
    assert curve.sample(np.array([1]))[0, 0] == expected


def test_no_keys_gives_the_default_emotion_for_every_frame() -> None:
    default = np.linspace(0, 0.9, 10).astype(np.float32)
    out = explicit_emotion_curve((), A2F_EMOTIONS, default).sample(np.array([0, 5000, 10**9]))
    np.testing.assert_array_equal(out, np.tile(default, (3, 1)))


def test_keys_are_in_source_seconds_and_missing_names_take_the_default() -> None:
    keys = ((1.0, {"joy": 0.0}), (2.0, {"joy": 1.0, "anger": 0.5}))
    curve = explicit_emotion_curve(keys, A2F_EMOTIONS, np.zeros(10), start_s=0.5)
    assert curve.timestamps.tolist() == [8000, 24000]  # 0.5 s and 1.5 s into the track
    out = curve.sample(np.array([16000]))[0]
    assert out[JOY] == pytest.approx(0.5) and out[ANGER] == pytest.approx(0.25)


def test_parse_emotion_args_constant_and_keyed() -> None:
    assert parse_emotion_args(["joy=0.7", "anger=0.2"]) == ((0.0, {"joy": 0.7, "anger": 0.2}),)
    assert parse_emotion_args(["out_of_breath=1"]) == ((0.0, {"outofbreath": 1.0}),)
    keys = parse_emotion_args(["2.5:joy=1", "0:joy=0,anger=0.3", "grief=0.1"])
    assert keys == (
        (0.0, {"grief": 0.1, "joy": 0.0, "anger": 0.3}),
        (2.5, {"grief": 0.1, "joy": 1.0}),
    )
    assert parse_emotion_args([]) == ()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["happy=0.5"], "unknown emotion 'happy'; use one of: amazement, anger"),
        (["joy"], "is not NAME=VALUE"),
        (["joy=lots"], "'lots' is not a number"),
        (["joy=1.5"], "out of range; use 0..1"),
        (["x:joy=1"], "'x' is not a time in seconds"),
        (["-1:joy=1"], "negative"),
    ],
)
def test_parse_emotion_args_errors_name_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(ParameterError) as error:
        parse_emotion_args(flags)
    assert message in str(error.value)
    assert "--emotion" in str(error.value)


def test_emotion_track_json_and_csv(tmp_path: Path) -> None:
    as_json = tmp_path / "track.json"
    as_json.write_text(json.dumps({"keys": [
        {"time_s": 2.5, "emotions": {"joy": 1.0, "anger": 0.2}},
        {"time_s": 0.0, "emotions": {"joy": 0.0}},
    ]}))  # fmt: skip
    as_csv = tmp_path / "track.csv"
    as_csv.write_text("# an emotion track\ntime_s,joy,anger\n0.0,0.0,\n2.5,1.0,0.2\n")
    expected = ((0.0, {"joy": 0.0}), (2.5, {"joy": 1.0, "anger": 0.2}))
    assert load_emotion_track(as_json) == expected
    assert load_emotion_track(as_csv) == expected


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("t.json", "{", "is not valid JSON"),
        ("t.json", '{"keys": [{"time": 0}]}', 'needs "time_s"'),
        ("t.json", '{"keys": [{"time_s": 0, "emotions": {"glee": 1}}]}', "unknown emotion 'glee'"),
        (
            "t.json",
            '{"keys": [{"time_s": 1, "emotions": {}}, {"time_s": 1, "emotions": {}}]}',
            "two keys at 1.0 s",
        ),
        ("t.csv", "time,joy\n0,1\n", "first column must be 'time_s'"),
        ("t.csv", "time_s,joy\n0,1,2\n", "row 2 has 3 cells"),
        ("t.csv", "time_s,joy\n0,abc\n", "not a number"),
        ("t.txt", "", "unknown emotion track format"),
    ],
)
def test_emotion_track_errors_name_the_file(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ParameterError) as error:
        load_emotion_track(path)
    assert message in str(error.value) and name in str(error.value)


def test_missing_track_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="not found"):
        load_emotion_track(tmp_path / "none.json")


def test_parse_parameter_args() -> None:
    params = parse_parameter_args([
        "input_strength=1.0", "source_shot=cp1_neutral", "eye_saccade_seed=12",
        "skin.bsSolveActivePoses=[1,0,1]", "tongue.bsWeightMultipliers=2,1,1",
        'skin.bsWeightOffsets={"jawOpen": 0.1}',
    ])  # fmt: skip
    assert params == {
        "input_strength": 1.0, "source_shot": "cp1_neutral", "eye_saccade_seed": 12,
        "skin.bsSolveActivePoses": [1, 0, 1], "tongue.bsWeightMultipliers": [2, 1, 1],
        "skin.bsWeightOffsets": {"jawOpen": 0.1},
    }  # fmt: skip
    with pytest.raises(ParameterError, match="is not KEY=VALUE"):
        parse_parameter_args(["input_strength"])
    with pytest.raises(ParameterError, match="given twice"):
        parse_parameter_args(["a=1", "a=2"])


def test_parse_parameter_args_names_its_flag() -> None:
    assert parse_parameter_args(["emotion_strength=1"], flag="--emotion-param") == {
        "emotion_strength": 1
    }
    with pytest.raises(ParameterError, match="--emotion-param 'x' is not KEY=VALUE; write e.g. "
                       "--emotion-param emotion_strength=1.0"):  # fmt: skip
        parse_parameter_args(["x"], flag="--emotion-param")
    with pytest.raises(ParameterError, match="--emotion-param a is given twice"):
        parse_parameter_args(["a=1", "a=2"], flag="--emotion-param")
