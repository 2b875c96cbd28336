"""Frame targets and audio windows at any rational fps (SDK spec §3, §8.1-8.3)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from a2x_core.audio.windows import audio_windows, frame_plan


@pytest.mark.parametrize(
    ("fps", "first_targets"),
    [
        (Fraction(24), [0, 666, 1333, 2000, 2666]),
        (Fraction(30), [0, 533, 1066, 1600, 2133]),  # alternates 533/534 samples
        (Fraction(60), [0, 266, 533, 800, 1066]),
        (Fraction(30000, 1001), [0, 533, 1067, 1601, 2135]),  # 533.866... samples per frame
    ],
)
def test_targets_truncate_exactly(fps: Fraction, first_targets: list[int]) -> None:
    targets = frame_plan(16000 * 10, fps)
    assert targets[:5].tolist() == first_targets
    # every target is floor(i * 16000 * den / num), exact in integers
    i = np.arange(len(targets))
    assert np.array_equal(targets, (i * 16000 * fps.denominator) // fps.numerator)


@pytest.mark.parametrize(
    ("num_samples", "fps", "frames"),
    [
        (16000, Fraction(30), 30),
        (16001, Fraction(30), 31),  # frame 30 targets sample 16000 < 16001
        (533, Fraction(30), 1),
        (534, Fraction(30), 2),
        (16000 * 60, Fraction(30000, 1001), 1799),  # 59.94 fps for 60 s: targets < 960000
        (16000 * 2, Fraction(24), 48),
    ],
)
def test_closed_audio_emits_frames_with_target_before_the_end(
    num_samples: int, fps: Fraction, frames: int
) -> None:
    targets = frame_plan(num_samples, fps)
    assert len(targets) == frames
    assert targets[-1] < num_samples
    assert (len(targets) * 16000 * fps.denominator) // fps.numerator >= num_samples


def test_long_ntsc_clip_stays_exact() -> None:
    fps = Fraction(30000, 1001)
    targets = frame_plan(16000 * 3600, fps)  # one hour
    # 107892 frames = 3599.9964 s: 107892 * 16016000 / 30000 = 57599942.4 -> 57599942
    assert targets[107892] == 57599942


def _reference_window(samples: np.ndarray, target: int, strength: float) -> np.ndarray:
    """Straight loop: window [target - 4160, target + 4160), zeros outside, then x strength."""
    out = np.zeros(8320, dtype=np.float32)
    for k in range(8320):
        n = target - 4160 + k
        if 0 <= n < len(samples):
            out[k] = samples[n]
    return out * np.float32(strength) if strength != 1.0 else out


@pytest.mark.parametrize("strength", [1.0, 1.5, 1.3])
def test_windows_match_a_loop_with_zero_padding_on_both_sides(strength: float) -> None:
    rng = np.random.default_rng(3)
    samples = rng.uniform(-1, 1, 16000 * 10).astype(np.float32)
    # the SDK's test windows: t = 0.1, 4.0 and 9.8 s (gen_test_data.py), plus the two ends
    targets = np.array([0, 1600, 64000, 156800, len(samples) - 1])
    windows = audio_windows(samples, targets, 8320, 4160, strength)
    assert windows.dtype == np.float32 and windows.shape == (5, 8320)
    for row, target in zip(windows, targets, strict=True):
        np.testing.assert_array_equal(row, _reference_window(samples, int(target), strength))
    assert not windows[0, :4160].any()  # before the clip
    assert not windows[-1, 4161:].any()  # after the clip


def test_window_of_a_clip_shorter_than_the_window() -> None:
    samples = np.arange(1, 101, dtype=np.float32)
    window = audio_windows(samples, np.array([50]), 8320, 4160)[0]
    assert window[4160] == 51.0 and window[4110] == 1.0 and window[4209] == 100.0
    assert window.sum() == samples.sum()
