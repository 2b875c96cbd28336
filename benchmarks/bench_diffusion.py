"""Speed and accuracy of the Audio2Face-3D v3.0 diffusion network on the engines (issue 7):
one run, one table.

Builds the architecture-faithful network of ``diffusion_network.py`` (random weights, exported to
ONNX with the deployed I/O) and measures, in one process:

- windows/s against the number of tracks for the torch engine (CUDA when present) in each
  precision, with inputs already on the device; every window yields 30 frames (0.5 s at 60 fps);
- baselines in the same run: ONNX Runtime on this machine's CPU, and a plain eager PyTorch
  forward pass of the same module (default settings, no engine work);
- one streaming track: wall time per window, host in -> host out (the SDK emits a window's 30
  frames at once, every 0.5 s of audio);
- accuracy: the torch engine against ONNX Runtime (fp32) and each reduced precision against the
  engine's fp32 (prediction centre frames and carried GRU state).

Usage: python benchmarks/bench_diffusion.py [--scale full|tiny] [--out results.md] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TRACKS = (1, 2, 4, 8, 16, 32, 64)
CENTRE_FRAMES = 30


def timed(fn: Callable[[], Any], sync: Callable[[], None], min_s: float = 0.5) -> float:
    """Seconds per call: one warm-up, then at least 3 calls and ``min_s`` seconds."""
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_s:
        fn()
        calls += 1
    sync()
    return (time.perf_counter() - start) / calls


def feeds(batch: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Speech-like window, one-hot identity, emotions, a carried GRU state and unit noise."""
    rng = np.random.default_rng(seed)
    return {
        "window": (0.3 * rng.standard_normal((batch, 16000))).astype(np.float32),
        "identity": np.eye(3, dtype=np.float32)[np.arange(batch) % 3],
        "emotion": rng.uniform(0, 1, (batch, 30, 10)).astype(np.float32),
        "input_latents": rng.normal(0, 0.5, (2, 2, batch, 256)).astype(np.float32),
        "noise": rng.standard_normal((batch, 3, 60, width), dtype=np.float32),
    }


