"""Audio windows for per-frame inference at any rational frame rate (SDK spec §3, §8.1-8.3).

Frame ``i`` at ``fps = num/den`` targets sample ``floor(i * 16000 * den / num)`` (exact integer
arithmetic, :func:`a2x_core.timing.frame_targets`); its window is
``[target - buffer_ofs, target - buffer_ofs + buffer_len)``, zero outside the audio on both
sides, then multiplied by ``input_strength`` (SDK ``AudioAccumulator::Read``).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..timing import SAMPLE_RATE, frame_targets, num_frames_for


def frame_plan(num_samples: int, fps: Fraction) -> np.ndarray:
    """Target sample of every frame of a closed clip: all ``i`` with target < num_samples."""
    return frame_targets(num_frames_for(num_samples, fps, SAMPLE_RATE), fps, SAMPLE_RATE)


def audio_windows(
    samples: np.ndarray,
    targets: np.ndarray,
    buffer_len: int,
    buffer_ofs: int,
    input_strength: float = 1.0,
) -> np.ndarray:
    """The ``[len(targets), buffer_len]`` float32 windows of ``samples`` around ``targets``.

    Windows may reach before 0 or past the end (zero padding); only the requested frames are
    materialised, so callers bound memory by passing a chunk of targets at a time.
    """
    samples = np.asarray(samples, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    out = np.zeros((len(targets), buffer_len), dtype=np.float32)
    if len(targets) == 0:
        return out
    starts = targets - buffer_ofs
    lo = int(starts.min())
    hi = int(starts.max()) + buffer_len
    # One padded copy of the span the chunk touches, then a strided view per window.
    span = np.zeros(hi - lo, dtype=np.float32)
    src_lo, src_hi = max(lo, 0), min(hi, len(samples))
    if src_hi > src_lo:
        span[src_lo - lo : src_hi - lo] = samples[src_lo:src_hi]
    view = np.lib.stride_tricks.sliding_window_view(span, buffer_len)
    out[:] = view[starts - lo]
    if input_strength != 1.0:  # the SDK skips the multiply at exactly 1
        out *= np.float32(input_strength)
    return out
