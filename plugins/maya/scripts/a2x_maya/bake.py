"""Keys to bake: frames and values per blendShape weight, from a player's cached track.

The arrays come from :func:`a2x_core.retarget.plan_bake` (the same placement the Blender
add-on bakes), then get the player's per-pose multipliers and offsets, which may themselves
be animated (one value per key). The Maya side only writes them with
``MFnAnimCurve.addKeys``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from a2x_core.result import AnimationResult
from a2x_core.retarget import BakePlan, ShapeTarget, plan_bake

from .connect import Link


@dataclass(frozen=True)
class CurveKeys:
    """One anim curve to write: ``plug`` keyed at ``frames`` (scene frames) with ``values``."""

    plug: str
    frames: np.ndarray
    values: np.ndarray


def audio_start_frame(offset_s: float, result_start_s: float, fps: Fraction) -> float:
    """Scene frame of source time 0 for :func:`plan_bake`: frame ``i`` of the result plays at
    scene time ``offset_s + i / result.fps`` and sits at source time ``result.start_s + i /
    result.fps``."""
    return (offset_s - result_start_s) * fps.numerator / fps.denominator


def _per_key(value: float | Sequence[float] | np.ndarray, count: int, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return np.full(count, float(array))
    if array.shape != (count,):
        raise ValueError(f"{what} has {array.shape[0]} values for {count} keys")
    return array


def plan_keys(
    result: AnimationResult,
    links: Sequence[Link],
    fps: Fraction,
    offset_s: float,
    controls: Mapping[str, tuple[float | np.ndarray, float | np.ndarray]] | None = None,
) -> tuple[BakePlan, list[CurveKeys]]:
    """Anim-curve keys for every linked weight.

    Args:
        result: the player's cached result.
        links: the player's connections to blendShape weights.
        fps: the scene's exact rate (keys on whole frames when the audio starts on one).
        offset_s: the audio's scene start time in seconds.
        controls: source pose -> (multiplier, offset), each a constant or one value per key
            (sampled at the plan's frames; see :func:`a2x_maya.bake.plan_frames`).
    """
    rows = [ShapeTarget(target=link.dest_plug, source=link.source) for link in links]
    plan = plan_bake(result, rows, fps, audio_start_frame(offset_s, result.start_s, fps))
    curves = []
    count = plan.frames.size
    for link in links:
        if link.dest_plug not in plan.channels:
            continue
        values = plan.channels[link.dest_plug].astype(np.float64)
        multiplier, offset = (controls or {}).get(link.source, (1.0, 0.0))
        values = values * _per_key(multiplier, count, "multiplier") + _per_key(
            offset, count, "offset"
        )
        curves.append(CurveKeys(link.dest_plug, plan.frames.astype(np.float64), values))
    return plan, curves


def plan_frames(result: AnimationResult, fps: Fraction, offset_s: float) -> np.ndarray:
    """The scene frames a bake keys (to sample animated multipliers/offsets first)."""
    plan = plan_bake(result, [], fps, audio_start_frame(offset_s, result.start_s, fps))
    return plan.frames.astype(np.float64)
