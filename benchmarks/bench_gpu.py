"""GPU speed of the Audio2Face-3D regression path (issue 6): one run, one markdown table.

Builds the architecture-faithful ~18.3 M-parameter network of ``a2f_network.py`` (random
weights, exported to ONNX) and measures on the first CUDA device:

- the torch engine (ONNX graph on torch with the exporter's GELU / LayerNorm / autocorrelation /
  MatMul+bias patterns fused, the grouped positional conv as one GEMM, CUDA graphs) in fp32 / tf32 / bf16 / fp16 (half precision end to end),
  bf16 with 512-row chunks, tf32 / fp16 with the convs on NCHW activations, and fp32 unfused: frames/s against
  the number of tracks (one frame per track per call, inputs already on the GPU), with the
  reduced precisions' largest output error against fp32;
- baselines in the same run: a plain eager PyTorch forward of the same network (default
  settings) and ONNX Runtime on this machine's CPU;
- one streaming track: wall time per frame for ``engine.run`` (host input -> host output,
  through pinned host buffers);
- the GPU ADMM blendshape solve (Mark-sized: 52 skin poses on a 10,085-vertex frontal mask,
  16 tongue poses on 5,602 vertices, temporal 0.3) and the CPU BVLS for comparison;
- end to end per step: network -> PCA decode of the masked skin and the tongue -> both solves.

Usage: python benchmarks/bench_gpu.py [--out results.md] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
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

TRACKS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
S_COUNT, T_COUNT = 272, 10
SKIN_VERTS, MASK_VERTS, TONGUE_VERTS = 61520, 10085, 5602


def timed(fn: Callable[[], Any], sync: Callable[[], None], min_s: float = 0.3) -> float:
    """Seconds per call: warm-up, then repeat until ``min_s`` has passed (at least 3 calls)."""
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_s:
        fn()
        calls += 1
        if calls % 4 == 0 or calls < 4:
            sync()
    sync()
    return (time.perf_counter() - start) / calls


def guarded(fn: Callable[[], float], notes: list[str], label: str) -> float:
    """``fn()``, or NaN with a note when the GPU runs out of memory."""
    import torch

    try:
        return fn()
    except torch.OutOfMemoryError:
        notes.append(f"- {label}: out of GPU memory")
        gc.collect()
        torch.cuda.empty_cache()
        return float("nan")


def build_solvers() -> tuple[Any, Any]:
    """Mark-sized skin (52 poses, mask) and tongue (16 poses) CPU solvers, random geometry."""
    from a2x_core.blendshapes import BlendshapeSolver
    from a2x_core.model_package import BlendshapeConfig, BlendshapeData

    rng = np.random.default_rng(0)
    out = []
    for poses, verts, mask, temporal in ((52, SKIN_VERTS, MASK_VERTS, 0.3),
                                         (16, TONGUE_VERTS, None, 0.3)):  # fmt: skip
        neutral = rng.uniform(-10, 10, verts * 3).astype(np.float32)
        deltas = (rng.normal(0, 0.5, (poses, verts, 3)) * (rng.random((poses, verts, 1)) < 0.3))
        deltas = deltas.reshape(poses, -1).astype(np.float32)
        frontal = None if mask is None else np.sort(rng.choice(verts, mask, replace=False))
        symmetry = np.full(poses, -1, np.int32)
        symmetry[[0, 7]] = 0
        cancel = np.full(poses, -1, np.int32)
        cancel[[3, 4]] = 0
        config = BlendshapeConfig(
            l1=0.5, l2=0.5, temporal=temporal, symmetry=100.0, template_bb_size=30.0,
            active=np.ones(poses, np.int32), cancel=cancel, symmetry_ids=symmetry,
            multipliers=np.ones(poses, np.float32), offsets=np.zeros(poses, np.float32),
        )  # fmt: skip
        data = BlendshapeData(tuple(f"p{i}" for i in range(poses)), neutral, deltas, frontal)
        out.append(BlendshapeSolver(data, config))
    return out[0], out[1]


def main() -> None:  # noqa: C901, PLR0915 - one linear script, one table
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--quick", action="store_true", help="fewer track counts (smoke test)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_gpu"))
    args = parser.parse_args()

    import torch
    from a2f_network import build_torch_network, export_onnx

    from a2x_core.backends import regression_io
    from a2x_core.backends.onnxruntime import OnnxRuntimeEngine
    from a2x_core.backends.torch_engine import TorchEngine

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    tracks_list = (1, 4) if args.quick else TRACKS
    args.cache.mkdir(parents=True, exist_ok=True)
    onnx_path = args.cache / "network.onnx"
    params = export_onnx(onnx_path, S_COUNT, T_COUNT)
    inputs, outputs = regression_io(8320, 26, S_COUNT + T_COUNT + 19)
    rng = np.random.default_rng(0)
    max_b = max(tracks_list)
    audio_all = torch.from_numpy((0.3 * rng.standard_normal((max_b, 1, 8320))).astype(np.float32))
    emo_all = torch.from_numpy(rng.uniform(0, 1, (max_b, 1, 26)).astype(np.float32))
    audio_all, emo_all = audio_all.to(dev), emo_all.to(dev)
    rows: dict[str, dict[int, float]] = {}
    notes: list[str] = []

    def engine_sweep(precision: str, fuse: bool = True, chunk: int = 256,
                     channels_last: bool | None = None) -> dict[int, float]:
        engine = TorchEngine(onnx_path, inputs, outputs, device=dev, precision=precision,
                             fuse=fuse, chunk=chunk, channels_last=channels_last)  # fmt: skip
        fps = {}
        for b in tracks_list:
            feed = [audio_all[:b], emo_all[:b]]
            sec = guarded(lambda feed=feed: timed(lambda: engine.run_device(feed), sync), notes,
                          f"torch {precision} {b} tracks")  # fmt: skip
            fps[b] = b / sec
            engine.release_graphs()  # free each size's graph pool before the next size
            gc.collect()
        engine.close()
        return fps

    # accuracy of reduced precisions against fp32 (64 tracks)
    errors: dict[str, float] = {}
    ref_engine = TorchEngine(onnx_path, inputs, outputs, device=dev, precision="fp32",
                             cuda_graphs=False)  # fmt: skip
    sample = [audio_all[:64], emo_all[:64]]
    ref = ref_engine.forward(*sample)[0].float()
    scale = float(ref.abs().max())
    ort = OnnxRuntimeEngine(onnx_path, inputs, outputs)
    ort_ref = ort.run({"input": sample[0][:8].cpu().numpy(), "emotion": sample[1][:8].cpu().numpy()})
    errors["fp32 vs ONNX Runtime"] = float(np.abs(ref[:8].cpu().numpy() - ort_ref["result"]).max())
    for precision in ("tf32", "bf16", "fp16"):
        eng = TorchEngine(onnx_path, inputs, outputs, device=dev, precision=precision,
                          cuda_graphs=False)  # fmt: skip
        errors[precision] = float((eng.forward(*sample)[0].float() - ref).abs().max())
        eng.close()
    ref_engine.close()

    for precision in ("fp32", "tf32", "bf16", "fp16"):
        rows[f"torch engine {precision} (CUDA graphs)"] = engine_sweep(precision)
        print(precision, rows[f"torch engine {precision} (CUDA graphs)"], flush=True)
    rows["torch engine bf16, 512-row chunks"] = engine_sweep("bf16", chunk=512)
    # the convs on NCHW activations (cuDNN transposes around them: the previous engine)
    for precision in ("tf32", "fp16"):
        rows[f"torch engine {precision}, NCHW convs"] = engine_sweep(precision, channels_last=False)
    # the converter without pattern fusion (every ONNX node a kernel), for comparison
    rows["torch engine fp32, unfused (node by node)"] = engine_sweep("fp32", fuse=False)

    # plain eager PyTorch, default settings
    net = build_torch_network(S_COUNT, T_COUNT).to(dev)
    eager: dict[int, float] = {}
    with torch.no_grad():
        for b in tracks_list:
            a, e = audio_all[:b], emo_all[:b]
            eager[b] = b / guarded(lambda a=a, e=e, net=net: timed(lambda: net(a, e), sync), notes,
                                   f"eager {b} tracks")  # fmt: skip
    rows["plain eager PyTorch (default settings)"] = eager
    print("eager", eager, errors, flush=True)
    del net
    if cuda:
        torch.cuda.empty_cache()

    # ONNX Runtime on this machine's CPU (all cores)
    ort_fps: dict[int, float] = {}
    for b in (1, 4) if args.quick else (1, 16, 64):
        feeds = {"input": audio_all[:b].cpu().numpy(), "emotion": emo_all[:b].cpu().numpy()}
        ort_fps[b] = b / timed(lambda feeds=feeds: ort.run(feeds), lambda: None, min_s=1.0)
    rows["ONNX Runtime CPU (all cores)"] = ort_fps

    # one streaming track: host in -> host out per frame
    latency: dict[str, float] = {}
    one = {"input": audio_all[:1].cpu().numpy(), "emotion": emo_all[:1].cpu().numpy()}
    for label, graphs, precision, last in (("fp32, CUDA graph", True, "fp32", None),
                                           ("fp32, eager engine", False, "fp32", None),
                                           ("tf32, CUDA graph", True, "tf32", None),
                                           ("bf16, CUDA graph", True, "bf16", None),
                                           ("fp16, CUDA graph", True, "fp16", None),
                                           ("fp16, CUDA graph, NCHW convs", True, "fp16",
                                            False)):  # fmt: skip
        eng = TorchEngine(onnx_path, inputs, outputs, device=dev, precision=precision,
                          cuda_graphs=graphs, channels_last=last)  # fmt: skip
        for _ in range(5):
            eng.run(one)
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            eng.run(one)
            times.append(time.perf_counter() - t0)
        latency[label] = float(np.median(times)) * 1000
        eng.close()
    latency["ONNX Runtime CPU"] = 1000 / ort_fps[1]
    if cuda:
        try:
            notes += kernel_profile(torch, onnx_path, inputs, outputs, audio_all, emo_all)
        except Exception as error:  # a diagnostic only
            notes.append(f"- kernel profile failed: {error!r}")
    print("ort", ort_fps, latency, flush=True)
    try:
        solve, solve_err, e2e = solver_and_e2e(torch, dev, sync, tracks_list, args.quick, rng,
                                               onnx_path, audio_all, emo_all, notes)  # fmt: skip
    except Exception as error:  # keep the network figures when this section fails
        import traceback

        traceback.print_exc()
        notes.append(f"- solver / end-to-end section failed: {error!r}")
        solve, solve_err, e2e = {}, float("nan"), {}
    rows.update(e2e)
    report(torch, cuda, params, t_start, rows, latency, solve, errors, solve_err, scale, notes,
           args.out)  # fmt: skip


def kernel_profile(torch: Any, onnx_path: Path, inputs: Any, outputs: Any, audio_all: Any,
                   emo_all: Any) -> list[str]:
    """Where one track's graph replay spends its GPU time (torch.profiler, top kernels)."""
    from torch.profiler import ProfilerActivity, profile

    from a2x_core.backends.torch_engine import TorchEngine

    lines = []
    for precision in ("tf32", "fp16"):
        eng = TorchEngine(onnx_path, inputs, outputs, device="cuda", precision=precision)
        feed = [audio_all[:1], emo_all[:1]]
        for _ in range(3):
            eng.run_device(feed)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                eng.run_device(feed)
            torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.device_time_total > 0]
        total = sum(e.device_time_total for e in events) / 10
        count = sum(e.count for e in events) / 10
        events.sort(key=lambda e: -e.device_time_total)
        top = "; ".join(f"{e.key[:60]} {e.device_time_total / 10:.1f} us x{e.count // 10}"
                        for e in events[:8])  # fmt: skip
        layout = [e for e in events if "nchwToNhwc" in e.key or "nhwcToNchw" in e.key]
        moved = (sum(e.count for e in layout) / 10, sum(e.device_time_total for e in layout) / 10)
        lines.append(f"- 1 track {precision} graph replay: {total:.0f} us GPU time in "
                     f"{count:.0f} kernels ({moved[0]:.0f} cuDNN layout transposes, "
                     f"{moved[1]:.1f} us); top: {top}")  # fmt: skip
        eng.close()
    return lines


