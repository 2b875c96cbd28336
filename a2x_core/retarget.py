"""Retargeting: canonical curves → a rig's shape names, and animation time → scene frames.

Everything a DCC adapter needs between an :class:`~a2x_core.result.AnimationResult` and its
keyframe API, with no DCC import: the mapping table (one source may drive several target
shapes, each with its own multiplier and offset), exact scene frame rates from Blender's
``render.fps / render.fps_base`` (29.97 = 30 / 1.001), and where each result frame lands on
the scene's timeline. Both adapters bake what :func:`plan_bake` returns, so Blender and Maya
place every key at the same frame with the same value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import ParameterError
from .names import ARKIT_52, TONGUE_16, map_names
from .result import AnimationResult
from .timing import parse_fps

#: Names a target may take its curve from: ARKit-52 plus the 16 Audio2Face tongue poses.
SOURCE_NAMES: tuple[str, ...] = ARKIT_52 + TONGUE_16

#: Face regions, for grouping channels in the DCC's curve editor (first matching prefix wins).
_REGIONS: tuple[tuple[str, str], ...] = (
    ("eye", "Eyes"), ("brow", "Brows"), ("jaw", "Jaw"), ("mouth", "Mouth"),
    ("cheek", "Cheeks"), ("nose", "Nose"), ("tongue", "Tongue"),
)  # fmt: skip


@dataclass(frozen=True)
class ShapeTarget:
    """One row of the mapping table: which source curve drives which target shape, and how.

    The baked value is ``source_curve * multiplier + offset`` (as Maya-ACE and the Audio2Face
    Live Link node do), not clipped: the DCC's own slider range bounds it.

    Attributes:
        target: the rig's shape name (``"AK_17_JawOpen"``).
        source: a canonical name from :data:`SOURCE_NAMES` (``"jawOpen"``).
        multiplier: scales the curve (default 1).
        offset: added after scaling (default 0).
        enabled: False keeps the row in the table but bakes nothing for it.
    """

    target: str
    source: str
    multiplier: float = 1.0
    offset: float = 0.0
    enabled: bool = True


@dataclass(frozen=True)
class AutoMapping:
    """What :func:`auto_map` found for a set of target shape names.

    Attributes:
        targets: one :class:`ShapeTarget` per source curve, for the rig's best shape for it
            (see :func:`auto_map`), in the rig's order.
        candidates: the other shapes whose names also match a source (``SR_21_Jaw_Open``
            beside ``AK_25_JawOpen``), in the rig's order. They are left out because shapes
            add up: two jaw-open shapes open the jaw twice. Add one to the table on purpose
            to drive it too.
        unmatched_targets: target names that match no source (``Basis`` included).
        unused_sources: ARKit-52 names that no target receives.
    """

    targets: tuple[ShapeTarget, ...]
    unmatched_targets: tuple[str, ...]
    unused_sources: tuple[str, ...]
    candidates: tuple[ShapeTarget, ...] = ()

    def candidates_for(self, source: str) -> tuple[str, ...]:
        """The shapes left out for ``source``, in the rig's order."""
        return tuple(c.target for c in self.candidates if c.source == source)


_SIDE_WORD = re.compile(r"(left|right)$")
_DIGITS = re.compile(r"\d+")


def _family(target: str, source: str) -> str:
    """The naming family of a matched shape: what precedes the pose in its name, digits
    folded, lower case (``AK_25_JawOpen`` → ``ak#``, ``SR_21_Jaw_Open`` → ``sr#``,
    ``Face.jawOpen`` → ``face``, ``eyeBlink_L`` and ``jawOpen`` → ``""``)."""
    squashed = re.sub(r"[^0-9a-z]", "", target.lower())
    stem = _SIDE_WORD.sub("", source.lower())
    cut = squashed.rfind(stem)
    return _DIGITS.sub("#", squashed[:cut] if cut >= 0 else squashed)


def _best_first(
    targets: Sequence[str], source: str, family_size: Mapping[str, int]
) -> list[str]:
    """``targets`` (all matching ``source``) ordered best first.

    Exact ARKit names first (``jawOpen``), then the Live Link casing (``JawOpen``), then
    prefixed names: those of the family that matches the most poses (the rig's ARKit set,
    ``AK_*``, before a partial second set such as ``SR_*``), then names that spell the pose
    as ARKit does (``…JawOpen`` before ``…Jaw_Open``), then the rig's order.
    """

    def rank(item: tuple[int, str]) -> tuple[int, int, bool, int]:
        index, target = item
        tier = 0 if target == source else 1 if target.lower() == source.lower() else 2
        spelled = target.lower().endswith(source.lower())
        return (tier, -family_size[_family(target, source)], not spelled, index)

    return [t for _, t in sorted(enumerate(targets), key=rank)]


