"""The SDK's blendshape solve (CPU path): geometry -> pose weights (SDK spec §4.1, §8.10).

Prepare (once per solver): active poses, the delta matrix ``D`` restricted to the frontal-mask
vertices' xyz rows, the scale ``s = (|max_xyz(neutral) - min_xyz(neutral)| / templateBBSize)^2``
and the regularised normal matrix::

    M = D^T D + L1^2 * 0.25 s * 11^T + L2 * 10 s * I + T * 100 s * I + Sym * 10 s * S^T S

Per frame: ``b = D^T (target - neutral) + T * s * prev`` (s, not 100 s) and a bounded least
squares **on M itself** -- minimise ``|M x - b|^2`` with ``0 <= x <= 1`` -- by the SDK's BVLS
(``bvls.cpp``), quirks included: its stopping rules (KKT < 1e-10, no variable to free, cost
increase, optimality change < 1e-6, at most n outer iterations). Cancel pairs: cap the upper
bound of the smaller weight of each pair at 1e-10 and solve again. Output: inactive poses 0,
then ``w * multiplier + offset`` for every pose, not clipped.

Linear algebra is float64 (the SDK uses float32 Eigen); results agree to float32 precision.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..models.regression_folder import BlendshapeConfig, BlendshapeData

#: BVLS KKT tolerance (``kDefaultTolerance``; not in the config file, spec §4.1).
TOLERANCE = 1e-10
#: Upper bound given to the smaller pose of a cancel pair (``1e-10f``).
CANCEL_CAP = float(np.float32(1e-10))
#: Optimality change below which the SDK's BVLS stops.
OPTIMALITY_STALL = 1e-6


class BoundedSolver:
    """``min |M x - b|^2, lower <= x <= upper`` for one fixed square ``M`` (SDK BVLS).

    Frame-independent work is done once: ``G = M^T M`` and the pseudo-inverse of ``M`` (the
    unconstrained solve, as Eigen's JacobiSVD ``solve``); sub-problems on a free set solve the
    normal equations ``G_FF y = (M^T b)_F - G_F: x0`` (exact for full-rank ``M``), falling back
    to least squares on ``M[:, F]`` when ``M`` is ill-conditioned.
    """

    def __init__(self, matrix: np.ndarray, tolerance: float = TOLERANCE) -> None:
        self.m = np.asarray(matrix, dtype=np.float64)
        self.mt = np.ascontiguousarray(self.m.T)
        self.g = self.mt @ self.m
        self.pinv = np.linalg.pinv(self.m)
        self.tolerance = tolerance
        self.use_normal = bool(np.linalg.cond(self.m) < 1e6)
        self.max_inner = 4 * len(self.m) + 8  # guard against cycling; the SDK has none

    def _constrained_min(
        self, x: np.ndarray, on_bound: np.ndarray, b: np.ndarray, c: np.ndarray
    ) -> None:
        """Minimise over the free variables (``on_bound == 0``), others fixed (in place)."""
        free = on_bound == 0
        if not free.any():
            return
        if free.all():
            x[:] = self.pinv @ b
            return
        x0 = np.where(free, 0.0, x)
        if self.use_normal:
            idx = np.flatnonzero(free)
            rhs = c[idx] - self.g[idx] @ x0
            try:
                x[idx] = np.linalg.solve(self.g[np.ix_(idx, idx)], rhs)
                return
            except np.linalg.LinAlgError:
                pass
        x[free] = np.linalg.lstsq(self.m[:, free], b - self.m @ x0, rcond=None)[0]

    def _cost_grad(self, x: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
        r = self.m @ x - b
        return 0.5 * float(r @ r), self.mt @ r

    @staticmethod
    def _on_bound(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        out = np.zeros(len(x), dtype=np.int8)
        out[x == upper] = 1
        out[x == lower] = -1  # checked first in the SDK
        return out

    @staticmethod
    def _kkt(g: np.ndarray, on_bound: np.ndarray) -> float:
        # bound variables: g * on_bound (violation when it is positive); free ones: |g|
        viol = np.where(on_bound == 0, np.abs(g), g * on_bound)
        return float(viol.max())

    def solve(self, b: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """The SDK's ``bvls::solveSystem`` for right-hand side ``b``."""
        b = np.asarray(b, dtype=np.float64)
        c = self.mt @ b
        n = len(b)
        x = np.zeros(n)
        # initialFeasiblePoint: solve, clamp the free violators onto their bounds, repeat
        on_bound = np.zeros(n, dtype=np.int8)
        while True:
            self._constrained_min(x, on_bound, b, c)
            free = on_bound == 0
            low = free & (x < lower)
            high = free & ~low & (x > upper)
            if not (low.any() or high.any()):
                break
            x[low], on_bound[low] = lower[low], -1
            x[high], on_bound[high] = upper[high], 1
        cost, g = self._cost_grad(x, b)
        on_bound = self._on_bound(x, lower, upper)
        optimality = self._kkt(g, on_bound)
        previous = optimality
        for _ in range(n):
            if optimality < self.tolerance:
                break
            # varToDetach: the bound variable with the largest favourable gradient (first wins)
            at_lower = x == lower
            at_upper = ~at_lower & (x == upper)
            score = np.where(at_lower & (g < 0), -g, np.where(at_upper & (g > 0), g, 0.0))
            j = int(np.argmax(score))
            if score[j] <= 0.0:
                break
            on_bound[j] = 0
            for _inner in range(self.max_inner):
                s = x.copy()
                self._constrained_min(s, on_bound, b, c)
                # makePointFeasible: walk from x towards s while feasible
                moving = x != s
                with np.errstate(divide="ignore", invalid="ignore"):
                    step = np.full(n, np.inf)
                    below = moving & (s < lower)
                    above = moving & ~below & (s > upper)
                    step[below] = (x[below] - lower[below]) / (x[below] - s[below])
                    step[above] = (upper[above] - x[above]) / (s[above] - x[above])
                k = int(np.argmin(step))
                alpha = 1.0 if not step[k] < 1.0 else float(step[k])
                x += alpha * (s - x)
                if alpha == 1.0:
                    break  # s was feasible
                x[k] = lower[k] if below[k] else upper[k]
                on_bound = self._on_bound(x, lower, upper)
            cost_new, g = self._cost_grad(x, b)
            if cost_new > cost:
                break
            cost = cost_new
            optimality = self._kkt(g, on_bound)
            if abs(previous - optimality) < OPTIMALITY_STALL:
                break
            previous = optimality
        return x


def _pairs(ids: np.ndarray, active: np.ndarray) -> list[tuple[int, int]]:
    """Pairs among the *active* poses, as indices into the active list; ids that do not have
    exactly two active members are skipped (SDK ``Prepare`` ``getPairs``).

    The SDK groups every id, -1 ("no pair") included, so two active poses that are the only
    active ones at -1 form a pair too; with more than two at -1 (the usual case) the group is
    skipped like any other group that is not a pair. Both solvers (BVLS here, ADMM in
    :mod:`a2x_core.blendshapes.gpu`) take their pairs from here.
    """
    act_ids = ids[active]
    out = []
    for pair_id in np.unique(act_ids):
        members = np.flatnonzero(act_ids == pair_id)
        if len(members) == 2:
            out.append((int(members[0]), int(members[1])))
    return out


def frontal_columns(data: BlendshapeData) -> np.ndarray | None:
    """The xyz coordinates of ``frontalMask``'s vertices (the rows the solve reads), or None."""
    if data.frontal_mask is None:
        return None
    return (data.frontal_mask.astype(np.int64)[:, None] * 3 + np.arange(3)).reshape(-1)


class BlendshapeSolver:
    """One solver (skin or tongue) for one track: prepared once, ``reset()`` per clip."""

    def __init__(self, data: BlendshapeData, config: BlendshapeConfig) -> None:
        self.pose_names = data.pose_names
        self.num_poses = len(data.pose_names)
        self.active = np.flatnonzero(config.active != 0)
        self.mask_columns = frontal_columns(data)
        cols = slice(None) if self.mask_columns is None else self.mask_columns
        # D^T: [active, rows] float32, rows = masked xyz coordinates
        self.delta_t = np.ascontiguousarray(data.deltas[self.active][:, cols])
        self.neutral = np.ascontiguousarray(data.neutral[cols])
        # scale from the full (unmasked) neutral's bounding box, float32 like the SDK
        xyz = data.neutral.reshape(-1, 3)
        bb = np.float32(np.linalg.norm((xyz.max(axis=0) - xyz.min(axis=0)).astype(np.float32)))
        self.scale = float(np.float32((bb / np.float32(config.template_bb_size)) ** 2))
        n = len(self.active)
        sym_pairs = _pairs(config.symmetry_ids, self.active)
        sym = np.zeros((len(sym_pairs), n))
        for row, (i, j) in enumerate(sym_pairs):
            sym[row, i], sym[row, j] = 1.0, -1.0
        self.cancel_pairs = _pairs(config.cancel, self.active)
        d64 = self.delta_t.astype(np.float64)
        s = self.scale
        self.matrix = (
            d64 @ d64.T
            + config.l1 * config.l1 * 0.25 * s * np.ones((n, n))
            + config.l2 * 10.0 * s * np.eye(n)
            + config.temporal * 100.0 * s * np.eye(n)
            + config.symmetry * 10.0 * s * (sym.T @ sym)
        )
        self.temporal_b = config.temporal * s  # b uses T * s, not T * 100 s (spec §8.10)
        self.multipliers = config.multipliers.astype(np.float32)
        self.offsets = config.offsets.astype(np.float32)
        self.lower = np.zeros(n)
        # The loaders bound every value (model_package.MAX_MODEL_VALUE), so this only guards
        # data built by hand: a typed error instead of a LinAlgError (reliability_fuzz M5).
        with np.errstate(all="ignore"):
            finite = bool(np.all(np.isfinite(self.matrix))) and np.isfinite(self.scale)
        if not finite:
            raise ModelError(
                "the blendshape solve has a non-finite system (neutral, pose deltas or "
                "bs_*_config.json strengths too large)",
                hint="check the model folder's bs_*.npz and bs_*_config.json",
            )
        try:
            self._bvls = BoundedSolver(self.matrix)
        except np.linalg.LinAlgError as error:
            raise ModelError(
                f"the blendshape solve cannot be prepared ({error})",
                hint="check the model folder's bs_*.npz and bs_*_config.json",
            ) from None
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame's weights (temporal term), as ``Reset(track)``."""
        self.prev = np.zeros(len(self.active))

    def project(self, targets: np.ndarray, *, masked: bool = False) -> np.ndarray:
        """``D^T (target - neutral)`` for ``[n, D]`` absolute geometry (``masked``: already
        restricted to :attr:`mask_columns`). One GEMM for a chunk of frames."""
        targets = np.asarray(targets, dtype=np.float32)
        if not masked and self.mask_columns is not None:
            targets = targets[:, self.mask_columns]
        # C order whatever the caller's layout: BLAS rounds a transposed operand differently,
        # and the weights must not depend on it (e.g. with or without --geometry)
        deltas = np.ascontiguousarray(targets - self.neutral)
        return (deltas @ self.delta_t.T).astype(np.float64)

    def solve_projected(self, atb: np.ndarray) -> np.ndarray:
        """Active-pose weights for one frame from its projection; updates the temporal state."""
        b = atb + self.temporal_b * self.prev
        upper = np.ones(len(self.active))
        x = self._bvls.solve(b, self.lower, upper)
        if self.cancel_pairs:
            for i, j in self.cancel_pairs:
                upper[j if x[i] >= x[j] else i] = CANCEL_CAP
            x = self._bvls.solve(b, self.lower, upper)
        self.prev = x
        return x

    def expand(self, active_weights: np.ndarray) -> np.ndarray:
        """``[n, P]`` float32 output: inactive poses 0, then ``* multiplier + offset``."""
        active_weights = np.atleast_2d(active_weights)
        out = np.zeros((len(active_weights), self.num_poses), dtype=np.float32)
        out[:, self.active] = active_weights
        return out * self.multipliers + self.offsets

    def solve(self, targets: np.ndarray, *, masked: bool = False) -> np.ndarray:
        """Weights ``[n, P]`` for consecutive frames of absolute geometry ``[n, D]``."""
        return self.solve_projections(self.project(targets, masked=masked))

    def solve_projections(self, atb: np.ndarray) -> np.ndarray:
        """Weights ``[n, P]`` for consecutive frames' projections ``[n, active]`` (of
        :meth:`project`, or folded: :class:`a2x_core.postprocess.cpu.FoldedProjection`)."""
        xs = np.stack([self.solve_projected(row) for row in atb]) if len(atb) else atb
        return self.expand(xs)
