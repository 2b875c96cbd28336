"""One Audio2Face-3D track after the network, shared by the regression and diffusion models:
skin post-process, tongue, jaw, eyes and both blendshape solves with their per-track state
(SDK spec §4 steps 4-7, §4.1), the outputs they collect, and the result built from them.

The diffusion model hands over skin and tongue *deltas* (its prediction); the regression model
hands over its PCA *coefficients*, which the solves read through a
:class:`~a2x_core.postprocess.cpu.FoldedProjection` (decoded only for a geometry output); both
with the 15 jaw and 4 eye values of each frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from ..audio.decode import Audio
from ..blendshapes.cpu import BlendshapeSolver
from ..blendshapes.settings import fresh
from ..names import ARKIT_52, TONGUE_16
from ..options import InferenceOptions
from ..result import AnimationResult
from .cpu import (
    EyesAnimator,
    FoldedProjection,
    SkinAnimator,
    jaw_transforms,
    pca_decode,
    tongue_geometry,
)


class TrackFrames:
    """Prepared once per run, then :func:`~a2x_core.blendshapes.settings.fresh` per track (own state)."""

    def __init__(
        self,
        params: Mapping[str, Any],
        skin: SkinAnimator,
        eyes: EyesAnimator,
        skin_solver: BlendshapeSolver,
        tongue_solver: BlendshapeSolver,
        neutral_tongue: np.ndarray,
        neutral_jaw: np.ndarray,
        *,
        masked: bool,
        keep_geometry: bool,
        folded: FoldedProjection | None = None,
        bases: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``folded``: :meth:`add` takes PCA coefficients and the solves read their projections
        from it; ``bases`` (skin, tongue) then decode the geometry output."""
        self.params = params
        self.skin, self.eyes = skin, eyes
        self.skin_solver, self.tongue_solver = skin_solver, tongue_solver
        self.neutral_tongue = np.asarray(neutral_tongue, np.float32)
        self.neutral_jaw = np.asarray(neutral_jaw, np.float32)
        self.masked = masked  # the skin deltas hold only the solver's frontal-mask columns
        self.keep_geometry = keep_geometry
        if folded is not None and keep_geometry and bases is None:
            raise ValueError("folded stages need the PCA bases to decode a geometry output")
        self.folded, self.bases = folded, bases
        self.reset()

    def reset(self) -> None:
        """Fresh filter/saccade/solver state and empty outputs (a new track)."""
        self.skin, self.eyes = fresh(self.skin), fresh(self.eyes)
        self.skin_solver, self.tongue_solver = fresh(self.skin_solver), fresh(self.tongue_solver)
        if self.folded is not None:
            self.folded = fresh(self.folded)
        self.skin_w: list[np.ndarray] = []
        self.tongue_w: list[np.ndarray] = []
        self.jaw: list[np.ndarray] = []
        self.eye: list[np.ndarray] = []
        self.skin_geo: list[np.ndarray] = []
        self.tongue_geo: list[np.ndarray] = []

    def add(
        self,
        skin_in: np.ndarray,
        tongue_in: np.ndarray,
        jaw: np.ndarray,
        eyes: np.ndarray,
    ) -> None:
        """Post-process and solve consecutive frames: skin ``[n, 3V]`` (or masked) and tongue
        ``[n, 3Vt]`` deltas, or ``[n, S]`` and ``[n, S_t]`` coefficients when folded; ``[n, 15]``
        jaw, ``[n, 4]`` eye values."""
        p = self.params
        self.jaw.append(jaw_transforms(jaw, self.neutral_jaw, p["lower_teeth_strength"],
                                       p["lower_teeth_height_offset"],
                                       p["lower_teeth_depth_offset"]))  # fmt: skip
        self.eye.append(self.eyes.animate(eyes))
        if self.folded is not None:
            skin_atb, tongue_atb = self.folded.project(skin_in, tongue_in)
            if self.keep_geometry:  # for the output only: the solves read the projections
                skin_in = pca_decode(skin_in, self.bases[0])
                tongue_in = pca_decode(tongue_in, self.bases[1])
        if self.folded is None or self.keep_geometry:
            skin = self.skin.animate(skin_in)
            tongue = tongue_geometry(tongue_in, self.neutral_tongue, p["tongue_strength"],
                                     p["tongue_height_offset"], p["tongue_depth_offset"])  # fmt: skip
        if self.folded is None:
            skin_atb = self.skin_solver.project(skin, masked=self.masked)
            tongue_atb = self.tongue_solver.project(tongue)
        self.skin_w.append(self.skin_solver.solve_projections(skin_atb))
        self.tongue_w.append(self.tongue_solver.solve_projections(tongue_atb))
        if self.keep_geometry:
            self.skin_geo.append(skin)
            self.tongue_geo.append(tongue)

    def take_block(self) -> dict[str, np.ndarray] | None:
        """The frames added since the last take as one :data:`a2x_core.postprocess.chain.FrameBlock` (None
        when there are none); the filter/saccade/solver state stays."""
        if not self.skin_w:
            return None

        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        block = {"skin": cat(self.skin_w), "tongue": cat(self.tongue_w), "jaw": cat(self.jaw),
                 "eyes": cat(self.eye)}  # fmt: skip
        if self.keep_geometry:
            block["skin_geometry"] = cat(self.skin_geo)
            block["tongue_geometry"] = cat(self.tongue_geo)
        for part in (self.skin_w, self.tongue_w, self.jaw, self.eye, self.skin_geo,
                     self.tongue_geo):  # fmt: skip
            part.clear()
        return block

    def result(
        self,
        block: Mapping[str, np.ndarray] | None,
        audio: Audio,
        options: InferenceOptions,
        fps: Fraction,
        *,
        model: str,
        version: str,
        parameters: dict[str, Any],
        skin_columns: np.ndarray,
        tongue_columns: np.ndarray,
        emotions: np.ndarray,
        emotion_names: tuple[str, ...],
    ) -> AnimationResult:
        """A track's :class:`AnimationResult` from its frames ``block`` (a
        :data:`a2x_core.postprocess.chain.FrameBlock`; None = no frames): ARKit-52 and tongue-16 weights by
        name (the solvers' columns), jaw matrices, eye rotations, the emotion input, optional
        geometry. Called on the prepared stages (their sizes), not on a track's copy."""
        block = block or {}

        def get(key: str, width: int | tuple[int, ...]) -> np.ndarray:
            shape = width if isinstance(width, tuple) else (width,)
            value = block.get(key)
            return np.zeros((0, *shape), np.float32) if value is None else value

        skin_w = get("skin", self.skin_solver.num_poses)
        tongue_w = get("tongue", self.tongue_solver.num_poses)
        arrays: dict[str, np.ndarray] = {}
        if self.keep_geometry:
            skin_size, tongue_size = self.skin.neutral.size, self.neutral_tongue.size
            arrays["skin_geometry"] = get("skin_geometry", skin_size).reshape(
                -1, skin_size // 3, 3
            )
            arrays["tongue_geometry"] = get("tongue_geometry", tongue_size).reshape(
                -1, tongue_size // 3, 3
            )
        return AnimationResult(
            weights=np.ascontiguousarray(skin_w[:, skin_columns], dtype=np.float32),
            fps=fps,
            names=ARKIT_52,
            audio_path=audio.path,
            start_s=audio.start_s,
            duration_s=audio.duration_s,
            model=model,
            model_version=version,
            options=options,
            parameters=parameters,
            tongue_weights=np.ascontiguousarray(tongue_w[:, tongue_columns], dtype=np.float32),
            tongue_names=TONGUE_16,
            jaw_transforms=get("jaw", (4, 4)),
            eye_rotations=get("eyes", 6),
            emotions=np.asarray(emotions, np.float32),
            emotion_names=emotion_names,
            arrays=arrays,
        )
