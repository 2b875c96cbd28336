"""The SDK's GPU blendshape solve (ADMM, spec §4.1 ``admm.cu``) in torch, batched over tracks.

Same problem as :mod:`a2x_core.blendshapes.cpu` (the regularised normal matrix ``M`` and right-hand side
``b = D^T (target - neutral) + T s prev``), solved the way the SDK's GPU solver does::

    Atb = M^T b;  z = clip(M^-1 b, l, u);  u_dual = 0
    w = 0.25 sqrt(diag(M^T M));  K = (M^T M + diag(w^2))^-1
    4 updates:  x = K (w^2 (z - u_dual) + Atb);  z = clip(u_dual + x, l, u);
                u_dual = u_dual + 1.9 (x - z)
    result z; cancel pairs: cap the smaller weight's upper bound at 1e-10 and run ADMM again.

Only four updates from a clipped unconstrained start, so the result is close to, not equal to,
the CPU BVLS optimum ("GPU ~ CPU but not identical"). Tracks are batched; frames are sequential
when the temporal term couples them (``T != 0``) and batched too when it does not.

Several solvers (a track's skin and tongue) can be stacked into one block-diagonal system: every
step of the ADMM is a product with a block-diagonal matrix or elementwise, so the blocks do not
mix and one frame step solves all of them (half the kernel launches of two solvers). The x update
is evaluated as ``x = (z - u_dual) (diag(w^2) K)^T + b (M K)^T`` -- the same quantity with the
frame-constant part ``b (M K)^T`` computed once per frame. On CUDA the sequential frame loop of one
call can be captured as a CUDA graph and replayed (``cuda_graphs``), at a few padded shapes
(:func:`graph_shape`) so that calls of varying tracks and frames reuse them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backends.torch_engine import import_torch, row_bucket
from .cpu import CANCEL_CAP, BlendshapeSolver

log = logging.getLogger("a2x_core")

#: ADMM updates (2 loops x 2 ping-pong buffers in ``admm.cu``) and over-relaxation factor.
ADMM_UPDATES = 4
ADMM_RELAX = 1.9
#: CUDA graphs of the frame loop kept per solver (one per padded (tracks, frames) shape; the
#: least recently used goes when a new one is needed).
MAX_GRAPHS = 8
#: Frames of a graphed call are padded to a multiple of this (extra sequential steps, at most
#: ``FRAME_BUCKET - 1``, against a capture per clip length).
FRAME_BUCKET = 8


def graph_shape(tracks: int, frames: int) -> tuple[int, int]:
    """The (tracks, frames) a CUDA graph of the frame loop is captured at for a call of
    ``tracks`` x ``frames``: tracks to the torch engine's row buckets (powers of two to 256,
    then multiples of 256), frames to a multiple of :data:`FRAME_BUCKET`. Padded tracks are
    independent rows and padded frames come after the real ones, so neither changes a real
    result; the shapes repeat across an offline batch's calls (tracks ending one by one, clips
    of every length), where each exact shape used to pay a capture, and from the ninth shape
    on ran eagerly (a launch per operation per frame)."""
    frames_padded = -(-int(frames) // FRAME_BUCKET) * FRAME_BUCKET
    return row_bucket(int(tracks), 1 << 30), max(FRAME_BUCKET, frames_padded)


class AdmmSolver:
    """Prepared solvers (skin, or skin and tongue stacked) on a torch device, for any number of
    tracks.

    Args:
        solver: the prepared CPU solver (active poses, ``M``, mask, scale, cancel pairs, ...), or
            several of them, solved together as one block-diagonal system (``parts``).
        device: torch device string ("cuda", "cpu").
        dtype: "float32" (the SDK's precision) or "float64".
        cuda_graphs: on CUDA, replay the frame loop of :meth:`solve_projected` as a CUDA graph
            (captured once per shape; falls back to eager execution if capture fails).
    """

    def __init__(
        self,
        solver: BlendshapeSolver | Sequence[BlendshapeSolver],
        device: str = "cuda",
        dtype: str = "float32",
        cuda_graphs: bool = False,
    ):
        torch = import_torch()
        self.torch = torch
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        solvers = [solver] if isinstance(solver, BlendshapeSolver) else list(solver)
        sizes = [len(s.active) for s in solvers]
        #: (first column, active poses) of each stacked solver
        self.parts = [(int(sum(sizes[:i])), n) for i, n in enumerate(sizes)]
        total = sum(sizes)
        m = np.zeros((total, total))
        for (at, n), s in zip(self.parts, solvers, strict=True):
            m[at : at + n, at : at + n] = s.matrix
        mtm = m.T @ m
        w2 = (0.25 * np.sqrt(np.diag(mtm))) ** 2
        k = np.linalg.inv(mtm + np.diag(w2))  # block-diagonal like M

        def put(a: np.ndarray) -> Any:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=self.dtype, device=self.device)

        # row-vector convention: x_row @ A^T == (A x)^T
        # one GEMM per solve: [c | z0] = b @ [(M K)^T | M^-T] (c: the frame-constant x term)
        self.init = put(np.concatenate([(k @ m).T, np.linalg.inv(m).T], axis=1))
        self.kw = put((k * w2[None, :]).T)  # (K diag(w^2))^T
        self.num_active = total
        self.temporal = put(np.concatenate([np.full(n, s.temporal_b) for n, s in
                                            zip(sizes, solvers, strict=True)]))  # fmt: skip
        self.temporal_b = float(self.temporal.abs().max()) if total else 0.0
        self._solvers = solvers
        self._outputs = [self._output_tensors(s, put) for s in solvers]
        s0 = solvers[0]
        self.num_poses = s0.num_poses
        self.delta = put(s0.delta_t.T.astype(np.float64))  # [rows, active] of the first solver
        self.neutral = put(s0.neutral.astype(np.float64))
        self.mask_columns = s0.mask_columns
        pairs = [np.asarray(s.cancel_pairs, dtype=np.int64).reshape(-1, 2) + at
                 for (at, _), s in zip(self.parts, solvers, strict=True)]  # fmt: skip
        pairs_all = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        self.cancel_i = torch.as_tensor(pairs_all[:, 0], device=self.device)
        self.cancel_j = torch.as_tensor(pairs_all[:, 1], device=self.device)
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self._graphs: OrderedDict[tuple[int, ...], tuple[Any, list[Any], Any]] = OrderedDict()
        self._failed: set[tuple[int, ...]] = set()

    def _output_tensors(self, solver: BlendshapeSolver, put: Any) -> tuple[Any, Any, Any]:
        active = self.torch.as_tensor(solver.active, device=self.device)
        return active, put(solver.multipliers.astype(np.float64)), put(
            solver.offsets.astype(np.float64)
        )

    @property
    def active(self) -> Any:
        return self._outputs[0][0]

    def project(self, targets: Any, *, masked: bool = False) -> Any:
        """``D^T (target - neutral)`` rows of the first solver for absolute geometry ``[..., D]``
        (a device tensor or an array; ``masked``: already restricted to the mask's columns)."""
        t = self.torch.as_tensor(targets, device=self.device).to(self.dtype)
        if not masked and self.mask_columns is not None:
            t = t[..., self.torch.as_tensor(self.mask_columns, device=self.device)]
        return (t - self.neutral) @ self.delta

    def admm(self, b: Any, upper: Any | None = None) -> Any:
        """The SDK's ADMM for right-hand sides ``b`` ``[N, n]`` and upper bounds (None = 1;
        lower 0)."""
        torch = self.torch
        c, z = (b @ self.init).split(self.num_active, dim=-1)
        clip = (lambda v: v.clamp(0.0, 1.0)) if upper is None else (
            lambda v: torch.minimum(v.clamp_min(0.0), upper))  # fmt: skip
        z = clip(z)
        dual = None
        for update in range(ADMM_UPDATES):
            if dual is None:  # u_dual = 0
                x = torch.addmm(c, z, self.kw)
                v = x
            else:
                x = torch.addmm(c, z - dual, self.kw)
                v = dual + x
            z = clip(v)
            if update + 1 < ADMM_UPDATES:
                step = (x - z).mul_(ADMM_RELAX)
                dual = step if dual is None else dual.add_(step)
        return z

    def solve_rows(self, b: Any) -> Any:
        """Active-pose weights for right-hand sides ``b`` ``[N, n]``, cancel pass included."""
        z = self.admm(b)
        if len(self.cancel_i):
            torch = self.torch
            zi, zj = z[:, self.cancel_i], z[:, self.cancel_j]
            capped = torch.where(zi >= zj, self.cancel_j, self.cancel_i)  # tie: second
            upper = torch.ones_like(b).scatter_(1, capped, CANCEL_CAP)
            z = self.admm(b, upper)
        return z

    def _frames(self, atb: Any, prev: Any, out: Any) -> Any:
        """The sequential frame loop: ``out[:, f]`` = weights of frame ``f``; returns the last."""
        for f in range(atb.shape[1]):  # the temporal term couples consecutive frames of a track
            prev = self.solve_rows(self.torch.addcmul(atb[:, f], self.temporal, prev))
            out[:, f] = prev
        return prev

    def _graphed(self, atb: Any, prev: Any) -> tuple[Any, Any] | None:
        """The frame loop of ``atb`` ``[tracks, frames, n]`` from ``prev`` replayed as the CUDA
        graph of its padded shape (:func:`graph_shape`; captured on first use, least recently
        used dropped beyond :data:`MAX_GRAPHS`); None when capture failed (then eager)."""
        tracks, frames, n = atb.shape
        key = (*graph_shape(tracks, frames), n)
        if key in self._failed:
            return None
        if key in self._graphs:
            self._graphs.move_to_end(key)
        else:
            while len(self._graphs) >= MAX_GRAPHS:
                self._graphs.popitem(last=False)
            torch = self.torch
            try:
                # zeros, not empty: the padding of the first replay must be finite
                static = [atb.new_zeros(key), prev.new_zeros((key[0], n))]
                out = torch.zeros_like(static[0])
                stream = torch.cuda.Stream(self.device)
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    self._frames(static[0], static[1], out)  # warm-up off the graph
                torch.cuda.current_stream(self.device).wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self._frames(static[0], static[1], out)
            except Exception as error:  # capture is an optimisation: any failure means eager
                log.info("ADMM: CUDA graph capture failed for %s (%s); eager", key, error)
                self._failed.add(key)
                return None
            self._graphs[key] = (graph, static, out)
        graph, static, out = self._graphs[key]
        # the padding keeps what the last replay left there: finite, and never read back
        static[0][:tracks, :frames].copy_(atb)
        static[1][:tracks].copy_(prev)
        graph.replay()
        return out[:tracks, :frames], out[:tracks, frames - 1]

    def solve_projected(self, atb: Any, prev: Any | None = None) -> tuple[Any, Any]:
        """Weights for projections ``[tracks, frames, n]`` -> (``[tracks, frames, n]`` active
        weights, the last frame's weights per track for the next call's temporal term).

        ``prev`` ``[tracks, n]`` is the previous frame's weights (None = after a reset). With
        ``cuda_graphs`` the returned tensors belong to the graph and are overwritten by the next
        call of the same padded shape (:func:`graph_shape`): copy them to keep them."""
        torch = self.torch
        tracks, frames, n = atb.shape
        atb = atb.to(self.dtype)
        if prev is None:
            prev = torch.zeros((tracks, n), dtype=self.dtype, device=self.device)
        if frames == 0:
            return atb, prev
        if self.temporal_b == 0.0:  # frames independent: one batch of tracks x frames
            z = self.solve_rows(atb.reshape(-1, n)).reshape(tracks, frames, n)
            return z, z[:, -1]
        if self.cuda_graphs:
            done = self._graphed(atb, prev)
            if done is not None:
                return done
        out = torch.empty_like(atb)
        return out, self._frames(atb, prev, out)

    def expand(self, active_weights: Any, part: int = 0) -> Any:
        """``[..., P]`` output of stacked solver ``part`` from its active weights (its columns of
        a stacked result are taken here when given all of them): inactive poses 0, then
        ``* multiplier + offset``."""
        at, n = self.parts[part]
        if active_weights.shape[-1] == self.num_active and len(self.parts) > 1:
            active_weights = active_weights[..., at : at + n]
        active, multipliers, offsets = self._outputs[part]
        shape = (*active_weights.shape[:-1], self._solvers[part].num_poses)
        out = self.torch.zeros(shape, dtype=self.dtype, device=self.device)
        out[..., active] = active_weights.to(self.dtype)
        return out * multipliers + offsets

    def solve(self, targets: Any, *, masked: bool = False, prev: Any | None = None) -> Any:
        """Pose weights ``[tracks, frames, P]`` for geometry ``[tracks, frames, D]`` (from a
        reset unless ``prev`` is given), single solver. Returns a device tensor."""
        z, _ = self.solve_projected(self.project(targets, masked=masked), prev)
        return self.expand(z)

    def release_graphs(self) -> None:
        """Drop the captured CUDA graphs."""
        self._graphs.clear()
