"""The Audio2Face-3D model's own head, as far as its folder holds it: for USD and glTF exports.

An Audio2Face-3D folder (regression v2.3 or diffusion v3.0, per identity) ships its skin and
tongue as blend-shape sets (``bs_skin.npz``/``bs_tongue.npz``: the neutral vertices and one
delta per ARKit/tongue pose, the very shapes the solver fits the weights to) and the jaw's five
neutral keypoints (``model_data.npz``), but **no faces**: the meshes' topology stays in NVIDIA's
Maya/USD scenes, which the deployed folders do not include. So the exports carry the vertices
as a point cloud (USD ``Points``, glTF ``POINTS``) with the poses as blend shapes / morph
targets: the take's weights play on them, in any USD or glTF viewer, exactly as the solver
saw the head; the artist's own mesh of the same vertex order can take the shapes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: A vertex whose offset in a pose is shorter than this (model units, centimetres) does not
#: move in it: left out of the sparse blend shapes (a pose moves a part of the face only).
STILL = 1e-4


@dataclass(frozen=True)
class PoseSet:
    """One blend-shape set: ``neutral`` ``[V, 3]``, ``deltas`` ``[P, V, 3]`` named ``names``."""

    names: tuple[str, ...]
    neutral: np.ndarray
    deltas: np.ndarray

    def delta_for(self, name: str) -> np.ndarray | None:
        """The pose's delta, matched case-insensitively (None: the set has no such pose)."""
        lowered = [n.lower() for n in self.names]
        if name.lower() not in lowered:
            return None
        return self.deltas[lowered.index(name.lower())]

    @staticmethod
    def moving(delta: np.ndarray) -> np.ndarray:
        """int32 indices of the vertices the pose moves (see :data:`STILL`)."""
        return np.nonzero(np.linalg.norm(delta, axis=1) >= STILL)[0].astype(np.int32)


@dataclass(frozen=True)
class FaceGeometry:
    """The skin and tongue pose sets and the jaw's neutral keypoints ``[5, 3]``."""

    skin: PoseSet
    tongue: PoseSet | None
    jaw_keypoints: np.ndarray | None


def _pose_set(data: Any) -> PoseSet:
    """A :class:`~a2x_core.models.regression_folder.BlendshapeData` as a :class:`PoseSet`."""
    neutral = np.asarray(data.neutral, dtype=np.float32).reshape(-1, 3)
    deltas = np.asarray(data.deltas, dtype=np.float32).reshape(len(data.pose_names), -1, 3)
    return PoseSet(tuple(data.pose_names), neutral, deltas)


def geometry_of(model: Any, identity: str | None = None) -> FaceGeometry | None:
    """The head of a loaded Audio2Face model (``identity``: a diffusion model's, None for its
    default); None for a model without one (the default lip-sync model)."""
    kind = getattr(model, "kind", "")
    if kind == "regression":
        package = model.package
        skin, tongue = package.skin.data, package.tongue.data
        jaw = package.model_data.neutral_jaw
    elif kind == "diffusion":
        chosen = model.package.identity(identity)
        skin, tongue, jaw = chosen.skin.data, chosen.tongue.data, chosen.data.neutral_jaw
    else:
        return None
    return FaceGeometry(_pose_set(skin), _pose_set(tongue),
                        np.asarray(jaw, dtype=np.float32).reshape(5, 3))  # fmt: skip


def rotation_quaternions(matrices: np.ndarray) -> np.ndarray:
    """``[n, 3, 3]`` rotation matrices → ``[n, 4]`` unit quaternions (x, y, z, w: glTF's order),
    each on the same hemisphere as the one before (so that interpolation takes the short way)."""
    m = np.asarray(matrices, dtype=np.float64)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    candidates = np.stack([
        np.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1],
                  1 + trace], axis=1),
        np.stack([1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0],
                  m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] - m[:, 1, 2]], axis=1),
        np.stack([m[:, 0, 1] + m[:, 1, 0], 1 + m[:, 1, 1] - m[:, 0, 0] - m[:, 2, 2],
                  m[:, 1, 2] + m[:, 2, 1], m[:, 0, 2] - m[:, 2, 0]], axis=1),
        np.stack([m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                  1 + m[:, 2, 2] - m[:, 0, 0] - m[:, 1, 1], m[:, 1, 0] - m[:, 0, 1]], axis=1),
    ], axis=1)  # fmt: skip
    # each row's best-conditioned formula: the one with the largest norm
    best = np.argmax(np.linalg.norm(candidates, axis=2), axis=1)
    quats = candidates[np.arange(len(m)), best]
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    for i in range(1, len(quats)):
        if np.dot(quats[i], quats[i - 1]) < 0:
            quats[i] = -quats[i]
    return quats.astype(np.float32)
