"""Where a warm batched ``animate_many`` of ``bench_batch.py``'s clips spends its time on a GPU
(issue 15.5), in one process: what to measure before changing the batched path.

Prints, for each ``--precisions`` entry (each against the first's weights):
- the warm call's wall time (median of ``--repeat``, device synchronised);
- one call with every stage synchronised and timed: the network (and its rows against the
  clips' real frames), the pipeline's filters and ADMM solve (inside its step), the finish
  (jaw Kabsch, copy to the host), the pipeline's build, and the host rest (results, head motion);
- where the host waits for the device in one call (torch's sync debug mode, by source line);
- with ``--profile``, torch.profiler's kernel table of one call (also written to ``--out``);
- ``--loop N``: the same stage timers for N clips animated one by one (``bench_batch.py``'s loop
  row), and their plain wall time.

A stage timer synchronises before and after its stage, so it holds the device work the stage
queued *and* any work queued before it; the sum can exceed an unsynchronised call. cProfile of
the unsynchronised call charges the device's time to whichever call waits first (an upload
from pageable memory, a copy to the host), not to the stage that queued the work.

Usage: python benchmarks/prof_batch_gpu.py [--clips 200] [--precisions fp32,tf32] [--profile]
       [--loop 20] [--cache /tmp/a2x_bench_batch] [--out DIR]
       (smoke run on the CPU: --device cpu --model regression-small --clips 8)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def sync(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def synced(torch: Any, fn: Callable[[], Any]) -> tuple[Any, float]:
    sync(torch)
    began = time.perf_counter()
    value = fn()
    sync(torch)
    return value, time.perf_counter() - began


class StageTimers:
    """Device-synchronised timers around methods of the pipeline's classes (restored on exit)."""

    def __init__(self, torch: Any) -> None:
        from a2x_core.blendshapes.gpu import AdmmSolver
        from a2x_core.models import regression
        from a2x_core.postprocess import gpu as postprocess_gpu

        self.torch = torch
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.rows = 0
        pipe = postprocess_gpu.DevicePipeline
        self.targets = [
            (regression.RegressionModel, "_infer_on", "network"),
            (pipe, "__init__", "pipeline build"),
            (pipe, "step", "pipeline step"),
            (pipe, "_filter", "  of which skin filters"),
            (AdmmSolver, "solve_projected", "  of which ADMM solve"),
            (pipe, "finish", "finish (Kabsch, copy out)"),
        ]
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> StageTimers:
        for cls, name, label in self.targets:
            original = getattr(cls, name)
            self.saved.append((cls, name, original))
            setattr(cls, name, self._timed(original, label, name == "_infer_on"))
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, name, original in self.saved:
            setattr(cls, name, original)
        self.saved.clear()

    def _timed(self, original: Any, label: str, count_rows: bool) -> Any:
        torch = self.torch

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sync(torch)
            began = time.perf_counter()
            value = original(*args, **kwargs)
            sync(torch)
            self.seconds[label] += time.perf_counter() - began
            self.calls[label] += 1
            if count_rows:
                self.rows += int(args[2].shape[0])  # (self, device, audio, ...)
            return value

        return wrapper

    def report(self, title: str, total: float, frames: int) -> None:
        print(f"{title}: {total:.3f} s (every stage synchronised)")
        for label, seconds in self.seconds.items():
            print(f"    {label:34s} {seconds:8.3f} s  {self.calls[label]:5d} calls")
        top = sum(s for label, s in self.seconds.items() if not label.startswith(" "))
        print(f"    {'host rest':34s} {total - top:8.3f} s")
        print(f"    network rows {self.rows} for {frames} real frames ({self.rows / frames:.3f}x)",
              flush=True)  # fmt: skip


