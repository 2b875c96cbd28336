"""Generic output shaping applied to every model's curves: overall strength and smoothing."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def smooth_curves(weights: np.ndarray, fps: Fraction, smoothing_s: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing along time with a standard deviation of ``smoothing_s``.

    Zero-phase (applied symmetrically) so that smoothing never delays the lips against the
    sound, which a one-pole filter would do.
    """
    if smoothing_s <= 0 or weights.shape[0] < 2:
        return weights
    from scipy.ndimage import gaussian_filter1d

    sigma_frames = smoothing_s * float(fps)
    if sigma_frames < 0.05:
        return weights
    return gaussian_filter1d(weights, sigma_frames, axis=0, mode="nearest").astype(weights.dtype)


def shape_weights(weights: np.ndarray, fps: Fraction, strength: float, smoothing_s: float) -> np.ndarray:
    """Smooth, scale by ``strength`` and clip to [0, 1] (no-op at strength 1, smoothing 0)."""
    out = smooth_curves(weights, fps, smoothing_s)
    if strength != 1.0:
        out = out * np.float32(strength)
    if strength != 1.0 or smoothing_s > 0:
        out = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
    return out
