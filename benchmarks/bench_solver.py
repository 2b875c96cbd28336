"""Blendshape solver speed: 52 ARKit poses on a mesh with a 10k-vertex frontal mask (CPU, NumPy).

Mark-like skin config (L1 0.5, L2 0.5, temporal 0.3, symmetry 100; spec §1.5). Reports solves/s
(a) one frame per call (projection D^T(t - n) + BVLS), and (b) as the pipeline runs it: the
frame-independent projection as one GEMM per 16 frames, then the sequential BVLS per frame.

Usage: python benchmarks/bench_solver.py [--frames 2000] [--verts 20000] [--mask 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import timeit

import numpy as np

from a2x_core.blendshapes.cpu import BlendshapeSolver
from a2x_core.models.regression_folder import BlendshapeConfig, BlendshapeData


def build(num_verts: int, mask: int, seed: int = 0) -> tuple[BlendshapeSolver, np.ndarray]:
    rng = np.random.default_rng(seed)
    poses = 52
    neutral = rng.uniform(-10, 10, num_verts * 3).astype(np.float32)
    deltas = rng.normal(0, 0.5, (poses, num_verts, 3)) * (rng.random((poses, num_verts, 1)) < 0.3)
    deltas = deltas.reshape(poses, -1).astype(np.float32)
    frontal = np.sort(rng.choice(num_verts, mask, replace=False)).astype(np.int32)
    active = np.ones(poses, np.int32)
    active[[1, 2, 3, 4, 51]] = 0
    symmetry = np.full(poses, -1, np.int32)
    for pair, (i, j) in enumerate(((0, 7), (5, 12), (23, 24), (25, 26))):
        symmetry[[i, j]] = pair
    config = BlendshapeConfig(
        l1=0.5, l2=0.5, temporal=0.3, symmetry=100.0, template_bb_size=30.0, active=active,
        cancel=np.full(poses, -1, np.int32), symmetry_ids=symmetry,
        multipliers=np.ones(poses, np.float32), offsets=np.zeros(poses, np.float32),
    )  # fmt: skip
    names = tuple(f"pose{i}" for i in range(poses))
    solver = BlendshapeSolver(BlendshapeData(names, neutral, deltas, frontal), config)
    return solver, (neutral, deltas, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--verts", type=int, default=20000)
    parser.add_argument("--mask", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    t0 = time.perf_counter()
    solver, (neutral, deltas, rng) = build(args.verts, args.mask)
    prepare_s = time.perf_counter() - t0
    # smooth random weight curves -> target geometry (absolute), as the skin stage produces
    weights = np.clip(np.cumsum(rng.normal(0, 0.05, (args.frames, 52)), axis=0), 0, 1)
    targets = (neutral + weights.astype(np.float32) @ deltas).astype(np.float32)
    masked = targets[:, solver.mask_columns]

    def one_per_call() -> None:
        solver.reset()
        for frame in masked:
            solver.solve(frame[None], masked=True)

    def chunks_of_16() -> None:
        solver.reset()
        for start in range(0, args.frames, 16):
            solver.solve(masked[start : start + 16], masked=True)

    # best of --repeat runs: the machine is shared, the minimum is the least disturbed
    single = args.frames / min(timeit.repeat(one_per_call, number=1, repeat=args.repeat))
    chunked = args.frames / min(timeit.repeat(chunks_of_16, number=1, repeat=args.repeat))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}, numpy {np.__version__}")  # fmt: skip
    print(
        f"52 poses, {args.mask} masked of {args.verts} vertices, prepare {prepare_s * 1000:.0f} ms"
    )
    print(f"| solver, one frame per call | {single:,.0f} solves/s |")
    print(f"| solver, 16-frame projection + per-frame BVLS | {chunked:,.0f} solves/s |")


if __name__ == "__main__":
    main()
