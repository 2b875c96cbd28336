"""The SDK's GPU blendshape solve (ADMM, spec §4.1 ``admm.cu``) in torch, batched over tracks.

Same problem as :mod:`.blendshapes` (the regularised normal matrix ``M`` and right-hand side
``b = D^T (target - neutral) + T s prev``), solved the way the SDK's GPU solver does::

    Atb = M^T b;  z = clip(M^-1 b, l, u);  u_dual = 0
    w = 0.25 sqrt(diag(M^T M));  K = (M^T M + diag(w^2))^-1
    4 updates:  x = K (w^2 (z - u_dual) + Atb);  z = clip(u_dual + x, l, u);
                u_dual = u_dual + 1.9 (x - z)
    result z; cancel pairs: cap the smaller weight's upper bound at 1e-10 and run ADMM again.

Only four updates from a clipped unconstrained start, so the result is close to, not equal to,
the CPU BVLS optimum ("GPU ~ CPU but not identical"). Tracks are batched; frames are sequential
when the temporal term couples them (``T != 0``) and batched too when it does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends.torch_engine import import_torch
from .blendshapes import CANCEL_CAP, BlendshapeSolver

#: ADMM updates (2 loops x 2 ping-pong buffers in ``admm.cu``) and over-relaxation factor.
ADMM_UPDATES = 4
ADMM_RELAX = 1.9


class AdmmSolver:
    """One prepared solver (skin or tongue) on a torch device, for any number of tracks.

    Args:
        solver: the prepared CPU solver (active poses, ``M``, mask, scale, cancel pairs, ...).
        device: torch device string ("cuda", "cpu").
        dtype: "float32" (the SDK's precision) or "float64".
    """

    def __init__(self, solver: BlendshapeSolver, device: str = "cuda", dtype: str = "float32"):
        torch = import_torch()
        self.torch = torch
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.num_poses = solver.num_poses
        self.num_active = len(solver.active)
        m = solver.matrix.astype(np.float64)
        mtm = m.T @ m
        w2 = (0.25 * np.sqrt(np.diag(mtm))) ** 2
        k = np.linalg.inv(mtm + np.diag(w2))

        def put(a: np.ndarray) -> Any:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=self.dtype, device=self.device)

        # row-vector convention: x_row @ A^T == (A x)^T
        self.m = put(m)  # Atb rows = b_rows @ M
        self.minv_t = put(np.linalg.inv(m).T)
        self.k_t = put(k.T)
        self.w2 = put(w2)
        self.delta = put(solver.delta_t.T.astype(np.float64))  # [rows, active]
        self.neutral = put(solver.neutral.astype(np.float64))
        self.mask_columns = solver.mask_columns
        self.temporal_b = float(solver.temporal_b)
        self.active = torch.as_tensor(solver.active, device=self.device)
        self.multipliers = put(solver.multipliers.astype(np.float64))
        self.offsets = put(solver.offsets.astype(np.float64))
        pairs = np.asarray(solver.cancel_pairs, dtype=np.int64).reshape(-1, 2)
        self.cancel_i = torch.as_tensor(pairs[:, 0], device=self.device)
        self.cancel_j = torch.as_tensor(pairs[:, 1], device=self.device)

    def project(self, targets: Any, *, masked: bool = False) -> Any:
        """``D^T (target - neutral)`` rows for absolute geometry ``[..., D]`` (a device tensor
        or an array; ``masked``: already restricted to the mask's xyz columns)."""
        t = self.torch.as_tensor(targets, device=self.device).to(self.dtype)
        if not masked and self.mask_columns is not None:
            t = t[..., self.torch.as_tensor(self.mask_columns, device=self.device)]
        return (t - self.neutral) @ self.delta

    def admm(self, b: Any, upper: Any) -> Any:
        """The SDK's ADMM for right-hand sides ``b`` ``[N, n]`` and upper bounds (lower 0)."""
        torch = self.torch
        atb = b @ self.m
        z = torch.clamp(b @ self.minv_t, min=torch.zeros_like(upper), max=upper)
        dual = torch.zeros_like(z)
        for _ in range(ADMM_UPDATES):
            x = (self.w2 * (z - dual) + atb) @ self.k_t
            z = torch.minimum(torch.clamp(dual + x, min=0.0), upper)
            dual = dual + ADMM_RELAX * (x - z)
        return z

    def solve_rows(self, b: Any) -> Any:
        """Active-pose weights for right-hand sides ``b`` ``[N, n]``, cancel pass included."""
        upper = self.torch.ones_like(b)
        z = self.admm(b, upper)
        if len(self.cancel_i):
            zi, zj = z[:, self.cancel_i], z[:, self.cancel_j]
            capped = self.torch.where(zi >= zj, self.cancel_j, self.cancel_i)  # tie: second
            upper = upper.scatter(1, capped, CANCEL_CAP)
            z = self.admm(b, upper)
        return z

    def solve_projected(self, atb: Any, prev: Any | None = None) -> tuple[Any, Any]:
        """Weights for projections ``[tracks, frames, n]`` -> (``[tracks, frames, n]`` active
        weights, the last frame's weights per track for the next call's temporal term).

        ``prev`` ``[tracks, n]`` is the previous frame's weights (None = after a reset)."""
        tracks, frames, n = atb.shape
        if prev is None:
            prev = self.torch.zeros((tracks, n), dtype=self.dtype, device=self.device)
        if self.temporal_b == 0.0:  # frames independent: one batch of tracks x frames
            z = self.solve_rows(atb.reshape(-1, n)).reshape(tracks, frames, n)
            return z, z[:, -1] if frames else prev
        out = []
        for f in range(frames):  # the temporal term couples consecutive frames of a track
            prev = self.solve_rows(atb[:, f] + self.temporal_b * prev)
            out.append(prev)
        z = self.torch.stack(out, dim=1) if out else atb
        return z, prev

    def expand(self, active_weights: Any) -> Any:
        """``[..., P]`` output: inactive poses 0, then ``* multiplier + offset``."""
        shape = (*active_weights.shape[:-1], self.num_poses)
        out = self.torch.zeros(shape, dtype=self.dtype, device=self.device)
        out[..., self.active] = active_weights
        return out * self.multipliers + self.offsets

    def solve(self, targets: Any, *, masked: bool = False, prev: Any | None = None) -> Any:
        """Pose weights ``[tracks, frames, P]`` for geometry ``[tracks, frames, D]`` (from a
        reset unless ``prev`` is given). Returns a device tensor."""
        z, _ = self.solve_projected(self.project(targets, masked=masked), prev)
        return self.expand(z)
