"""Frame rates as exact fractions and the SDK's frame-timestamp rule.

Frame ``i`` of a clip at ``fps = num/den`` targets audio sample ``floor(i * 16000 * den / num)``
(SDK spec §3, §6: ``GetFrameTimestamp``); integer arithmetic keeps 30000/1001 exact over hours.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from .errors import ParameterError

SAMPLE_RATE = 16_000

#: Broadcast rates typed as decimals map to their exact NTSC fractions.
_NTSC = {
    "23.976": Fraction(24000, 1001), "23.98": Fraction(24000, 1001),
    "29.97": Fraction(30000, 1001), "47.952": Fraction(48000, 1001),
    "59.94": Fraction(60000, 1001), "119.88": Fraction(120000, 1001),
}  # fmt: skip

MAX_FPS = 1000


def parse_fps(value: str | float | int | Fraction, *, parameter: str = "fps") -> Fraction:
    """Parse ``60``, ``"30000/1001"``, ``"29.97"`` or a Fraction into an exact frame rate.

    Raises:
        ParameterError: not a number, not positive, or above 1000 fps.
    """
    if isinstance(value, Fraction):
        fps = value
    elif isinstance(value, int):
        fps = Fraction(value)
    else:
        text = str(value).strip()
        try:
            if text in _NTSC:
                fps = _NTSC[text]
            elif "/" in text:
                num, den = text.split("/", 1)
                fps = Fraction(int(num), int(den))
            else:
                fps = Fraction(text).limit_denominator(1001)
        except (ValueError, ZeroDivisionError):
            raise ParameterError(
                f"--{parameter} {value!r} is not a frame rate", hint="use N or N/D, e.g. 60 or 30000/1001"
            ) from None
    if fps <= 0 or fps > MAX_FPS:
        raise ParameterError(
            f"--{parameter} {value} is out of range", hint=f"use a rate in (0, {MAX_FPS}]"
        )
    return fps


def frame_targets(num_frames: int, fps: Fraction, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Target sample index of each frame: ``floor(i * sample_rate * den / num)``, exact in int64."""
    return frame_targets_of(np.arange(num_frames, dtype=np.int64), fps, sample_rate)


def frame_targets_of(index: Any, fps: Fraction, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """:func:`frame_targets` of the frames ``index`` (any int array: a stream's next frames)."""
    index = np.asarray(index, dtype=np.int64)
    return (index * (sample_rate * fps.denominator)) // fps.numerator


def num_frames_for(num_samples: Any, fps: Fraction, sample_rate: int = SAMPLE_RATE) -> Any:
    """Frames of a closed clip: every ``i`` whose target sample is ``< num_samples`` (SDK rule).
    An int in, an int out; an int64 array of sample counts in, one count per element out."""
    # largest i with floor(i*sr*den/num) <= num_samples-1  <=>  i*sr*den < num_samples*num
    step = sample_rate * fps.denominator
    if isinstance(num_samples, np.ndarray):
        return np.where(num_samples > 0, (num_samples * fps.numerator - 1) // step + 1, 0)
    if num_samples <= 0:
        return 0
    return (num_samples * fps.numerator - 1) // step + 1


def frame_times_s(num_frames: int, fps: Fraction) -> np.ndarray:
    """Frame times in seconds (``i / fps``), float64."""
    return np.arange(num_frames, dtype=np.float64) * (fps.denominator / fps.numerator)
