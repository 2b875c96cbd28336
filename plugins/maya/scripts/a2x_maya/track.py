"""A computed track and the per-frame lookup that playback does (interpolated).

A :class:`Track` holds one :class:`~a2x_core.result.AnimationResult` laid out for the node's
outputs: ``[frames, 68]`` weights (ARKit-52 then 16 tongue poses), ``[frames, 10]`` emotions,
jaw matrices in Maya's row-vector layout and eye rotations in degrees. :meth:`Track.sample`
is all that playback runs: a clamped, linearly interpolated lookup at a scene time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from a2x_core.result import AnimationResult

from .attributes import EMOTIONS, OUTPUT_POSES
from .parameters import PlaybackControls

_IDENTITY = np.eye(4, dtype=np.float64)


@dataclass(frozen=True)
class FrameValues:
    """The node's outputs at one time.

    Attributes:
        weights: one value per :data:`OUTPUT_POSES` (after multipliers and offsets).
        emotions: one value per :data:`EMOTIONS` (the emotion input the model got).
        detected: one value per :data:`EMOTIONS` (what the emotion model detected, else 0).
        jaw: 16 floats, Maya row-major (translation in elements 12..14).
        right_eye, left_eye: (x, y, z) rotations in degrees.
    """

    weights: tuple[float, ...]
    emotions: tuple[float, ...]
    jaw: tuple[float, ...]
    right_eye: tuple[float, float, float]
    left_eye: tuple[float, float, float]
    detected: tuple[float, ...] = (0.0,) * len(EMOTIONS)


def rest_frame(controls: PlaybackControls | None = None) -> FrameValues:
    """Outputs when no track is ready: zero weights (plus offsets), identity jaw."""
    offsets = (controls or PlaybackControls()).offsets()
    return FrameValues(
        weights=tuple(float(o) for o in offsets),
        emotions=(0.0,) * len(EMOTIONS),
        jaw=tuple(_IDENTITY.ravel().tolist()),
        right_eye=(0.0, 0.0, 0.0),
        left_eye=(0.0, 0.0, 0.0),
    )


def to_maya_matrices(jaw: np.ndarray) -> np.ndarray:
    """``[frames, 4, 4]`` column-vector matrices (translation in ``m[:3, 3]``) -> Maya's
    row-vector layout (translation in ``m[3, :3]``), i.e. the transpose.

    The SDK's flat jaw array is column-major with the translation in elements 12..14
    (sdk spec §8.8), which is exactly Maya's flat layout; a result that already has its
    translation in the last row is therefore kept as it is.
    """
    jaw = np.asarray(jaw, dtype=np.float64).reshape(-1, 4, 4)
    if np.allclose(jaw[:, :3, 3], 0.0) and not np.allclose(jaw[:, 3, :3], 0.0):
        return jaw
    return np.transpose(jaw, (0, 2, 1))


def emotion_columns(values: Any, names: Any, frames: int) -> np.ndarray:
    """``[frames, 10]`` in :data:`EMOTIONS` order from a result's emotion array and names
    (matched case-insensitively); zeros for a missing array or name."""
    out = np.zeros((frames, len(EMOTIONS)), dtype=np.float64)
    if values is None:
        return out
    lower = [str(n).lower() for n in names]
    for j, name in enumerate(EMOTIONS):
        if name in lower:
            out[:, j] = np.asarray(values)[:, lower.index(name)]
    return out


class Track:
    """One result, laid out for the node, with a clamped interpolated lookup.

    Args:
        result: what the core returned for the player's audio.
        offset_s: scene time (seconds) where frame 0 plays; the audio node's offset.
    """

    def __init__(self, result: AnimationResult, offset_s: float = 0.0) -> None:
        self.result = result
        self.offset_s = offset_s
        frames = result.num_frames
        weights = np.zeros((frames, len(OUTPUT_POSES)), dtype=np.float64)
        for i, name in enumerate(result.names):
            if name in OUTPUT_POSES:
                weights[:, OUTPUT_POSES.index(name)] = result.weights[:, i]
        if result.tongue_weights is not None:
            for i, name in enumerate(result.tongue_names):
                if name in OUTPUT_POSES:
                    weights[:, OUTPUT_POSES.index(name)] = result.tongue_weights[:, i]
        self.weights = weights
        self.emotions = emotion_columns(result.emotions, result.emotion_names, frames)
        self.detected = emotion_columns(
            getattr(result, "detected_emotions", None), result.emotion_names, frames
        )
        self.jaw = None if result.jaw_transforms is None else to_maya_matrices(result.jaw_transforms)
        self.eyes = None if result.eye_rotations is None else np.asarray(result.eye_rotations, float)
        self.fps = result.fps

    @property
    def num_frames(self) -> int:
        return int(self.weights.shape[0])

    def frame_position(self, time_s: float) -> float:
        """Fractional track frame at scene time ``time_s`` (clamped to the track)."""
        position = (time_s - self.offset_s) * self.fps.numerator / self.fps.denominator
        return float(min(max(position, 0.0), max(self.num_frames - 1, 0)))

    def sample(self, time_s: float, controls: PlaybackControls | None = None) -> FrameValues:
        """The outputs at scene time ``time_s``: linear between the two nearest frames,
        held at the ends; weights get ``* multiplier + offset``."""
        if self.num_frames == 0:
            return rest_frame(controls)
        position = self.frame_position(time_s)
        i0 = int(np.floor(position))
        i1 = min(i0 + 1, self.num_frames - 1)
        w = position - i0

        def lerp(array: np.ndarray) -> np.ndarray:
            return (1.0 - w) * array[i0] + w * array[i1]

        controls = controls or PlaybackControls()
        weights = lerp(self.weights) * np.asarray(controls.multipliers()) + np.asarray(
            controls.offsets()
        )
        jaw = _IDENTITY if self.jaw is None else lerp(self.jaw)
        eyes = np.zeros(6) if self.eyes is None else lerp(self.eyes)
        return FrameValues(
            weights=tuple(weights.tolist()),
            emotions=tuple(lerp(self.emotions).tolist()),
            jaw=tuple(np.asarray(jaw).ravel().tolist()),
            right_eye=(float(eyes[0]), float(eyes[1]), float(eyes[2])),
            left_eye=(float(eyes[3]), float(eyes[4]), float(eyes[5])),
            detected=tuple(lerp(self.detected).tolist()),
        )

    def describe(self) -> dict[str, Any]:
        """Facts for the panel and logs."""
        return {
            "frames": self.num_frames,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "model": self.result.model,
            "duration_s": self.result.duration_s,
            "warnings": list(self.result.warnings),
        }