def solver_and_e2e(torch: Any, dev: str, sync: Callable[[], None], tracks_list: tuple[int, ...],
                   quick: bool, rng: Any, onnx_path: Path, audio_all: Any, emo_all: Any,
                   notes: list[str]) -> tuple[dict[str, float], float, dict[str, dict[int, float]]]:
    """GPU ADMM / CPU BVLS throughput, then network + decode + both solves per step."""
    from a2x_core.backends import regression_io
    from a2x_core.backends.torch_engine import TorchEngine
    from a2x_core.blendshapes_gpu import AdmmSolver

    inputs, outputs = regression_io(8320, 26, S_COUNT + T_COUNT + 19)

    # solver: GPU ADMM (batched over tracks, sequential frames) and CPU BVLS
    skin_cpu, tongue_cpu = build_solvers()
    skin_gpu, tongue_gpu = AdmmSolver(skin_cpu, dev), AdmmSolver(tongue_cpu, dev)
    solve: dict[str, float] = {}
    w_true = np.clip(np.cumsum(rng.normal(0, 0.05, (64, 52)), axis=0), 0, 1).astype(np.float32)
    masked_t = (skin_cpu.neutral + w_true @ skin_cpu.delta_t).astype(np.float32)  # [64, rows]
    t0 = time.perf_counter()
    skin_cpu.reset()
    cpu_w = skin_cpu.solve(masked_t, masked=True)
    solve["CPU BVLS skin, 1 track (solves/s)"] = 64 / (time.perf_counter() - t0)
    gpu_w = skin_gpu.solve(torch.from_numpy(masked_t)[None], masked=True)[0].cpu().numpy()
    solve_err = float(np.abs(gpu_w - cpu_w).max())
    for b in (1, 4) if quick else (1, 256, 2048):
        atb = skin_gpu.project(torch.from_numpy(masked_t[:1]).to(dev).expand(b, -1), masked=True)
        atb = atb[:, None]
        prev = torch.zeros((b, skin_gpu.num_active), device=dev)
        sec = timed(lambda atb=atb, prev=prev: skin_gpu.solve_projected(atb, prev), sync)
        solve[f"GPU ADMM skin, {b} tracks x 1 frame (solves/s)"] = b / sec

    # end to end: network -> masked skin + tongue PCA decode -> both solves, one frame per track
    mask_cols = torch.as_tensor(skin_cpu.mask_columns, device=dev)
    skin_basis = torch.randn(S_COUNT, SKIN_VERTS * 3, device=dev)[:, mask_cols] * 0.01
    skin_mean = torch.as_tensor(skin_cpu.neutral, device=dev)
    tongue_basis = torch.randn(T_COUNT, TONGUE_VERTS * 3, device=dev) * 0.01
    tongue_mean = torch.as_tensor(tongue_cpu.neutral, device=dev)
    e2e: dict[str, dict[int, float]] = {}
    for precision in ("fp32", "tf32", "bf16", "fp16"):
        eng = TorchEngine(onnx_path, inputs, outputs, device=dev, precision=precision)
        fps = {}
        for b in tracks_list:
            feed = [audio_all[:b], emo_all[:b]]
            state = {"skin": None, "tongue": None}

            def step(feed: list[Any] = feed, state: dict[str, Any] = state, eng: Any = eng) -> None:
                out = eng.run_device(feed)[0][:, 0]
                skin = out[:, :S_COUNT] @ skin_basis + skin_mean
                tongue = out[:, S_COUNT : S_COUNT + T_COUNT] @ tongue_basis + tongue_mean
                zs, state["skin"] = skin_gpu.solve_projected(
                    skin_gpu.project(skin, masked=True)[:, None], state["skin"])  # fmt: skip
                zt, state["tongue"] = tongue_gpu.solve_projected(
                    tongue_gpu.project(tongue, masked=True)[:, None], state["tongue"])  # fmt: skip
                skin_gpu.expand(zs), tongue_gpu.expand(zt)

            fps[b] = b / guarded(lambda step=step: timed(step, sync), notes, f"e2e {b} tracks")
            eng.release_graphs()
        eng.close()
        e2e[f"end to end {precision} (network + decode + 2 solves)"] = fps
        print(precision, "e2e", fps, flush=True)
    return solve, solve_err, e2e


