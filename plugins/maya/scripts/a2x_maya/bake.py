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

from .attributes import BAKED_DETECTED_PREFIX, BAKED_EMOTION_PREFIX, EMOTIONS
from .connect import Link
from .track import emotion_columns


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


def emotion_attribute_curves(result: AnimationResult) -> dict[str, np.ndarray]:
    """Attribute name -> per-frame curve for ``a2xBake -keyEmotions``: ``a2x_emotion_<e>``
    (the emotion input the model got) and, with an emotion model, ``a2x_emotion_detected_<e>``,
    in :data:`EMOTIONS` order; ``{}`` for models without emotions."""
    out: dict[str, np.ndarray] = {}
    frames = result.num_frames
    for prefix, values in ((BAKED_EMOTION_PREFIX, result.emotions),
                           (BAKED_DETECTED_PREFIX, getattr(result, "detected_emotions", None))):  # fmt: skip
        if values is None:
            continue
        columns = emotion_columns(values, result.emotion_names, frames)
        for j, name in enumerate(EMOTIONS):
            out[prefix + name] = columns[:, j]
    return out


#: ``a2xBake -keyHead``: the head rotation curves as keyable attributes in degrees (pitch > 0 =
#: chin down, yaw > 0 = to the face's left, roll about the face's forward axis: ARKit's axes,
#: which are Maya's for a character facing +Z, so they drive a head joint's rotateX/Y/Z as
#: they are). Attributes, not the joint's own rotation: the artist's animation stays theirs.
HEAD_ATTRIBUTES = ("a2x_head_pitch", "a2x_head_yaw", "a2x_head_roll")
HEAD_RANGE_DEG = 45.0


def plan_head_keys(result: AnimationResult, fps: Fraction, offset_s: float) -> list[CurveKeys]:
    """Keys for the head rotation (degrees) on the weights' scene frames; [] without one."""
    head = getattr(result, "head_rotations", None)
    if head is None or result.num_frames == 0:
        return []
    stacked = AnimationResult(
        weights=np.degrees(np.asarray(head, np.float64)).astype(np.float32), fps=result.fps,
        names=HEAD_ATTRIBUTES, start_s=result.start_s, duration_s=result.duration_s,
    )  # fmt: skip
    rows = [ShapeTarget(target=n, source=n) for n in HEAD_ATTRIBUTES]
    plan = plan_bake(stacked, rows, fps, audio_start_frame(offset_s, result.start_s, fps))
    frames = plan.frames.astype(np.float64)
    return [CurveKeys(n, frames, plan.channels[n].astype(np.float64)) for n in HEAD_ATTRIBUTES]


def plan_emotion_keys(result: AnimationResult, fps: Fraction, offset_s: float) -> list[CurveKeys]:
    """Keys for the emotion curves, on the same scene frames as the weights (``plug`` is the
    attribute name; the command puts it on the chosen node)."""
    curves = emotion_attribute_curves(result)
    if not curves or result.num_frames == 0:
        return []
    names = tuple(curves)
    stacked = AnimationResult(
        weights=np.stack([curves[n] for n in names], axis=1).astype(np.float32), fps=result.fps,
        names=names, start_s=result.start_s, duration_s=result.duration_s,
    )  # fmt: skip
    rows = [ShapeTarget(target=n, source=n) for n in names]
    plan = plan_bake(stacked, rows, fps, audio_start_frame(offset_s, result.start_s, fps))
    frames = plan.frames.astype(np.float64)
    return [CurveKeys(n, frames, plan.channels[n].astype(np.float64)) for n in names]
