"""The result of animating one audio track: curves with their names, rate and provenance."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .names import ARKIT_52, match_name
from .options import InferenceOptions


@dataclass(repr=False)
class AnimationResult:
    """Per-frame animation for one track.

    Attributes:
        weights: ``[frames, 52]`` float32 ARKit-52 skin weights in ``names`` order.
        fps: exact frame rate; frame ``i`` is at ``start_s + i / fps`` seconds of the source.
        names: pose names of ``weights`` columns (ARKit-52, Audio2Face order).
        audio_path: the source audio file ("" for in-memory audio).
        start_s: where frame 0 sits in the source audio, in seconds.
        duration_s: length of the animated audio, in seconds.
        model: model name (``"default"`` or the model folder's actor name).
        model_version: model version string.
        options: the options that produced this result.
        parameters: the effective model parameters (defaults merged with overrides).
        tongue_weights: ``[frames, 16]`` tongue weights (Audio2Face models), else None.
        jaw_transforms: ``[frames, 4, 4]`` row-major jaw matrices, else None.
        eye_rotations: ``[frames, 6]`` = right eye (x, y, 0), left eye (x, y, 0), else None.
        head_rotations: ``[frames, 3]`` head (pitch, yaw, roll) in radians (pitch > 0 = chin
            down, yaw > 0 = to the face's left; ARKit's axes: :mod:`a2x_core.head.motion`), else None.
        emotions: ``[frames, 10]`` explicit emotion input per frame (in ``emotion_names``
            order; with an emotion model: after mixing with manual keys), else None.
        detected_emotions: ``[frames, 10]`` what the emotion model detected (Audio2Emotion's
            output before any mixing with manual keys), in ``emotion_names`` order; None
            without an emotion model.
        arrays: any further arrays the run produced (phones, loudness, geometry...), for NPZ.
        warnings: things the user should know (silent audio, unmatched words...).
    """

    weights: np.ndarray
    fps: Fraction
    names: tuple[str, ...] = ARKIT_52
    audio_path: str = ""
    start_s: float = 0.0
    duration_s: float = 0.0
    model: str = "default"
    model_version: str = ""
    options: InferenceOptions = field(default_factory=InferenceOptions)
    parameters: dict[str, Any] = field(default_factory=dict)
    tongue_weights: np.ndarray | None = None
    tongue_names: tuple[str, ...] = ()
    jaw_transforms: np.ndarray | None = None
    eye_rotations: np.ndarray | None = None
    head_rotations: np.ndarray | None = None
    emotions: np.ndarray | None = None
    emotion_names: tuple[str, ...] = ()
    detected_emotions: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.weights.shape[0])

    @property
    def times_s(self) -> np.ndarray:
        """Time of every frame in seconds of the source audio."""
        step = self.fps.denominator / self.fps.numerator
        return self.start_s + np.arange(self.num_frames, dtype=np.float64) * step

    def __repr__(self) -> str:
        """One line a user can read (the arrays would fill the screen)."""
        fps = str(self.fps.numerator) if self.fps.denominator == 1 else str(self.fps)
        tongue = len(self.tongue_names) if self.tongue_weights is not None else 0
        curves = len(self.names) + tongue
        extra = f", warnings={len(self.warnings)}" if self.warnings else ""
        return (f"AnimationResult(model={self.model!r}, frames={self.num_frames}, fps={fps}, "
                f"duration_s={self.duration_s:.3f}, curves={curves}{extra})")  # fmt: skip

    def curve(self, name: str) -> np.ndarray:
        """One pose's curve, by any name the project's matcher reads: ARKit (``jawOpen``),
        Live Link casing (``JawOpen``), ``jaw_open``, ``eyeBlink_L``... (raises KeyError
        naming the valid choices)."""
        tongue = self.tongue_names if self.tongue_weights is not None else ()
        poses = self.names + tongue
        canon = name if name in poses else match_name(name, poses)
        if canon in self.names:
            return self.weights[:, self.names.index(canon)]
        if canon in tongue:
            return self.tongue_weights[:, tongue.index(canon)]  # type: ignore[index]
        raise KeyError(f"{name!r} is not a pose of this result; poses: {', '.join(poses)}")

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the result in the format ``path``'s extension names (``.json``, ``.csv``,
        ``.npz``), with the CLI's writers and rules: atomic, and an existing file is kept
        unless ``overwrite=True``.

        Raises:
            OutputError: the file exists (without ``overwrite``), the format is unknown, or the
                folder is missing or not writable.
        """
        from .export.writers import check_output_path, write_result

        target = Path(path)
        check_output_path(target, overwrite=overwrite)
        return write_result(self, target, overwrite=overwrite)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the run, by name, for ``.npz`` export."""
        out: dict[str, np.ndarray] = {
            "weights": self.weights,
            "names": np.array(self.names),
            "times_s": self.times_s,
            "fps": np.array([self.fps.numerator, self.fps.denominator], dtype=np.int64),
        }
        optional = {
            "tongue_weights": self.tongue_weights,
            "jaw_transforms": self.jaw_transforms,
            "eye_rotations": self.eye_rotations,
            "head_rotations": self.head_rotations,
            "emotions": self.emotions,
            "detected_emotions": self.detected_emotions,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.tongue_names:
            out["tongue_names"] = np.array(self.tongue_names)
        if self.emotion_names:
            out["emotion_names"] = np.array(self.emotion_names)
        out.update(self.arrays)
        return out

    def non_finite_arrays(self) -> list[str]:
        """Names of the result's float arrays that hold NaN or infinity: a result that must
        never reach a file or a rig (JSON cannot hold it; a CSV cell of ``nan`` breaks a rig)."""
        return [
            name
            for name, array in self.to_arrays().items()
            if isinstance(array, np.ndarray)
            and array.dtype.kind in "fc"
            and not np.all(np.isfinite(array))
        ]
