"""Per-frame post-processing of a regression network's output (SDK spec §4 steps 3-7).

PCA decode of skin and tongue, the skin post-process (corrective offsets, two cascaded one-pole
filters per face region, face mask, region strengths), tongue offsets, the jaw transform by
Kabsch from 5 keypoints, and eye rotations with saccades. All arithmetic is float32 in the
SDK's operation order (``multitrack_animator_cuda.cu``); state is per track and reset per clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ModelError

_F32 = np.float32


def pca_decode(coeffs: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``coeffs [n, S] @ basis [S, D]`` in float32, no mean term (spec §4.3, §8.4)."""
    return np.asarray(coeffs, dtype=_F32) @ basis


def face_mask(neutral: np.ndarray, level: float, softness: float) -> np.ndarray:
    """Lower-face weight per vertex from the neutral pose's Y (spec §4.4):
    ``y' = (y - ymin) / (ymax - ymin)``, ``m = 1 / (1 + exp(-(level - y') / softness))``."""
    y = np.asarray(neutral, dtype=_F32).reshape(-1, 3)[:, 1]
    ymin, ymax = y.min(), y.max()
    if not ymax > ymin:
        raise ValueError("the neutral skin is flat in Y; the face mask needs ymax > ymin")
    y_norm = (y - ymin) / (ymax - ymin)
    with np.errstate(over="ignore"):
        return (_F32(1) / (_F32(1) + np.exp(-(_F32(level) - y_norm) / _F32(softness)))).astype(_F32)


def frame_dt(fps_num: int, fps_den: int) -> np.float32:
    """``dt = float(den) / num`` in float32, as the executors compute it (gcd-reduced rate)."""
    return _F32(_F32(fps_den) / _F32(fps_num))


def smoothing_alpha(dt: np.float32, smoothing: float) -> np.float32:
    """``1 - 0.5^(dt / smoothing)``, or -1 (filter off) when smoothing <= 0 (spec §4.4, §8.5)."""
    if smoothing <= 0:
        return _F32(-1)
    return _F32(_F32(1) - np.power(_F32(0.5), _F32(dt / _F32(smoothing))))


def filter_cascades(state: np.ndarray | None, value: np.ndarray, lower_alpha: float,
                    upper_alpha: float) -> np.ndarray:  # fmt: skip
    """The skin's two 2-stage low-pass cascades (lower and upper face) advanced by one frame
    ``value``: ``state`` ``[4, N]`` is lower1, lower2, upper1, upper2 (updated in place, in its
    dtype), None seeds all four with ``value`` (SDK ``Reset``); an alpha of 0 passes the value
    through. Returns the state."""
    if state is None:
        return np.stack([value, value, value, value])
    for first, alpha in ((0, lower_alpha), (2, upper_alpha)):
        if alpha > 0:
            state[first] += (value - state[first]) * alpha
            state[first + 1] += (state[first] - state[first + 1]) * alpha
        else:
            state[first] = value
            state[first + 1] = value
    return state