def auto_map(
    target_names: Iterable[str],
    vocabulary: Sequence[str] = SOURCE_NAMES,
    *,
    every_match: bool = False,
) -> AutoMapping:
    """Fill a mapping table from a rig's shape names with :func:`a2x_core.names.match_name`.

    Each source curve drives the single best shape for it (see :func:`_best_first`): rigs
    often carry a second set of similar shapes (Rocketbox heads: ``AK_25_JawOpen`` and
    ``SR_21_Jaw_Open``), and shapes add up, so driving both would open the jaw twice as far.
    The others are listed in :attr:`AutoMapping.candidates` for the artist to add on purpose.

    Args:
        target_names: the rig's shape names, in the rig's order (duplicates are dropped).
        vocabulary: canonical names to match against (default ARKit-52 + tongue poses).
        every_match: map every matching shape, candidates included (one source may then
            drive several shapes).
    """
    names = list(dict.fromkeys(target_names))
    mapping, unmatched = map_names(names, vocabulary)
    by_source: dict[str, list[str]] = {}
    for target, source in mapping.items():
        by_source.setdefault(source, []).append(target)
    families: dict[str, set[str]] = {}
    for target, source in mapping.items():
        families.setdefault(_family(target, source), set()).add(source)
    family_size = {family: len(sources) for family, sources in families.items()}
    best = {s: _best_first(ts, s, family_size)[0] for s, ts in by_source.items()}
    chosen = {t for t, s in mapping.items() if every_match or best[s] == t}
    return AutoMapping(
        targets=tuple(ShapeTarget(t, s) for t, s in mapping.items() if t in chosen),
        unmatched_targets=tuple(unmatched),
        unused_sources=tuple(v for v in ARKIT_52 if v not in by_source),
        candidates=tuple(ShapeTarget(t, s) for t, s in mapping.items() if t not in chosen),
    )


def region_of(source: str) -> str:
    """The face region a canonical name belongs to (``"Mouth"`` for ``mouthSmileLeft``)."""
    lower = source.lower()
    for prefix, region in _REGIONS:
        if lower.startswith(prefix):
            return region
    return "Other"


def scene_fps(fps: int | float, fps_base: float = 1.0) -> Fraction:
    """The exact frame rate of a DCC scene given as ``fps / fps_base``.

    Blender stores 29.97 as ``fps=30, fps_base=1.001`` in single precision
    (1.00100004673); the base is read to 6 decimals so that the rate comes out as exactly
    30000/1001.

    Raises:
        ParameterError: a rate that is not positive or above 1000 fps.
    """
    if not (fps_base > 0):
        raise ParameterError(
            f"fps_base={fps_base} must be > 0", hint="check the scene's frame rate"
        )
    base = Fraction(f"{float(fps_base):.6f}")
    rate = Fraction(f"{float(fps):.6f}") / base
    return parse_fps(rate, parameter="fps")


def format_fps(fps: Fraction) -> str:
    """``"30000/1001 (29.97)"`` for fractional rates, ``"24"`` for whole ones."""
    if fps.denominator == 1:
        return str(fps.numerator)
    return f"{fps.numerator}/{fps.denominator} ({float(fps):.3f})"


def frame_of_time(time_s: float | np.ndarray, fps: Fraction, start_frame: float) -> np.ndarray:
    """Scene frame of an audio time: audio time 0 sits at ``start_frame``."""
    return start_frame + np.asarray(time_s, dtype=np.float64) * (fps.numerator / fps.denominator)


def seconds_to_frames(duration_s: float, fps: Fraction) -> int:
    """Whole scene frames a clip of ``duration_s`` seconds covers (rounded up)."""
    return int(np.ceil(duration_s * fps.numerator / fps.denominator - 1e-9))


@dataclass
class BakePlan:
    """Keys to write: one frame array shared by every channel, one value array per target.

    Attributes:
        frames: ``[keys]`` float64 scene frames (whole numbers when the result's rate equals
            the scene's).
        channels: target shape name → ``[keys]`` float32 values.
        sources: target shape name → the canonical source it came from.
        missing_sources: enabled rows whose source the result does not carry (e.g. tongue
            poses from the default model); they are left out of ``channels``.
    """

    frames: np.ndarray
    channels: dict[str, np.ndarray]
    sources: dict[str, str]
    missing_sources: list[str]

    @property
    def frame_range(self) -> tuple[float, float]:
        if self.frames.size == 0:
            return (0.0, 0.0)
        return float(self.frames[0]), float(self.frames[-1])

    def interleaved(self, target: str) -> np.ndarray:
        """``[x0, y0, x1, y1, ...]`` float32 for one channel, for ``keyframe_points.foreach_set``."""
        out = np.empty(self.frames.size * 2, dtype=np.float32)
        out[0::2] = self.frames
        out[1::2] = self.channels[target]
        return out