def report(torch: Any, cuda: bool, params: int, t_start: float, rows: dict[str, dict[int, float]],
           latency: dict[str, float], solve: dict[str, float], errors: dict[str, float],
           solve_err: float, scale: float, notes: list[str], out: Path | None) -> None:
    """Print the markdown tables (and write them to ``out`` with a JSON copy)."""
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    import onnxruntime

    head = (f"machine: {gpu}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}),"
            f" torch {torch.__version__} (CUDA {torch.version.cuda}), onnxruntime "
            f"{onnxruntime.__version__}, numpy {np.__version__}; network {params:,} parameters, "
            f"opset 14; run took {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    lines = [head, ""]
    cols = sorted({b for r in rows.values() for b in r})
    lines.append("| frames/s by tracks | " + " | ".join(str(b) for b in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for label, r in rows.items():
        cells = [f"{r[b]:,.0f}" if b in r else "" for b in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| single streaming track (host in -> host out) | ms/frame |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in latency.items()]
    lines += ["", "| solver | solves/s |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in solve.items()]
    lines += ["", "| accuracy (64 tracks, |output| max " f"{scale:.3f}) | max abs error |",
              "|---|---:|"]  # fmt: skip
    lines += [f"| {k} {'vs fp32' if k in ('tf32', 'bf16', 'fp16') else ''} | {v:.2e} |"
              for k, v in errors.items()]  # fmt: skip
    lines.append(f"| GPU ADMM vs CPU BVLS skin weights (64 frames, temporal 0.3) | {solve_err:.2e} |")
    lines += [""] + notes if notes else []
    text = "\n".join(lines)
    print(text)
    if out:
        out.write_text(text + "\n")
        out.with_suffix(".json").write_text(
            json.dumps({"rows": {k: {str(b): v for b, v in r.items()} for k, r in rows.items()},
                        "latency_ms": latency, "solve": solve, "errors": errors,
                        "solve_err": solve_err, "head": head}, indent=1)  # fmt: skip
        )


if __name__ == "__main__":
    main()