class SkinAnimator:
    """Skin post-processing for one track (SDK ``ComputeSkinPostProcessing``).

    ``columns`` restricts the work to some xyz coordinates (e.g. the solver's frontal mask) when
    the full geometry is not wanted: every coordinate is processed independently, so the values
    of those coordinates are the same.
    """

    def __init__(
        self,
        params: Mapping[str, float],
        neutral: np.ndarray,
        eye_close_delta: np.ndarray,
        lip_open_delta: np.ndarray,
        dt: np.float32,
        columns: np.ndarray | None = None,
    ) -> None:
        neutral = np.asarray(neutral, dtype=_F32).reshape(-1)
        mask = np.repeat(
            face_mask(neutral, params["face_mask_level"], params["face_mask_softness"]), 3
        )
        pick = slice(None) if columns is None else columns
        self.neutral = neutral[pick]
        self.mask = mask[pick]
        self.inv_mask = (_F32(1) - mask)[pick]
        p = {k: _F32(v) for k, v in params.items() if isinstance(v, int | float)}
        blink_offset = _F32(0)  # blinkOffset is never read from the config (spec §8.6)
        eyelid = _F32(-p["eyelid_open_offset"] + blink_offset * p["blink_strength"])
        # eyeClose * (-eyelidOpenOffset + blinkOffset * blinkStrength) + lipOpen * lipOpenOffset
        self.eye_term = np.asarray(eye_close_delta, _F32).reshape(-1)[pick] * eyelid
        self.lip_term = np.asarray(lip_open_delta, _F32).reshape(-1)[pick] * p["lip_open_offset"]
        self.skin_strength = p["skin_strength"]
        self.lower_strength = p["lower_face_strength"]
        self.upper_strength = p["upper_face_strength"]
        self.lower_alpha = smoothing_alpha(dt, params["lower_face_smoothing"])
        self.upper_alpha = smoothing_alpha(dt, params["upper_face_smoothing"])
        self.reset()

    def reset(self) -> None:
        """Forget the filter state: the next frame seeds both filters (SDK ``Reset``)."""
        self._state: np.ndarray | None = None  # [4, D]: lower1, lower2, upper1, upper2

    def animate(self, deltas: np.ndarray) -> np.ndarray:
        """Absolute positions ``[n, D]`` for consecutive frames' PCA deltas ``[n, D]``."""
        deltas = np.asarray(deltas, dtype=_F32)
        d_all = self.skin_strength * deltas + self.eye_term + self.lip_term  # step 1, SDK order
        out = np.empty_like(d_all)
        for i, d in enumerate(d_all):
            self._state = filter_cascades(self._state, d, self.lower_alpha, self.upper_alpha)
            _, lower2, _, upper2 = self._state
            # neutral + upper2 * upperStrength * (1 - m) + lower2 * lowerStrength * m
            out[i] = (
                self.neutral
                + upper2 * self.upper_strength * self.inv_mask
                + lower2 * self.lower_strength * self.mask
            )
        return out


def tongue_geometry(
    deltas: np.ndarray, neutral: np.ndarray, strength: float, height: float, depth: float
) -> np.ndarray:
    """``neutral + delta * strength``, then y += height, z += depth (spec §4.5)."""
    out = np.asarray(neutral, _F32).reshape(-1) + np.asarray(deltas, _F32) * _F32(strength)
    out = out.reshape(len(out), -1, 3)
    out[:, :, 1] += _F32(height)
    out[:, :, 2] += _F32(depth)
    return out.reshape(len(out), -1)


