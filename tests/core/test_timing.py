"""Exact frame rates and the SDK's frame-target rule."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from a2x_core.errors import ParameterError
from a2x_core.timing import frame_targets, frame_times_s, num_frames_for, parse_fps


@pytest.mark.parametrize(
    ("text", "expected"),
    [("60", Fraction(60)), ("30000/1001", Fraction(30000, 1001)), ("29.97", Fraction(30000, 1001)),
     ("23.976", Fraction(24000, 1001)), ("12.5", Fraction(25, 2)), (24, Fraction(24))],
)  # fmt: skip
def test_parse_fps(text: str, expected: Fraction) -> None:
    assert parse_fps(text) == expected


@pytest.mark.parametrize("bad", ["0", "-30", "abc", "30/0", "2000", "1/"])
def test_parse_fps_rejects_with_a_hint(bad: str) -> None:
    with pytest.raises(ParameterError, match="fps"):
        parse_fps(bad)


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30), Fraction(60), Fraction(30000, 1001)])
def test_frame_targets_follow_floor_rule_exactly(fps: Fraction) -> None:
    targets = frame_targets(100_000, fps)
    # independent reference in Python integers
    expected = [i * 16000 * fps.denominator // fps.numerator for i in range(100_000)]
    assert targets.tolist() == expected


def test_thirty_fps_alternates_533_and_534_samples() -> None:
    steps = np.diff(frame_targets(7, Fraction(30)))
    assert steps.tolist() == [533, 533, 534, 533, 533, 534]


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30), Fraction(60), Fraction(30000, 1001)])
@pytest.mark.parametrize("samples", [1, 265, 266, 267, 16000, 16001, 176_000])
def test_closed_audio_emits_frames_whose_target_is_inside(fps: Fraction, samples: int) -> None:
    count = num_frames_for(samples, fps)
    targets = frame_targets(count + 1, fps)
    assert targets[count - 1] < samples <= targets[count]


def test_frame_times() -> None:
    assert frame_times_s(3, Fraction(30000, 1001))[2] == pytest.approx(2 * 1001 / 30000)