def host_waits(torch: Any, fn: Callable[[], Any]) -> dict[tuple[str, int], int]:
    """Where one run of ``fn`` makes the host wait for the device: torch's sync debug mode
    warns at each synchronising call (copies to the host, uploads from pageable memory,
    ``nonzero``); counted by the a2x source line that made it."""
    import warnings

    counts: dict[tuple[str, int], int] = defaultdict(int)
    sync(torch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for warning in caught:
        if "synchroniz" in str(warning.message):
            counts[(Path(warning.filename).name, warning.lineno)] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--model", default="regression", help="or regression-small (smoke run)")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of the script")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--loop", type=int, default=0, help="clips animated one by one")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_batch"))
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from bench_batch import make_clips, model_spec

    from a2x_core.audio.decode import decode_audio

    clips = make_clips(args.cache / "clips", args.clips)
    spec = model_spec(args.model, args.cache)
    audio = [decode_audio(p) for p in clips]
    reference: dict[str, Any] | None = None
    for precision in args.precisions.split(","):
        arrays = measure(precision, spec, audio, args, reference)
        reference = reference or arrays


def measure(precision: str, spec: str, audio: list[Any], args: argparse.Namespace,
            reference: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """Every measurement of one precision; returns its weights (the next one's reference)."""
    import numpy as np
    import torch

    from a2x_core.api import Animator
    from a2x_core.batch.work import warm_model

    model = warm_model(spec, {"backend": "torch", "device": args.device,
                              "precision": precision})  # fmt: skip
    model.postprocess = args.device  # the device stages on the CPU too (a smoke run)
    animator = Animator(model)
    _, warm = synced(torch, lambda: [animator.animate_many(audio) for _ in range(2)])
    walls = []
    results: list[Any] = []
    for _ in range(args.repeat):
        results, wall = synced(torch, lambda: animator.animate_many(audio))
        walls.append(wall)
    frames = sum(r.num_frames for r in results)
    print(f"[{precision}] {len(audio)} clips, {frames} frames: warm-up {warm:.1f} s; warm call "
          f"median {statistics.median(walls):.3f} s ({', '.join(f'{w:.3f}' for w in walls)})",
          flush=True)  # fmt: skip
    arrays = {name: np.concatenate([getattr(r, name) for r in results])
              for name in ("weights", "tongue_weights", "jaw_transforms")}  # fmt: skip
    if reference is not None:
        print(f"[{precision}] against the first precision: " + ", ".join(
            f"{name} max {np.abs(arrays[name] - reference[name]).max():.2e}" for name in arrays),
            flush=True)  # fmt: skip
    with StageTimers(torch) as timers:
        _, total = synced(torch, lambda: animator.animate_many(audio))
    timers.report(f"[{precision}] one call", total, frames)
    if args.device != "cpu":
        waits = host_waits(torch, lambda: animator.animate_many(audio))
        print(f"[{precision}] host waits for the device in one call (torch's sync debug mode), "
              f"by place: {sum(waits.values())}", flush=True)  # fmt: skip
        for (place, line), count in sorted(waits.items(), key=lambda kv: -kv[1])[:12]:
            print(f"    {count:5d}  {place}:{line}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            synced(torch, lambda: animator.animate_many(audio))
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=30,
                                          max_name_column_width=70)  # fmt: skip
        (args.out / f"kernels_{precision}.txt").write_text(table)
        print(table, flush=True)
    if args.loop:
        one = Animator(model)
        one.animate(audio[0])
        part = audio[: args.loop]
        with StageTimers(torch) as timers:
            _, total = synced(torch, lambda: [one.animate(a) for a in part])
        timers.report(f"[{precision}] loop of {len(part)} clips", total,
                      sum(r.num_frames for r in results[: len(part)]))  # fmt: skip
        _, plain = synced(torch, lambda: [one.animate(a) for a in part])
        print(f"[{precision}] loop of {len(part)} clips, no timers: {plain:.3f} s "
              f"({plain / len(part) * 1000:.1f} ms per clip)", flush=True)  # fmt: skip
    return arrays

if __name__ == "__main__":
    main()