def kabsch(source: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid fits of ``source [K, 3]`` onto each of ``targets [n, K, 3]`` (SDK ``rigidXform``).

    ``H = sum (src - src_mean)(tgt - tgt_mean)^T = U S V^T``,
    ``R = V diag(1, 1, det(V U^T)) U^T``, ``t = tgt_mean - R src_mean``.

    Returns:
        ``R [n, 3, 3]`` and ``t [n, 3]`` (float64), so that ``tgt ~= R @ src + t``.
    """
    src = np.asarray(source, dtype=np.float64)
    tgt = np.asarray(targets, dtype=np.float64)
    src_mean = src.mean(axis=0)
    tgt_mean = tgt.mean(axis=1)
    h = np.einsum("ki,nkj->nij", src - src_mean, tgt - tgt_mean[:, None, :])
    try:
        u, _, vt = np.linalg.svd(h)
    except np.linalg.LinAlgError:  # NaN/Inf keypoints (reliability_fuzz M5): typed, not a crash
        raise ModelError(
            "the jaw fit got non-finite keypoints (the network output or neutral_jaw holds NaN "
            "or infinite values)",
            hint="check the model folder's network.onnx and model data",
        ) from None
    v = np.swapaxes(vt, 1, 2)
    ut = np.swapaxes(u, 1, 2)
    d = np.sign(np.linalg.det(v @ ut))
    d[d == 0] = 1.0
    fix = np.zeros((len(tgt), 3, 3))
    fix[:, 0, 0] = fix[:, 1, 1] = 1.0
    fix[:, 2, 2] = d
    rot = v @ fix @ ut
    trans = tgt_mean - np.einsum("nij,j->ni", rot, src_mean)
    return rot, trans


def jaw_transforms(
    jaw_deltas: np.ndarray,
    neutral_jaw: np.ndarray,
    strength: float,
    height: float,
    depth: float,
) -> np.ndarray:
    """Lower-jaw 4x4 transforms ``[n, 4, 4]`` float32 (spec §4.6, §8.7-8.8).

    Target keypoints ``neutral + delta * lower_teeth_strength + (0, height, depth)``; Kabsch from
    the neutral keypoints. Returned as proper matrices (``M[:3, 3]`` = translation); the SDK's
    flat 16 floats are the same matrix in column-major order (``M.T.reshape(16)``).
    """
    neutral = np.asarray(neutral_jaw, _F32).reshape(5, 3)
    deltas = np.asarray(jaw_deltas, _F32).reshape(-1, 5, 3)
    target = neutral + deltas * _F32(strength)
    target = target + np.array([0.0, height, depth], dtype=_F32)
    rot, trans = kabsch(neutral, target)
    out = np.zeros((len(deltas), 4, 4), dtype=_F32)
    out[:, :3, :3] = rot
    out[:, :3, 3] = trans
    out[:, 3, 3] = 1.0
    return out


def jaw_flat_column_major(matrices: np.ndarray) -> np.ndarray:
    """The SDK's flat jaw layout: ``[R00, R10, R20, 0, R01, ..., tx, ty, tz, 1]`` per frame."""
    return np.swapaxes(np.asarray(matrices), 1, 2).reshape(len(matrices), 16)


class EyesAnimator:
    """Eye rotations with saccades for one track (SDK ``ComputeEyesRotation``, spec §4.7).

    ``out = [R_offX + eyeballs*rx + saccade*s0, R_offY + eyeballs*ry + saccade*s1, 0,
    L_offX + eyeballs*lx + saccade*s0, L_offY + eyeballs*ly + saccade*s1, 0]`` with
    ``s = saccade_rot_matrix[int(wrap(seed + live_time))]``; ``live_time += dt * 30`` per frame
    (the table is 30 fps), wrapped modulo the table length, in float32.
    """

    def __init__(self, params: Mapping[str, float], saccade: np.ndarray, dt: np.float32) -> None:
        self.saccade = np.asarray(saccade, dtype=_F32).reshape(-1, 2)
        self.frames = _F32(len(self.saccade))
        self.eyeballs = _F32(params["eyeballs_strength"])
        self.saccade_strength = _F32(params["saccade_strength"])
        self.offsets = np.array(
            [
                params["right_eye_rot_x_offset"], params["right_eye_rot_y_offset"],
                params["left_eye_rot_x_offset"], params["left_eye_rot_y_offset"],
            ],
            dtype=_F32,
        )  # fmt: skip
        self.seed = _F32(params["eye_saccade_seed"])
        self.increment = _F32(dt * _F32(30))
        self.reset()

    def reset(self) -> None:
        self.live_time = _F32(0)

    def _wrap(self, value: np.float32) -> np.float32:
        result = _F32(np.fmod(value, self.frames))
        return _F32(result + self.frames) if result < 0 else result

    def animate(self, eyes: np.ndarray) -> np.ndarray:
        """``[n, 6]`` rotations for consecutive frames' network eye outputs ``[n, 4]``."""
        eyes = np.asarray(eyes, dtype=_F32).reshape(-1, 4)
        rows = np.empty(len(eyes), dtype=np.int64)
        for i in range(len(eyes)):
            rows[i] = int(self._wrap(_F32(self.seed + self.live_time)))
            self.live_time = self._wrap(_F32(self.live_time + self.increment))
        s = self.saccade[rows]  # [n, 2]
        sacc = np.concatenate([s, s], axis=1) * self.saccade_strength  # rounded product
        values = self.offsets + eyes * self.eyeballs + sacc  # products rounded, no FMA
        out = np.zeros((len(eyes), 6), dtype=_F32)
        out[:, [0, 1, 3, 4]] = values
        return out


class FoldedProjection:
    """What the two blendshape solves read, ``D^T (target - neutral)``, straight from a frame's
    PCA coefficients (the regression model), for one track.

    PCA decode, correctives, both filter cascades, the face-mask blend, the region strengths
    and the tongue offsets are all linear and every filter is the same for each coordinate, so
    they fold once per run into ``[S, active]`` float64 matrices (the algebra of
    :class:`a2x_core.postprocess.gpu.DevicePipeline`) and the filters run on the S coefficients.
    The masked geometry (30,255 floats a frame for Mark, a 33 MB basis read) is never built:
    it was most of a CPU frame's time after the network. Equal to the unfolded stages within
    float32 rounding; the first frame seeds the filters as :class:`SkinAnimator` does.
    """

    def __init__(
        self,
        skin: SkinAnimator,
        skin_pick: np.ndarray | None,
        skin_basis: np.ndarray,
        skin_solver: Any,
        tongue_basis: np.ndarray,
        tongue_neutral: np.ndarray,
        params: Mapping[str, float],
        tongue_solver: Any,
    ) -> None:
        """``skin`` as prepared for the run (full or already masked: ``skin_pick`` picks the
        solver's columns from it, None = as it is); ``skin_basis`` ``[S, solver columns]``;
        ``tongue_basis`` ``[S_t, 3Vt]`` (all columns)."""
        f64 = np.float64
        pick = slice(None) if skin_pick is None else skin_pick
        delta = skin_solver.delta_t.T.astype(f64)  # [rows, active]
        inv, mask = skin.inv_mask[pick].astype(f64), skin.mask[pick].astype(f64)
        us, ls, ss = float(skin.upper_strength), float(skin.lower_strength), float(skin.skin_strength)
        both = np.asarray(skin_basis, f64) @ np.concatenate(
            [inv[:, None] * delta, mask[:, None] * delta], axis=1
        )
        active = delta.shape[1]
        self.upper = np.ascontiguousarray(both[:, :active] * (ss * us))
        self.lower = np.ascontiguousarray(both[:, active:] * (ss * ls))
        corr = skin.eye_term[pick].astype(f64) + skin.lip_term[pick].astype(f64)
        self.skin_constant = (
            (skin.neutral[pick].astype(f64) - skin_solver.neutral.astype(f64)) @ delta
            + ((corr * inv) @ delta) * us
            + ((corr * mask) @ delta) * ls
        )
        self.upper_alpha, self.lower_alpha = float(skin.upper_alpha), float(skin.lower_alpha)
        # tongue: neutral + delta * strength, then y += height, z += depth
        t_cols = tongue_solver.mask_columns
        t_pick = slice(None) if t_cols is None else t_cols
        t_delta = tongue_solver.delta_t.T.astype(f64)
        t_neutral = np.asarray(tongue_neutral, f64).reshape(-1, 3).copy()
        t_neutral[:, 1] += float(_F32(params["tongue_height_offset"]))
        t_neutral[:, 2] += float(_F32(params["tongue_depth_offset"]))
        self.tongue = np.ascontiguousarray(
            (np.asarray(tongue_basis, f64)[:, t_pick] @ t_delta)
            * float(_F32(params["tongue_strength"]))
        )
        self.tongue_constant = (
            t_neutral.reshape(-1)[t_pick] - tongue_solver.neutral.astype(f64)
        ) @ t_delta
        self.reset()

    def reset(self) -> None:
        """Forget the filter state (a new track): the next frame seeds it."""
        self._state: np.ndarray | None = None  # [4, S]: lower1, lower2, upper1, upper2

    def project(self, skin: np.ndarray, tongue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The skin and tongue solves' projections ``[n, active]`` (float64) for consecutive
        frames' PCA coefficients ``[n, S]`` and ``[n, S_t]``."""
        coeffs = np.asarray(skin, np.float64)
        filtered = np.empty((len(coeffs), 2, coeffs.shape[1]))  # upper2, lower2 per frame
        for i, c in enumerate(coeffs):  # the filters of SkinAnimator, on the coefficients
            self._state = filter_cascades(self._state, c, self.lower_alpha, self.upper_alpha)
            filtered[i, 0] = self._state[3]
            filtered[i, 1] = self._state[1]
        skin_atb = filtered[:, 0] @ self.upper + filtered[:, 1] @ self.lower + self.skin_constant
        tongue_atb = np.asarray(tongue, np.float64) @ self.tongue + self.tongue_constant
        return skin_atb, tongue_atb