def resample(curves: np.ndarray, times_s: np.ndarray, new_times_s: np.ndarray) -> np.ndarray:
    """Linearly resample ``[frames, N]`` curves sampled at ``times_s`` onto ``new_times_s``
    (held at the ends)."""
    curves = np.asarray(curves, dtype=np.float32)
    if curves.shape[0] == 0:
        return np.zeros((new_times_s.size, curves.shape[1]), dtype=np.float32)
    out = np.empty((new_times_s.size, curves.shape[1]), dtype=np.float32)
    for column in range(curves.shape[1]):
        out[:, column] = np.interp(new_times_s, times_s, curves[:, column])
    return out


def plan_bake(
    result: AnimationResult,
    targets: Sequence[ShapeTarget],
    fps: Fraction,
    start_frame: float,
    *,
    resample_to_scene: bool = True,
) -> BakePlan:
    """Where and what to key for every enabled target shape.

    Result frame ``i`` is at audio time ``result.start_s + i / result.fps`` and lands on scene
    frame ``start_frame + time * fps``. When the result's rate differs from the scene's and
    ``resample_to_scene`` is set, the curves are resampled to every whole scene frame the
    clip covers, so keys sit on whole frames at any scene rate.

    Args:
        result: the animation to bake.
        targets: the mapping table; disabled rows are skipped.
        fps: the scene's exact frame rate (see :func:`scene_fps`).
        start_frame: the scene frame where the audio starts (the sound strip's start).
        resample_to_scene: resample onto whole scene frames when the rates differ.

    Raises:
        ParameterError: a row names a source that is not a pose name at all.
    """
    fps = parse_fps(fps)
    times = result.times_s
    columns: dict[str, np.ndarray] = {n: result.weights[:, i] for i, n in enumerate(result.names)}
    if result.tongue_weights is not None:
        columns.update({n: result.tongue_weights[:, i] for i, n in enumerate(result.tongue_names)})
    offset = float(start_frame) + result.start_s * float(fps)
    frames = offset + np.arange(result.num_frames, dtype=np.float64)
    if result.fps != fps:
        frames = frame_of_time(times, fps, float(start_frame))
    if result.fps != fps and resample_to_scene and result.num_frames > 0:
        first = int(np.ceil(float(frame_of_time(times[0], fps, 0.0)) - 1e-9))
        last = int(np.floor(float(frame_of_time(times[-1], fps, 0.0)) + 1e-9))
        whole = np.arange(first, last + 1, dtype=np.float64)
        names = list(columns)
        stacked = resample(np.stack([columns[n] for n in names], axis=1), times, whole / float(fps))
        columns = {n: stacked[:, i] for i, n in enumerate(names)}
        frames = float(start_frame) + whole
    channels, sources, missing = map_columns(columns, targets)
    return BakePlan(frames, channels, sources, missing)


def map_columns(
    columns: Mapping[str, np.ndarray], targets: Sequence[ShapeTarget]
) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """The mapping table applied to source curves (any number of frames): each enabled row's
    ``curve * multiplier + offset`` by target, its source by target, and the sources the
    model does not give. One rule for a bake (:func:`plan_bake`) and a live frame
    (:func:`frame_values`).

    Raises:
        ParameterError: a row names a source that is not a pose name at all.
    """
    channels: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    for row in targets:
        if not row.enabled:
            continue
        if row.source not in columns:
            if row.source not in SOURCE_NAMES:
                raise ParameterError(
                    f"mapping row {row.target!r} takes its curve from {row.source!r}, "
                    "which is not a pose name",
                    hint="pick an ARKit-52 or tongue pose name",
                )
            missing.append(row.source)
            continue
        values = columns[row.source].astype(np.float32) * np.float32(row.multiplier)
        if row.offset:
            values = values + np.float32(row.offset)
        channels[row.target] = values.astype(np.float32, copy=False)
        sources[row.target] = row.source
    return channels, sources, sorted(set(missing))


def frame_values(frame: Any, targets: Sequence[ShapeTarget]) -> dict[str, float]:
    """One live frame (a ``StreamFrame``) through the mapping table: target shape → value,
    exactly the value a bake of the same frame keys."""
    columns = {name: frame.weights[i : i + 1] for i, name in enumerate(ARKIT_52)}
    tongue = getattr(frame, "tongue_weights", None)
    if tongue is not None:
        columns.update({name: tongue[i : i + 1] for i, name in enumerate(TONGUE_16)})
    channels, _, _ = map_columns(columns, targets)
    return {target: float(values[0]) for target, values in channels.items()}


def targets_from_rows(rows: Iterable[Mapping[str, object]]) -> list[ShapeTarget]:
    """Mapping rows from plain dicts (``target``, ``source``, optional ``multiplier``,
    ``offset``, ``enabled``), e.g. from a JSON file or a DCC property table."""
    out = []
    for row in rows:
        out.append(
            ShapeTarget(
                target=str(row["target"]),
                source=str(row["source"]),
                multiplier=float(row.get("multiplier", 1.0)),  # type: ignore[arg-type]
                offset=float(row.get("offset", 0.0)),  # type: ignore[arg-type]
                enabled=bool(row.get("enabled", True)),
            )
        )
    return out
