"""Audio2Face-3D regression speed on the CPU (ONNX Runtime) with a Mark-sized model folder.

Builds (once, cached) a complete regression folder with Mark's sizes (272 skin / 10 tongue PCA
shapes, 61,520 skin and 5,602 tongue vertices, a 10,085-vertex frontal mask, 52 + 16 poses) and
the architecture-faithful ~18.3 M-parameter network of ``a2f_network.py`` (random weights; needs
torch to build). Reports, for one track at the given fps and ORT threads:

- network only: one inference per frame (the SDK's way) and 16 frames per call;
- the whole pipeline (windows, network, PCA, skin/tongue/jaw/eyes, both blendshape solves) with
  ``frames_per_call`` 16 (default) and 1, and the largest weight difference between the two.

Usage: python benchmarks/bench_regression.py [--seconds 10] [--fps 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import timeit
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MARK = {"num_shapes_skin": 272, "num_shapes_tongue": 10, "num_verts_skin": 61520,
        "num_verts_tongue": 5602}  # fmt: skip


def ensure_folder(cache: Path) -> Path:
    """The Mark-sized folder under ``cache`` (built on first use)."""
    model_json = cache / "model.json"
    marker = cache / "bench_network.done"
    if model_json.exists() and marker.exists():
        return model_json
    from a2f_network import export_onnx

    from tests.a2f_folders import make_regression_folder

    print(f"building a Mark-sized model folder in {cache} ...", flush=True)
    make_regression_folder(cache, frontal_fraction=10085 / 61520, **MARK)
    params = export_onnx(cache / "network.onnx", MARK["num_shapes_skin"], MARK["num_shapes_tongue"])
    marker.write_text(f"{params}\n")
    return model_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", default="60")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_mark"))
    args = parser.parse_args()

    import onnxruntime

    from a2x_core.audio.decode import Audio
    from a2x_core.models.registry import load_model
    from a2x_core.options import InferenceOptions
    from a2x_core.timing import parse_fps

    model_json = ensure_folder(args.cache)
    params = int((args.cache / "bench_network.done").read_text())
    fps: Fraction = parse_fps(args.fps)
    model = load_model(model_json, backend="onnxruntime", threads=args.threads)
    rng = np.random.default_rng(0)
    samples = (0.3 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32)
    track = Audio(samples)
    options = InferenceOptions(fps=fps, threads=args.threads)

    # network only
    engine = model.engine
    frames = 64
    audio = rng.uniform(-0.5, 0.5, (frames, 1, 8320)).astype(np.float32)
    emotion = rng.uniform(0, 1, (frames, 1, 26)).astype(np.float32)

    def per_frame() -> None:
        for i in range(frames):
            engine.run({"input": audio[i : i + 1], "emotion": emotion[i : i + 1]})

    def per_16() -> None:
        for i in range(0, frames, 16):
            engine.run({"input": audio[i : i + 16], "emotion": emotion[i : i + 16]})

    per_16()  # warm-up
    net_1 = frames / min(timeit.repeat(per_frame, number=1, repeat=args.repeat))
    net_16 = frames / min(timeit.repeat(per_16, number=1, repeat=args.repeat))

    # whole pipeline, one track
    results = {}
    speeds = {}
    for fpc in (16, 1):
        model.frames_per_call = fpc
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            results[fpc] = model.animate([track], options)[0]
            best = min(best, time.perf_counter() - t0)
        speeds[fpc] = results[fpc].num_frames / best
    diff = float(np.abs(results[16].weights - results[1].weights).max())

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}; threads {args.threads}"
    )
    print(f"network: {params / 1e6:.2f} M parameters; clip {args.seconds:g} s at {fps} fps "
          f"= {results[16].num_frames} frames")  # fmt: skip
    print(f"| network only, 1 frame per inference (SDK) | {net_1:.1f} frames/s |")
    print(f"| network only, 16 frames per inference | {net_16:.1f} frames/s |")
    print(f"| whole pipeline, frames_per_call=16 (default) | {speeds[16]:.1f} frames/s |")
    print(f"| whole pipeline, frames_per_call=1 | {speeds[1]:.1f} frames/s |")
    print(f"max |weights(16) - weights(1)| = {diff:.2e}")


if __name__ == "__main__":
    main()
