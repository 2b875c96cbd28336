"""GPU speed of the Audio2Face-3D regression path (issue 6): one run, the whole table.

Builds the architecture-faithful ~18.3 M-parameter network of ``a2f_network.py`` (random
weights, exported to ONNX) and a Mark-sized model folder around it (272/10 PCA shapes,
61,520/5,602 vertices, 10,085-vertex frontal mask, 52 + 16 poses; ``bench_regression.py``), and
measures on the first CUDA device, in one process:

- ``net``: the torch engine (ONNX graph on torch, fused patterns, channels-last convs, CUDA
  graphs) in fp32 / tf32 / bf16 / fp16 and variants (chunk size, NCHW convs in fp32): frames/s
  against the number of tracks (one frame per track per call, inputs already on the GPU);
  baselines: plain eager PyTorch (default settings) and ONNX Runtime on this machine's CPU;
- ``compile``: the same graph traced (``make_fx``) and compiled by ``torch.compile`` (inductor),
  replayed as a CUDA graph, at the engine's 256-row chunk;
- ``latency``: one streaming track, wall time per frame for ``engine.run`` (host in -> host out);
- ``solver``: the GPU ADMM (skin + tongue stacked, CUDA-graph frame loop) and the CPU BVLS;
- ``e2e``: ``RegressionModel.animate`` on the GPU path (windows on the device, network, PCA
  decode + skin/tongue post-process, jaw, eyes, both solves, results on the host) against the
  track count, and the CPU pipeline (ONNX Runtime + NumPy stages) as its baseline;
- accuracy: reduced precisions against fp32 (network output and solved weights), GPU pipeline
  against the CPU pipeline.

Usage: python benchmarks/bench_gpu.py [--out results.md] [--quick] [--sections net,e2e,...]
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
E2E_TRACKS = (1, 16, 128, 512, 2048)
S_COUNT, T_COUNT = 272, 10
SECTIONS = ("net", "latency", "solver", "e2e", "compile")


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
    """``fn()``, or NaN with a note when the GPU runs out of memory or the step fails."""
    import torch

    try:
        return fn()
    except torch.OutOfMemoryError:
        notes.append(f"- {label}: out of GPU memory")
    except Exception as error:  # one failed row must not cost the whole table
        notes.append(f"- {label}: failed ({error!r})")
    gc.collect()
    torch.cuda.empty_cache()
    return float("nan")


class Bench:
    """Shared inputs and the collected tables."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch
        from a2f_network import export_onnx

        from a2x_core.backends import regression_io

        self.torch = torch
        self.args = args
        self.t_start = time.perf_counter()
        self.cuda = torch.cuda.is_available()
        self.dev = "cuda" if self.cuda else "cpu"
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        self.tracks = (1, 4) if args.quick else TRACKS
        args.cache.mkdir(parents=True, exist_ok=True)
        self.onnx = args.cache / "network.onnx"
        self.params = export_onnx(self.onnx, S_COUNT, T_COUNT)
        self.io = regression_io(8320, 26, S_COUNT + T_COUNT + 19)
        rng = np.random.default_rng(0)
        max_b = max(self.tracks)
        self.audio = torch.from_numpy((0.3 * rng.standard_normal((max_b, 1, 8320))).astype(np.float32))
        self.emotion = torch.from_numpy(rng.uniform(0, 1, (max_b, 1, 26)).astype(np.float32))
        self.audio, self.emotion = self.audio.to(self.dev), self.emotion.to(self.dev)
        self.rows: dict[str, dict[int, float]] = {}  # network frames/s by tracks
        self.e2e: dict[str, dict[int, float]] = {}  # end to end frames/s by tracks
        self.latency: dict[str, float] = {}
        self.solve: dict[str, float] = {}
        self.errors: dict[str, float] = {}
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}

    def engine(self, precision: str, **kw: Any) -> Any:
        from a2x_core.backends.torch_engine import TorchEngine

        return TorchEngine(self.onnx, *self.io, device=self.dev, precision=precision, **kw)

    def feed(self, engine: Any, b: int) -> list[Any]:
        named = {"input": self.audio[:b], "emotion": self.emotion[:b]}
        return [named[n] for n in engine.graph.input_names]

    # ------------------------------------------------------------------------- network

    def sweep(self, label: str, precision: str, **kw: Any) -> None:
        engine = self.engine(precision, **kw)
        fps = {}
        for b in self.tracks:
            feed = self.feed(engine, b)
            sec = guarded(lambda feed=feed: timed(lambda: engine.run_device(feed), self.sync),
                          self.notes, f"{label} {b} tracks")  # fmt: skip
            fps[b] = b / sec
            engine.release_graphs()  # free each size's graph pool before the next size
            gc.collect()
        engine.close()
        self.rows[label] = fps
        print(label, {k: round(v) for k, v in fps.items()}, flush=True)

    def net(self) -> None:
        torch = self.torch
        from a2f_network import build_torch_network

        from a2x_core.backends.onnxruntime import OnnxRuntimeEngine

        # accuracy of reduced precisions against fp32 (64 tracks)
        ref_engine = self.engine("fp32", cuda_graphs=False)
        sample = self.feed(ref_engine, 64)
        ref = ref_engine.forward(*sample)[0].float()
        self.scale = float(ref.abs().max())
        self.ort = OnnxRuntimeEngine(self.onnx, *self.io)
        ort_ref = self.ort.run({"input": self.audio[:8].cpu().numpy(),
                                "emotion": self.emotion[:8].cpu().numpy()})  # fmt: skip
        self.errors["network fp32 vs ONNX Runtime"] = float(
            np.abs(ref[:8].cpu().numpy() - ort_ref["result"]).max())  # fmt: skip
        for precision in ("tf32", "bf16", "fp16"):
            eng = self.engine(precision, cuda_graphs=False)
            out = eng.forward(*sample)[0].float()
            self.errors[f"network {precision} vs fp32"] = float((out - ref).abs().max())
            eng.close()
        ref_engine.close()

        for precision in ("fp32", "tf32", "bf16", "fp16"):
            self.sweep(f"torch engine {precision} (CUDA graphs)", precision)
        self.sweep("torch engine fp32, NCHW convs", "fp32", channels_last=False)
        for chunk in (512,):
            self.sweep(f"torch engine bf16, {chunk}-row chunks", "bf16", chunk=chunk)
            self.sweep(f"torch engine fp16, {chunk}-row chunks", "fp16", chunk=chunk)

        # plain eager PyTorch, default settings
        net = build_torch_network(S_COUNT, T_COUNT).to(self.dev)
        eager: dict[int, float] = {}
        with torch.no_grad():
            for b in self.tracks:
                a, e = self.audio[:b], self.emotion[:b]
                eager[b] = b / guarded(lambda a=a, e=e, net=net: timed(lambda: net(a, e), self.sync),
                                       self.notes, f"eager {b} tracks")  # fmt: skip
        self.rows["plain eager PyTorch (default settings)"] = eager
        del net
        if self.cuda:
            torch.cuda.empty_cache()
        # ONNX Runtime on this machine's CPU (all cores)
        ort_fps: dict[int, float] = {}
        for b in (1, 4) if self.args.quick else (1, 16, 64):
            feeds = {"input": self.audio[:b].cpu().numpy(), "emotion": self.emotion[:b].cpu().numpy()}
            ort_fps[b] = b / timed(lambda feeds=feeds: self.ort.run(feeds), lambda: None, min_s=1.0)
        self.rows["ONNX Runtime CPU (all cores)"] = ort_fps
        print("baselines", eager, ort_fps, flush=True)

    def compiled(self) -> None:
        """make_fx trace of the engine's graph -> torch.compile (inductor) -> one CUDA graph."""
        torch = self.torch
        from torch.fx.experimental.proxy_tensor import make_fx

        from a2x_core.backends.torch_engine import _math_mode

        ref_engine = self.engine("fp32", cuda_graphs=False)
        ref = ref_engine.forward(*self.feed(ref_engine, 64))[0].float()
        ref_engine.close()
        for precision, chunk in (("bf16", 256), ("fp16", 256), ("bf16", 512), ("tf32", 256),
                                 ("fp32", 256)):  # fmt: skip
            t0 = time.perf_counter()
            eng = self.engine(precision, cuda_graphs=False)
            feed = self.feed(eng, chunk)
            try:
                with torch.no_grad(), _math_mode(torch, precision):
                    eng.graph(*feed)  # fill the engine's weight caches before tracing
                    gm = make_fx(lambda *xs, eng=eng: eng.graph(*xs))(*feed)
                    fn = torch.compile(gm, dynamic=False)
                    static = [f.clone() for f in feed]
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        for _ in range(3):
                            fn(*static)
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        outs = fn(*static)
                compile_s = time.perf_counter() - t0
                sec = timed(graph.replay, self.sync)
                label = f"torch.compile {precision}, {chunk}-row graph"
                self.rows[label] = {b: chunk / sec for b in self.tracks if b >= chunk}
                reps = chunk // 64
                static[0].copy_(self.feed(eng, 64)[0].repeat(reps, 1, 1)[:chunk])
                static[1].copy_(self.feed(eng, 64)[1].repeat(reps, 1, 1)[:chunk])
                graph.replay()
                self.sync()
                self.errors[f"network {precision} torch.compile ({chunk} rows) vs fp32"] = float(
                    (outs[0][:64].float() - ref).abs().max())  # fmt: skip
                self.notes.append(f"- torch.compile {precision}, {chunk} rows: trace + compile + "
                                  f"capture {compile_s:.0f} s; {chunk / sec:,.0f} frames/s")  # fmt: skip
                print(label, chunk / sec, compile_s, flush=True)
                del graph, outs, fn, gm
            except Exception as error:  # an experiment: report and go on
                self.notes.append(f"- torch.compile {precision} failed: {error!r}"[:400])
            eng.close()
            gc.collect()
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------- latency

    def streaming(self) -> None:
        one = {"input": self.audio[:1].cpu().numpy(), "emotion": self.emotion[:1].cpu().numpy()}
        for label, precision, kw in (
            ("fp32, CUDA graph (channels-last convs)", "fp32", {"channels_last": True}),
            ("fp32, CUDA graph, NCHW convs", "fp32", {"channels_last": False}),
            ("fp32, CUDA graph (engine default)", "fp32", {}),
            ("fp32, eager engine", "fp32", {"cuda_graphs": False}),
            ("tf32, CUDA graph", "tf32", {}),
            ("bf16, CUDA graph", "bf16", {}),
            ("fp16, CUDA graph", "fp16", {}),
        ):
            eng = self.engine(precision, **kw)
            for _ in range(5):
                eng.run(one)
            times = []
            for _ in range(300):
                t0 = time.perf_counter()
                eng.run(one)
                times.append(time.perf_counter() - t0)
            self.latency[label] = float(np.median(times)) * 1000
            eng.close()
        ort = self.rows.get("ONNX Runtime CPU (all cores)", {})
        if 1 in ort:
            self.latency["ONNX Runtime CPU"] = 1000 / ort[1]
        print("latency", self.latency, flush=True)

    # ------------------------------------------------------------------------- solver

    def solver(self) -> None:
        torch = self.torch
        from a2x_core.blendshapes.gpu import AdmmSolver

        model = self.mark_model("fp32")
        settings = model.settings({})
        from a2x_core.blendshapes.cpu import BlendshapeSolver

        skin = BlendshapeSolver(model.package.skin.data, settings.skin)
        tongue = BlendshapeSolver(model.package.tongue.data, settings.tongue)
        rng = np.random.default_rng(1)
        w_true = np.clip(np.cumsum(rng.normal(0, 0.05, (64, len(skin.active))), axis=0), 0, 1)
        masked = (skin.neutral + w_true.astype(np.float32) @ skin.delta_t).astype(np.float32)
        t0 = time.perf_counter()
        skin.reset()
        cpu_w = skin.solve(masked, masked=True)
        self.solve["CPU BVLS skin, 1 track x 64 frames"] = 64 / (time.perf_counter() - t0)
        gpu_w = AdmmSolver(skin, self.dev).solve(torch.from_numpy(masked)[None], masked=True)
        self.errors["solver: GPU ADMM vs CPU BVLS skin weights (Mark-sized, 64 frames)"] = float(
            np.abs(gpu_w[0].cpu().numpy() - cpu_w).max())  # fmt: skip
        both = AdmmSolver([skin, tongue], self.dev, cuda_graphs=self.cuda)
        for b in (1, 4) if self.args.quick else (1, 256, 2048):
            atb = torch.randn((b, 16, both.num_active), device=self.dev) * 100
            prev = torch.zeros((b, both.num_active), device=self.dev)
            sec = timed(lambda atb=atb, prev=prev: both.solve_projected(atb, prev), self.sync)
            self.solve[f"GPU ADMM skin + tongue, {b} tracks x 16 frames per call"] = 16 * b / sec
        print("solver", self.solve, flush=True)

    # ------------------------------------------------------------------------- end to end

    def mark_model(self, precision: str, backend: str = "torch") -> Any:
        from bench_regression import ensure_folder

        from a2x_core.models.registry import load_model

        folder = ensure_folder(self.args.cache / "mark")
        if backend == "onnxruntime":
            return load_model(folder, backend="onnxruntime")
        return load_model(folder, backend="torch", device=self.dev, precision=precision)

    def clips(self, tracks: int, seconds: float, seed: int = 0) -> list[Any]:
        from a2x_core.audio.decode import Audio

        rng = np.random.default_rng(seed)
        n = int(seconds * 16000)
        base = (0.3 * rng.standard_normal(n + tracks * 97)).astype(np.float32)
        return [Audio(base[k * 97 : k * 97 + n]) for k in range(tracks)]

    def end_to_end(self) -> None:
        from a2x_core.options import InferenceOptions

        options = InferenceOptions()
        seconds = 1.0 if self.args.quick else self.args.seconds
        sweep = (1, 4) if self.args.quick else tuple(int(b) for b in self.args.e2e_tracks.split(","))
        # (precision, torch.compile, track counts): the compiled bf16 / fp16 and the plain bf16
        # engine swept; the others at the largest count (fp32 at 512 tracks: 10k frames/s)
        plan = []
        for k, p in enumerate(self.args.e2e_precisions.split(",")):
            if p in ("bf16", "fp16") and self.cuda:
                plan.append((p, True, sweep))
            plan.append((p, False, sweep if k == 0 else (min(sweep[-1], 512 if p == "fp32" else
                                                              2048),)))  # fmt: skip
        weights: dict[str, np.ndarray] = {}
        where: dict[str, str] = {}
        check = self.clips(8, 2.0, seed=5)
        for precision, compiled, counts in plan:
            model = self.mark_model(precision)
            model.compile_network = compiled
            name = f"{precision}{' compiled' if compiled else ''}"
            weights[name] = np.stack([r.weights for r in model.animate(check, options)])
            fps = {}
            for b in counts:
                clips = self.clips(b, seconds)

                def run(model: Any = model, clips: list = clips, precision: str = name) -> float:
                    model.animate(clips, options)  # warm-up: graph captures for these shapes
                    self.sync()
                    best = float("inf")
                    for _ in range(2):
                        t0 = time.perf_counter()
                        results = model.animate(clips, options)
                        best = min(best, time.perf_counter() - t0)
                    where[precision] = results[0].parameters["postprocess"]
                    return sum(r.num_frames for r in results) / best

                fps[b] = guarded(run, self.notes, f"e2e {name} {b} tracks")
                gc.collect()
            label = "torch.compile" if compiled else "engine CUDA graphs"
            self.e2e[f"end to end {precision}, {label} (RegressionModel.animate, GPU stages)"] = fps
            print(name, "e2e", fps, flush=True)
            model._device_cache.clear()
            model.engine.close()
            del model
            gc.collect()
            if self.cuda:
                self.torch.cuda.empty_cache()
        for name in weights:
            if name != "fp32" and "fp32" in weights:
                self.errors[f"weights {name} vs fp32 (8 tracks x 2 s)"] = float(
                    np.abs(weights[name] - weights["fp32"]).max())  # fmt: skip
        self.notes.append(f"- end to end: stages after the network ran on {where}")
        # the CPU pipeline: ONNX Runtime + NumPy stages + BVLS, one track
        cpu = self.mark_model("fp32", backend="onnxruntime")
        clip = self.clips(1, 2.0)
        t0 = time.perf_counter()
        cpu_result = cpu.animate(clip, options)[0]
        self.e2e["end to end CPU: ONNX Runtime + NumPy stages (BVLS)"] = {
            1: cpu_result.num_frames / (time.perf_counter() - t0)}  # fmt: skip
        gpu = self.mark_model("fp32")
        gpu_result = gpu.animate(clip, options)[0]
        self.errors["weights GPU pipeline fp32 (ADMM) vs CPU pipeline (BVLS), 1 track x 2 s"] = (
            float(np.abs(gpu_result.weights - cpu_result.weights).max()))  # fmt: skip
        self.errors["  (mean abs of the same)"] = float(
            np.abs(gpu_result.weights - cpu_result.weights).mean())  # fmt: skip
        gpu.engine.close()

    # ------------------------------------------------------------------------- report

    def report(self, out: Path | None) -> None:
        torch = self.torch
        gpu = torch.cuda.get_device_name(0) if self.cuda else "none"
        import onnxruntime

        triton = "absent"
        try:
            import triton as _triton

            triton = _triton.__version__
        except ImportError:
            pass
        head = (f"machine: {gpu}, {os.cpu_count()} CPU cores ({platform.machine()}), torch "
                f"{torch.__version__} (CUDA {torch.version.cuda}), triton {triton}, onnxruntime "
                f"{onnxruntime.__version__}, numpy {np.__version__}; network {self.params:,} "
                f"parameters, opset 14; run took {time.perf_counter() - self.t_start:.0f} s")  # fmt: skip
        lines = [head, ""]
        for title, rows in (("network frames/s by tracks", self.rows),
                            ("end-to-end frames/s by tracks", self.e2e)):  # fmt: skip
            if not rows:
                continue
            cols = sorted({b for r in rows.values() for b in r})
            lines.append(f"| {title} | " + " | ".join(str(b) for b in cols) + " |")
            lines.append("|---|" + "---:|" * len(cols))
            for label, r in rows.items():
                cells = [f"{r[b]:,.0f}" if b in r and np.isfinite(r[b]) else "" for b in cols]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
        if self.latency:
            lines += ["| single streaming track (host in -> host out) | ms/frame |", "|---|---:|"]
            lines += [f"| {k} | {v:.3f} |" for k, v in self.latency.items()] + [""]
        if self.solve:
            lines += ["| solver | solves/s |", "|---|---:|"]
            lines += [f"| {k} | {v:,.0f} |" for k, v in self.solve.items()] + [""]
        if self.errors:
            scale = getattr(self, "scale", float("nan"))
            lines += [f"| accuracy (network |output| max {scale:.3f}) | max abs error |", "|---|---:|"]
            lines += [f"| {k} | {v:.2e} |" for k, v in self.errors.items()] + [""]
        lines += self.notes
        text = "\n".join(lines)
        print(text)
        if out:
            out.write_text(text + "\n")
            out.with_suffix(".json").write_text(json.dumps(
                {"rows": {k: {str(b): v for b, v in r.items()} for k, r in self.rows.items()},
                 "e2e": {k: {str(b): v for b, v in r.items()} for k, r in self.e2e.items()},
                 "latency_ms": self.latency, "solve": self.solve, "errors": self.errors,
                 "notes": self.notes, "head": head}, indent=1))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--quick", action="store_true", help="fewer track counts (smoke test)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_gpu"))
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length, end to end")
    parser.add_argument("--e2e-tracks", default=",".join(map(str, E2E_TRACKS)),
                        help="track counts of the end-to-end sweep")  # fmt: skip
    parser.add_argument("--e2e-precisions", default="bf16,fp16,tf32,fp32",
                        help="end to end: the first two swept, the others at the largest count "
                        "(fp32 at most 512 tracks)")  # fmt: skip
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    bench = Bench(args)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    steps = {"net": bench.net, "compile": bench.compiled, "latency": bench.streaming,
             "solver": bench.solver, "e2e": bench.end_to_end}  # fmt: skip
    for name in wanted:
        t0 = time.perf_counter()
        try:
            steps[name]()
        except Exception as error:  # keep the other sections' figures
            import traceback

            traceback.print_exc()
            bench.notes.append(f"- section {name} failed: {error!r}"[:400])
        bench.timings[name] = time.perf_counter() - t0
        print(f"section {name}: {bench.timings[name]:.0f} s", flush=True)
        if args.out:
            bench.report(args.out)  # what is done so far survives a time-out
    bench.notes.append("- section seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in bench.timings.items()))
    bench.report(args.out)


if __name__ == "__main__":
    main()
