"""``a2x batch`` scaling (issue 15 point 5): clips/s with 1 and 2 Dask workers, and a GPU worker
running many clips per batched call, against one process looping ``Animator.animate``.

Clips: ``--clips`` (default 200) real-speech clips of 1.0-2.0 s cut from samples/jfk.flac,
written once into ``--cache``. Models: ``default`` (the embedded model) and ``regression`` (the
Mark-sized folder of ``bench_regression.py``: 272 skin / 10 tongue PCA shapes, 61,520 vertices,
the ~18.3 M-parameter network with random weights; built once, needs torch) and
``regression-small`` (the tests' generated folder: what the pipeline around the network costs).

Rows:
- ``loop``: one process, the model loaded once, ``animate`` + JSON write per clip (what a
  script looping ``a2x animate`` pays at best: no process start per clip);
- ``batch N``: ``plan_batch`` + ``run_batch`` on a local cluster of N single-threaded workers
  (``--chunk`` clips per task, ``--step`` clips per batched call; defaults: the CLI's),
  cluster start-up reported apart (``start s``), every output written and recorded as in
  the CLI.

CPU seconds per clip are reported beside the wall time, measured with ``getrusage``: the
workers' (each worker process and its children, through ``client.run``) and the client's
(this process alone: the client and the local scheduler; the nannies are not counted). On a shared machine the wall time
measures the load; the CPU seconds measure the code (1 -> 2 workers can reach 2x only when
the CPU per clip stays flat). The load average before and after each row is printed.

Cost per hour of audio = machine price per hour × wall seconds per second of audio
(``--price``: USD per hour of the machine, an assumption the table states).

Usage: python benchmarks/bench_batch.py [--clips 200] [--models default,regression]
       [--workers 1,2] [--device cpu|cuda] [--chunk N] [--step N] [--price 0.10]
       [--out results.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_clips(folder: Path, count: int) -> list[Path]:
    """``count`` clips of 1.0-2.0 s of real speech (cached)."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip{i:04d}.wav" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    data, rate = sf.read(REPO / "samples" / "jfk.flac", dtype="float32")
    rng = np.random.default_rng(0)
    for path in paths:
        length = rng.uniform(1.0, 2.0)
        start = rng.uniform(0.0, len(data) / rate - length)
        sf.write(path, data[int(start * rate) : int((start + length) * rate)], rate)
    return paths


def audio_seconds(paths: list[Path]) -> float:
    import soundfile as sf

    return sum(sf.info(p).duration for p in paths)


def model_spec(name: str, cache: Path) -> str:
    """``default``; ``regression``: the Mark-sized folder; ``regression-small``: the tests'
    generated folder (6 PCA shapes, 90 vertices, an affine network: the pipeline's own cost)."""
    if name == "default":
        return "default"
    if name == "regression-small":
        from tests.a2f_folders import make_regression_folder

        folder = cache / "regression-small"
        if not (folder / "model.json").exists():
            make_regression_folder(folder)
        return str(folder / "model.json")
    from bench_regression import ensure_folder

    return str(ensure_folder(cache / "regression"))


def engine_of(args: argparse.Namespace) -> dict[str, Any]:
    if args.device == "cpu":
        return {"backend": "onnxruntime", "device": "cpu", "threads": 1}
    return {"backend": "torch", "device": args.device, "precision": args.precision}


def cpu_seconds(children: bool = True) -> float:
    """User + system CPU seconds of this process and (``children``) its finished children and
    its running ones (the default model's decoder pool lives as long as its worker). The
    client counts itself alone: its children are the cluster's nannies and workers."""
    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if not children:
        return total
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += ended.ru_utime + ended.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile: counted in RUSAGE_CHILDREN once reaped
            continue
        total += times.user + times.system
    return total


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def loop_row(spec: str, clips: list[Path], out: Path,
             args: argparse.Namespace) -> tuple[float, float, float]:  # fmt: skip
    """One process looping animate + write over every clip; returns (0, wall s, CPU s)."""
    from a2x_core.api import Animator
    from a2x_core.export.writers import write_result
    from a2x_core.models.registry import load_model

    engine = engine_of(args)
    if spec == "default":
        engine = {"threads": engine.get("threads")}
    animator = Animator(load_model(spec, **engine))
    animator.animate(clips[0])  # warm: sessions, caches, CUDA context
    began, cpu = time.perf_counter(), cpu_seconds()
    for clip in clips:
        write_result(animator.animate(clip), out / f"{clip.stem}.json")
    return 0.0, time.perf_counter() - began, cpu_seconds() - cpu


