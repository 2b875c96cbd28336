"""Generic output shaping applied to every model's curves: overall strength and smoothing."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..names import ARKIT_52

#: Poses that close something: the lips (p b m: press, close, roll; f v: lower lip rolled in),
#: the tongue between the teeth (th) and the eyelids. Smoothing must not lower their peaks:
#: a 100 ms closure or a 200 ms blink is gone at 0.05 s of plain smoothing.
CLOSING_POSES = (
    "mouthClose", "mouthPressLeft", "mouthPressRight", "mouthRollLower", "mouthRollUpper",
    "tongueOut", "eyeBlinkLeft", "eyeBlinkRight",
)  # fmt: skip
#: Poses that part the lips; while the lips close they must not stay open (smoothing spreads
#: the neighbouring vowels' jaw into the closure). The bilabial/labiodental "critical"
#: articulators of the default model's viseme table that open rather than close.
OPENING_POSES = ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthFunnel")
#: Lip poses whose lowered peak marks a closure that the opening poses must make way for.
_LIP_CLOSING = ("mouthClose", "mouthPressLeft", "mouthPressRight", "mouthRollLower")
#: A closure pose lowered by this much by smoothing opens the lip poses' way completely.
_CLOSURE_LOSS = 0.1

_CLOSING = [ARKIT_52.index(n) for n in CLOSING_POSES]
_OPENING = [ARKIT_52.index(n) for n in OPENING_POSES]
_LIP = [ARKIT_52.index(n) for n in _LIP_CLOSING]


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


def smooth_keeping_closures(weights: np.ndarray, fps: Fraction, smoothing_s: float) -> np.ndarray:
    """:func:`smooth_curves` for ARKit-52 curves, keeping lip closures and blinks.

    Closing poses keep their unsmoothed peaks (``max(smoothed, original)``: the flanks are
    smoothed, the closure itself is not lowered); where smoothing lowered a lip closure, the
    opening poses (jaw, lower lip, funnel) go no higher than unsmoothed, in proportion to how
    much of the closure smoothing took away, so the lips meet as before.
    """
    smooth = smooth_curves(weights, fps, smoothing_s)
    if smooth is weights or weights.ndim != 2 or weights.shape[1] != len(ARKIT_52):
        return smooth
    out = smooth.copy()
    out[:, _CLOSING] = np.maximum(smooth[:, _CLOSING], weights[:, _CLOSING])
    lost = np.max(weights[:, _LIP] - smooth[:, _LIP], axis=1)
    closing = np.clip(lost / _CLOSURE_LOSS, 0.0, 1.0)[:, None]
    excess = np.maximum(smooth[:, _OPENING] - weights[:, _OPENING], 0.0)
    out[:, _OPENING] = smooth[:, _OPENING] - closing * excess
    return out.astype(weights.dtype, copy=False)


def shape_weights(weights: np.ndarray, fps: Fraction, strength: float, smoothing_s: float) -> np.ndarray:
    """Smooth (keeping closures and blinks), scale by ``strength`` and clip to [0, 1] (no-op
    at strength 1, smoothing 0)."""
    out = smooth_keeping_closures(weights, fps, smoothing_s)
    if strength != 1.0:
        out = out * np.float32(strength)
    if strength != 1.0 or smoothing_s > 0:
        out = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
    return out
