"""Blinks, loudness, pitch and brows: repeatable, plausible, bounded."""

from __future__ import annotations

import numpy as np

from a2x_core.lipsync import expressions as ex
from a2x_core.timing import SAMPLE_RATE


def test_blinks_repeat_per_seed_and_differ_between_seeds() -> None:
    times = np.arange(0, 60, 1 / 60)
    a, b = ex.blink_curve(times, seed=7), ex.blink_curve(times, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, ex.blink_curve(times, seed=8))
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_blink_rate_shape_and_doubles_are_natural() -> None:
    minutes = 30
    events = ex.blink_onsets(minutes * 60.0, seed=1)
    rate = len(events) / minutes
    assert 12 <= rate <= 22, rate
    durations = [close + hold + opening for _, close, hold, opening, _ in events]
    assert 0.15 <= min(durations) and max(durations) <= 0.25
    gaps = np.diff([onset for onset, *_ in events])
    doubles = np.mean(gaps < 0.5)
    assert 0.05 <= doubles <= 0.2, doubles


def test_a_blink_closes_the_eye_and_opens_again() -> None:
    times = np.arange(0, 20, 1 / 120)
    curve = ex.blink_curve(times, seed=3)
    assert curve.max() >= 0.9
    assert curve[0] == 0 and np.abs(np.diff(curve)).max() < 0.5


def tone(f0: np.ndarray) -> np.ndarray:
    """A harmonic tone following ``f0`` (Hz per sample), like a sustained vowel."""
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


def test_pitch_tracks_a_tone() -> None:
    samples = tone(np.full(SAMPLE_RATE, 150.0))
    level = ex.normalised_loudness(ex.loudness_db(samples))
    f0 = ex.pitch_hz(samples, level)
    voiced = f0[10:-10]
    assert np.all(np.abs(voiced - 150) < 5)


def test_a_pitch_accent_raises_the_brows_and_flat_speech_does_not() -> None:
    n = 3 * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    bump = 120 + 60 * np.exp(-(((t - 1.5) / 0.15) ** 2))  # 120 Hz with a peak of 180 Hz
    for contour, expect in ((bump, True), (np.full(n, 120.0), False)):
        samples = tone(contour)
        level = ex.normalised_loudness(ex.loudness_db(samples))
        accents = ex.pitch_accents(ex.pitch_hz(samples, level), level)
        assert bool(accents) == expect
        if expect:
            assert abs(accents[0][0] - 1.5) < 0.1
            brow = ex.brow_curve(np.arange(0, 3, 1 / 60), accents)
            assert 0.15 <= brow.max() <= 0.45 and brow[0] == 0


def test_loudness_is_normalised_and_openness_follows_f1() -> None:
    quiet = tone(np.full(SAMPLE_RATE, 120.0)) * 0.01
    level = ex.normalised_loudness(ex.loudness_db(quiet))
    assert level.max() == 1.0 and level.min() >= 0
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, high = (np.sin(2 * np.pi * f * t).astype(np.float32) for f in (300.0, 750.0))
    assert ex.openness(high)[10:-10].mean() > ex.openness(low)[10:-10].mean() + 0.5