def batch_row(spec: str, clips: list[Path], out: Path, workers: int,
              args: argparse.Namespace) -> tuple[float, float, float, float]:  # fmt: skip
    """``run_batch`` on a local cluster; returns (start-up s, wall s of the run, workers' CPU
    s, client's CPU s)."""
    from a2x_core.batch.manifest import Clip
    from a2x_core.batch.runner import (
        DEFAULT_CHUNK,
        DEFAULT_STEP,
        BatchSettings,
        open_client,
        plan_batch,
        run_batch,
    )  # fmt: skip

    engine = engine_of(args)
    if spec == "default":
        engine = {"backend": "auto", "threads": engine.get("threads")}
    where = "cpu" if args.device == "cpu" else "gpu"
    settings = BatchSettings(outdir=out, model=spec, engine=engine,
                             chunk=args.chunk or DEFAULT_CHUNK[where],
                             step=args.step or DEFAULT_STEP[where])  # fmt: skip
    plan = plan_batch([Clip(row=str(p), audio=p, name=p.stem) for p in clips], settings)
    began = time.perf_counter()
    with open_client(workers=workers, gpu=args.device != "cpu") as client:
        # every worker warm before the clock: one batched call as large as a task (it meets
        # every row bucket of the torch engine once, as a long batch does in its first task)
        warm = [str(p) for p in clips[: settings.chunk if args.device != "cpu" else 1]]
        client.run(_warm, spec, engine, warm, settings.step)
        started = time.perf_counter() - began
        before = sum(client.run(cpu_seconds).values())
        began, cpu = time.perf_counter(), cpu_seconds(children=False)
        rows = run_batch(plan, client, settings)
        wall, client_cpu = time.perf_counter() - began, cpu_seconds(children=False) - cpu
        worker_cpu = sum(client.run(cpu_seconds).values()) - before
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} clips failed: {failed[0]['error']}")
    return started, wall, worker_cpu, client_cpu


def _warm(spec: str, engine: dict[str, Any], clips: list[str], step: int | None = None) -> None:
    """Load the model and animate ``clips`` in calls of ``step`` clips (None: one call), as a
    task does (sessions, decoders, CUDA context, the row buckets and graph shapes of those
    calls), as the loop row's warm-up animates its one clip."""
    from a2x_core.api import Animator
    from a2x_core.batch.work import warm_model

    animator = Animator(warm_model(spec, engine))
    step = step or len(clips) or 1
    for start in range(0, len(clips), step):
        animator.animate_many(clips[start : start + step])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--models", default="default,regression")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--chunk", type=int, help="clips per task (default: the CLI's)")
    parser.add_argument("--step", type=int, help="clips per batched call (default: the CLI's)")
    parser.add_argument("--no-loop", action="store_true", help="skip the looping-process row")
    parser.add_argument("--price", type=float, default=0.10, help="USD per machine hour")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_batch"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    clips = make_clips(args.cache / "clips", args.clips)
    seconds = audio_seconds(clips)
    lines = [f"{platform.node()} ({os.cpu_count()} cores), {args.device}, {len(clips)} clips, "
             f"{seconds:.0f} s of audio, chunk {args.chunk or 'default'}, step "
             f"{args.step or 'default'}, price ${args.price}/h", "",
             "| model | run | start s | wall s | clips/s | speed-up | CPU s/clip workers | "
             "CPU s/clip client | load before/after | $ per hour of audio |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    print("\n".join(lines), flush=True)
    for name in args.models.split(","):
        spec = model_spec(name, args.cache)
        runs: list[tuple[str, float, float, float, float, str]] = []
        if not args.no_loop:
            out = args.cache / "out" / f"{name}-loop"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            before = load()
            start, wall, cpu = loop_row(spec, clips, out, args)
            runs.append(("loop (1 process)", start, wall, cpu, 0.0, f"{before} → {load()}"))
        for workers in (int(w) for w in args.workers.split(",")):
            out = args.cache / "out" / f"{name}-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            before = load()
            start, wall, worker_cpu, client_cpu = batch_row(spec, clips, out, workers, args)
            runs.append((f"batch, {workers} worker{'s' if workers > 1 else ''}", start, wall,
                         worker_cpu, client_cpu, f"{before} → {load()}"))  # fmt: skip
        base = runs[0][2]
        for label, start, wall, worker_cpu, client_cpu, loads in runs:
            cost = args.price * wall / seconds  # $/h × (wall h / audio h)
            line = (f"| {name} | {label} | {start:.1f} | {wall:.1f} | {len(clips) / wall:.2f} | "
                    f"{base / wall:.2f}× | {worker_cpu / len(clips):.4f} | "
                    f"{client_cpu / len(clips):.4f} | {loads} | {cost:.4f} |")  # fmt: skip
            lines.append(line)
            print(line, flush=True)
    if args.out is not None:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