def max_error(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest absolute difference over the kept frames and the carried state."""
    centre = slice(15, 45)
    return max(
        float(np.abs(a["prediction"][:, centre] - b["prediction"][:, centre]).max()),
        float(np.abs(a["output_latents"] - b["output_latents"]).max()),
    )


def main() -> None:  # noqa: C901, PLR0915 - one linear script, one table
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=("full", "tiny"), default="full")
    parser.add_argument("--skin-verts", type=int, default=24002)
    parser.add_argument("--tongue-verts", type=int, default=5602)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--quick", action="store_true", help="fewer track counts")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_diffusion"))
    parser.add_argument("--precisions", default="fp32,tf32,bf16,fp16")
    parser.add_argument("--e2e-seconds", type=float, default=10.0, help="0 = skip end to end")
    parser.add_argument("--e2e-tracks", type=int, default=8)
    args = parser.parse_args()

    import torch
    from diffusion_network import build_diffusion_network, export_diffusion_network

    from a2x_core.backends import EngineSettings, diffusion_io
    from a2x_core.backends.onnxruntime import OnnxRuntimeEngine
    from a2x_core.backends.torch_engine import TorchEngine

    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    tracks = (1, 4, 16) if args.quick else TRACKS
    width = 3 * args.skin_verts + 3 * args.tongue_verts + 19
    args.cache.mkdir(parents=True, exist_ok=True)
    onnx = args.cache / f"diffusion_{args.scale}_{args.skin_verts}_{args.tongue_verts}.onnx"
    t0 = time.perf_counter()
    if not onnx.exists():
        export_diffusion_network(onnx, skin_verts=args.skin_verts, tongue_verts=args.tongue_verts,
                                 scale=args.scale)  # fmt: skip
    export_s = time.perf_counter() - t0
    module = build_diffusion_network(skin_verts=args.skin_verts, tongue_verts=args.tongue_verts,
                                     scale=args.scale)  # fmt: skip
    params = sum(p.numel() for p in module.parameters())
    io = diffusion_io(window=16000, frames=60, center_frames=30, emotions=10, identities=3,
                      steps=2, gru_layers=2, latent=256, output_size=width)  # fmt: skip
    rows: dict[str, dict[int, float]] = {}
    notes: list[str] = []
    errors: dict[str, float] = {}
    latency: dict[str, float] = {}

    # --- baseline: ONNX Runtime on the CPU (one window per call, as a streaming track)
    reference = OnnxRuntimeEngine(onnx, *io)
    check = feeds(2, width, seed=1)
    ref_out = reference.run(check)
    ort_rows = {}
    for b in (1, 4):
        f = feeds(b, width)
        ort_rows[b] = b / timed(lambda f=f: reference.run(f), lambda: None, min_s=2.0)
    rows["ONNX Runtime CPU (baseline)"] = ort_rows
    print("ort", ort_rows, flush=True)

    # --- baseline: plain eager PyTorch, default settings
    eager = module.to(dev)
    eager_rows = {}
    with torch.inference_mode():
        for b in tracks:
            f = {k: torch.from_numpy(v).to(dev) for k, v in feeds(b, width).items()}
            try:
                sec = timed(lambda f=f, m=eager: m(f["window"], f["identity"], f["emotion"],
                                                   f["input_latents"], f["noise"]), sync)  # fmt: skip
            except torch.OutOfMemoryError:
                notes.append(f"eager: out of memory at {b} tracks")
                break
            eager_rows[b] = b / sec
    rows["plain eager PyTorch fp32 (baseline)"] = eager_rows
    print("eager", eager_rows, flush=True)
    del eager
    module.cpu()
    if cuda:
        torch.cuda.empty_cache()

    # --- the torch engine per precision
    fp32_out: dict[str, np.ndarray] | None = None
    for precision in args.precisions.split(","):
        engine = TorchEngine(onnx, *io, device=dev, precision=precision)
        out = engine.run(check)
        if precision == "fp32":
            fp32_out = out
            errors["torch engine fp32 vs ONNX Runtime"] = max_error(out, ref_out)
        elif fp32_out is not None:
            errors[f"{precision} vs fp32"] = max_error(out, fp32_out)
        one = feeds(1, width)
        latency[precision] = timed(lambda one=one, e=engine: e.run(one), sync, min_s=1.0)
        label = f"torch engine {precision}"
        rows[label] = {}
        for b in tracks:
            f = {k: torch.from_numpy(v).to(dev) for k, v in feeds(b, width).items()}
            named = [f[n] for n in engine.graph.input_names]
            try:
                sec = timed(lambda named=named, e=engine: e.forward(*named), sync)
            except torch.OutOfMemoryError:
                notes.append(f"{label}: out of memory at {b} tracks")
                break
            rows[label][b] = b / sec
        print(label, {k: round(v, 1) for k, v in rows[label].items()}, latency[precision], flush=True)
        engine.close()
        del engine
        if cuda:
            torch.cuda.empty_cache()

    # --- end to end: DiffusionModel.animate (windows, network, CPU post-processing, both solves)
    e2e: dict[str, float] = {}
    if args.e2e_seconds > 0:
        from a2x_core.audio.decode import Audio
        from a2x_core.models.diffusion import DiffusionModel
        from a2x_core.options import InferenceOptions
        from tests.diffusion_folders import make_diffusion_folder

        folder = make_diffusion_folder(args.cache / "folder", num_verts_skin=args.skin_verts,
                                       num_verts_tongue=args.tongue_verts, latent=256,
                                       network=onnx)  # fmt: skip
        rng = np.random.default_rng(5)
        n = int(args.e2e_seconds * 16000)
        runs = [("ONNX Runtime CPU + NumPy stages, 1 track", "onnxruntime", "fp32", 1, "numpy"),
                (f"torch engine fp16 + NumPy stages, {args.e2e_tracks} tracks", "torch", "fp16",
                 args.e2e_tracks, "numpy")]  # fmt: skip
        runs += [(f"torch engine {precision} + GPU stages, {count} tracks", "torch", precision,
                  count, "auto")
                 for precision in ("fp32", "fp16") for count in (1, args.e2e_tracks, 32, 64)]  # fmt: skip
        for label, backend, precision, count, postprocess in runs:
            if backend == "torch" and not cuda:
                continue
            model = DiffusionModel.load(folder.model_json, EngineSettings(backend, precision=precision),
                                        postprocess=postprocess)  # fmt: skip
            clips = [Audio((0.3 * rng.standard_normal(n)).astype(np.float32), path="")
                     for _ in range(count)]  # fmt: skip
            seconds = min(args.e2e_seconds, 2.0) if backend == "onnxruntime" else args.e2e_seconds
            clips = [Audio(c.samples[: int(seconds * 16000)], path="") for c in clips]
            model.animate(clips[:1], InferenceOptions(fps=60))  # warm-up
            start = time.perf_counter()
            results = model.animate(clips, InferenceOptions(fps=60))
            wall = time.perf_counter() - start
            frames = sum(r.num_frames for r in results)
            e2e[label] = frames / wall
            print("e2e", label, round(frames / wall, 1), flush=True)
            model.engine.close()

    # --- report
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    lines = [
        f"Diffusion network ({args.scale}: {params / 1e6:.1f} M parameters, output width "
        f"{width}), one run; device {gpu}, CPU {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}; ONNX export {export_s:.0f} s.",
        "",
        "Frames/s (30 kept frames per window) against the number of tracks, one window per track "
        "per call, inputs on the device:",
        "",
        "| engine | " + " | ".join(str(b) for b in tracks) + " |",
        "|---|" + "---|" * len(tracks),
    ]
    for label, by_tracks in rows.items():
        cells = [f"{by_tracks[b] * CENTRE_FRAMES:,.0f}" if b in by_tracks else "—" for b in tracks]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    base = rows["ONNX Runtime CPU (baseline)"].get(1)
    lines += ["", "One streaming track, host in -> host out, per window (30 frames = 0.5 s of audio):", ""]
    for precision, sec in latency.items():
        ratio = f"; {1 / sec / base:.1f}x ONNX Runtime CPU" if base else ""
        lines.append(f"- {precision}: {sec * 1000:.2f} ms per window = {sec / CENTRE_FRAMES * 1000:.3f} "
                     f"ms per frame, {0.5 / sec:.0f}x real time{ratio}")  # fmt: skip
    if base:
        lines.append(f"- ONNX Runtime CPU: {1000 / base:.1f} ms per window, {0.5 * base:.1f}x real time")
    lines += ["", "Accuracy (max abs difference over the kept frames and the GRU state):", ""]
    lines += [f"- {k}: {v:.2e}" for k, v in errors.items()]
    if e2e:
        lines += ["", f"End to end through DiffusionModel.animate at 60 fps ({args.e2e_seconds:g} s "
                  "clips; ONNX Runtime 2 s): network, post-processing and both solves (NumPy stages "
                  "and BVLS on the CPU, or the GPU stages and ADMM):", ""]  # fmt: skip
        lines += [f"- {k}: {v:,.0f} frames/s = {v / 60:.1f}x real time" for k, v in e2e.items()]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
