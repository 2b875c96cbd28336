"""Streaming latency and load (issue 12 point 5): audio in -> frame out, and how many streams one
machine sustains.

For each model kind asked for (``--models``):

- **latency**: one stream, 20 ms blocks (``--block-ms``) of real speech pushed at real-time pace
  (``--no-pace``: as fast as possible) for ``--seconds``. Per frame: the *look-ahead* part = audio
  that had to arrive after the frame's target sample before the push that returned it (the
  model's window, plus the block's quantisation), in audio time; the *compute* part = wall time of
  that push divided by the frames it returned (per frame), and the push's wall time itself; p50
  and p99 of each.
- **load**: N streams on one executor (shared network calls); every tick feeds each stream one
  block, runs the executor once and pulls every stream. N is sustained when the p99 tick time
  stays under the block's duration (the streams keep up with real time). N doubles until it
  fails, then bisects; each trial runs ``--load-seconds`` of audio. Diffusion computes a 1 s
  window per stream every 0.5 s, all streams' windows in one tick: there N is sustained while
  all ticks together use <= 80 % of the audio's time and that tick's p99 (latency added to the
  look-ahead) stays <= ``--window-latency-ms`` (100 ms); the table's p99 column is then that
  tick scaled to the block (<= block = sustained).

Models: ``regression`` (Mark-sized folder around the architecture-faithful ~18.3 M-parameter
network of ``a2f_network.py``, random weights; built once into ``--cache``), ``diffusion``
(the full-scale v3.0 network of ``diffusion_network.py`` in a generated folder with v3.0's
vertex counts) and ``default`` (the embedded model), each where its streaming mode exists.

- **bank** (``--bank``, ``--bank-sizes 1000,1024``, ``--breakdown``, ``--profile-bank``): a
  :class:`a2x_core.executor.stream_bank.RegressionStreamBank` ticked back to back: the sustained search,
  fixed sizes (tick p50 / p99 / max and the process's CPU time per tick), the time per phase with
  the device synchronised after each, and a ``torch.profiler`` table. ``--compile-rows`` sets
  the rows of one compiled network pass (``RegressionModel.compile_rows``), ``--gc-freeze``
  freezes the collector's view of the loaded model.
- **live** (``--live``): ``a2x live``'s path: the file source at real-time pace, the stream, the
  Live Link Face sender and a UDP socket on 127.0.0.1; p50/p99 of packet arrival − the time its
  audio arrived.

- **A/B** (``--ab conv2d|blas|int8``, CPU): one regression stream's latency for two settings
  in one process, alternating every ``--ab-segment-s`` of audio (the first blocks after a
  switch are not counted), with the process's CPU seconds per frame: ``conv2d`` = the ONNX
  Runtime engine with its 1-D convs run as 2-D ones (default) vs the file as it is; ``blas`` =
  OpenBLAS on one thread (this script's default, as ``a2x live``) vs two; ``int8`` = the
  explicit int8 network (``RegressionModel.quantize_int8``, calibrated on the speech) vs fp32,
  plus its error on the ARKit weights of a 10 s offline run.

OpenBLAS: this script limits it to one thread, as ``a2x live`` does (set
``OPENBLAS_NUM_THREADS=2`` in the environment to measure the old setting).

Usage: python benchmarks/bench_stream.py [--models regression,default] [--fps 30,60]
       [--seconds 60] [--device cpu|cuda] [--max-streams 4096] [--live] [--out results.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

# before numpy loads OpenBLAS: one thread, as ``a2x live`` (cli.console_main) runs
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SAMPLE_RATE = 16000


def speech(seconds: float, path: Path | None = None) -> np.ndarray:
    """Real speech (the repo's sample, or ``path``; looped) of ``seconds`` at 16 kHz."""
    from a2x_core.audio.decode import decode_audio

    clip = decode_audio(path or REPO / "samples" / "jfk.flac").samples
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(clip)))
    return np.tile(clip, reps)[: int(seconds * SAMPLE_RATE)]


def percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def latency(open_stream: Callable[[], Any], samples: np.ndarray, block: int, fps: Fraction,
            pace: bool) -> dict[str, Any]:  # fmt: skip
    """One stream at real-time pace; see the module docstring."""
    warm = open_stream()  # engine sessions and caches warm before the clock starts
    for at in range(0, 2 * SAMPLE_RATE, block):
        warm.push(samples[at : at + block])
    warm.cancel()
    stream = open_stream()
    period = block / SAMPLE_RATE
    lookahead_ms: list[float] = []
    compute_ms: list[float] = []
    push_ms: list[float] = []
    frames = 0
    t0 = time.perf_counter()
    for i, at in enumerate(range(0, len(samples), block)):
        if pace:
            delay = t0 + (i + 1) * period - time.perf_counter()  # the block's last sample
            if delay > 0:
                time.sleep(delay)
        start = time.perf_counter()
        out = stream.push(samples[at : at + block])
        spent = time.perf_counter() - start
        push_ms.append(1e3 * spent)
        received = stream.samples_received
        for frame in out:
            target = (frame.index * SAMPLE_RATE * fps.denominator) // fps.numerator
            lookahead_ms.append(1e3 * (received - target) / SAMPLE_RATE)
            compute_ms.append(1e3 * spent / len(out))
        frames += len(out)
    frames += len(stream.close())
    return {
        "frames": frames,
        "stated_lookahead_ms": 1e3 * stream.lookahead_samples / SAMPLE_RATE,
        "lookahead": percentiles(lookahead_ms),
        "compute": percentiles(compute_ms),
        "push": percentiles(push_ms),
    }


def openblas_threads(count: int) -> bool:
    """Set OpenBLAS's thread count at run time (numpy's bundled library, through ctypes);
    False where it cannot be found. Only for the ``--ab blas`` comparison."""
    import ctypes
    import glob

    libs = Path(np.__file__).parent.parent / "numpy.libs"
    for path in glob.glob(str(libs / "*openblas*")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "openblas_set_num_threads"):  # fmt: skip
            if hasattr(lib, name):
                getattr(lib, name)(int(count))
                return True
    return False


def ab_latency(variants: dict[str, tuple[Callable[[], Any], Callable[[], None]]],
               samples: np.ndarray, block: int, segment_s: float) -> dict[str, dict[str, Any]]:  # fmt: skip
    """One stream per variant, pushed in turns of ``segment_s`` of audio at real-time pace
    (``variants``: name -> (open_stream, switch: called before each of its turns)); per
    variant: compute per frame p50 / p99 (push wall time / its frames) and the process's CPU
    ms per frame. The first 10 blocks of every turn are not counted (a switch's warm-up)."""
    streams = {}
    for name, (open_stream, switch) in variants.items():
        switch()
        warm = open_stream()
        for at in range(0, 2 * SAMPLE_RATE, block):
            warm.push(samples[at : at + block])
        warm.cancel()
        streams[name] = open_stream()
    names = list(variants)
    turn = max(1, int(segment_s * SAMPLE_RATE / block))
    stats = {n: {"compute": [], "cpu": 0.0, "frames": 0} for n in names}
    period = block / SAMPLE_RATE
    t0 = time.perf_counter()
    for i, at in enumerate(range(0, len(samples), block)):
        name = names[(i // turn) % len(names)]
        if i % turn == 0:
            variants[name][1]()
        delay = t0 + (i + 1) * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        # a stream gets its turns' blocks only (the speech jumps between turns; a backlog of
        # the other turns' audio would run at once and stall the pace)
        cpu, start = time.process_time(), time.perf_counter()
        out = streams[name].push(samples[at : at + block])
        spent, cpu = time.perf_counter() - start, time.process_time() - cpu
        if out and i % turn >= 10:
            stats[name]["compute"] += [1e3 * spent / len(out)] * len(out)
            stats[name]["cpu"] += cpu
            stats[name]["frames"] += len(out)
    for stream in streams.values():
        stream.cancel()
    return {n: {"compute": percentiles(v["compute"]), "frames": v["frames"],
                "cpu_ms": 1e3 * v["cpu"] / max(1, v["frames"])} for n, v in stats.items()}  # fmt: skip


def live_path(model: Any, options: Any, samples: np.ndarray, fps: Fraction,
              emotion_model: Any = None, block_s: float | None = None) -> dict[str, Any]:  # fmt: skip
    """``a2x live``'s path end to end (issue 13 point 4): a WAV of ``samples`` through the file
    source at real-time pace, the model's stream, the Live Link Face sender, a UDP socket on
    127.0.0.1, in source blocks of ``block_s`` (default: ``a2x live``'s). Per frame: packet
    arrival (wall) − when its audio time arrived (the source's start + the frame's time):
    look-ahead + compute + output, as a viewer sees it."""
    import socket
    import tempfile
    import threading

    import soundfile

    from a2x_core.api import Animator
    from a2x_core.live.outputs import FanOut, LiveLinkFaceSender, decode_livelink
    from a2x_core.live.runner import BLOCK_S, StatusLine, StopSignals, file_blocks, run_live

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.2)
    arrivals: dict[int, float] = {}
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                packet = receiver.recv(65536)
            except TimeoutError:
                continue
            arrivals[decode_livelink(packet)["frame_number"]] = time.monotonic()

    animator = Animator(model, options, emotion_model=emotion_model)
    warm = animator.open_stream()  # engine sessions warm before the clock starts
    for at in range(0, 2 * SAMPLE_RATE, 320):
        warm.push(samples[at : at + 320])
    warm.cancel()
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "speech.wav"
        soundfile.write(clip, samples, SAMPLE_RATE, subtype="FLOAT")
        stream = animator.open_stream()
        sender = LiveLinkFaceSender("127.0.0.1", receiver.getsockname()[1])
        with StopSignals() as stop, FanOut([sender]) as fanout:
            start = time.monotonic()  # file_blocks starts its clock at the first block
            blocks = file_blocks(clip, block_s=block_s or BLOCK_S)
            frames, _ = run_live(stream, blocks, fanout, fps,
                                 StatusLine(sys.stderr, enabled=False), stop)  # fmt: skip
        time.sleep(0.3)
    done.set()
    listener.join()
    receiver.close()
    step = fps.denominator / fps.numerator
    # the tail (frames of close(), after the audio ended) is not live latency
    live = [i for i in arrivals if i * step < len(samples) / SAMPLE_RATE - 1.0]
    latencies = [1e3 * (arrivals[i] - (start + i * step)) for i in live]
    return {"frames": len(frames), "received": len(arrivals), "lost": len(frames) - len(arrivals),
            "lookahead_ms": 1e3 * stream.lookahead_samples / SAMPLE_RATE,
            "latency": percentiles(latencies)}  # fmt: skip


def load_trial(open_stream: Callable[[Any], Any], make_executor: Callable[[], Any],
               samples: np.ndarray, block: int, streams: int, seconds: float,
               windowed: float | None = None) -> float:  # fmt: skip
    """p99 tick time (s) of ``streams`` streams on one executor, ``seconds`` of audio each;
    ``windowed``: see below (the result is scaled so that <= one block means sustained)."""
    executor = make_executor()
    opened = [open_stream(executor) for _ in range(streams)]
    ticks = []
    offsets = np.random.default_rng(streams).integers(0, len(samples) - block, streams)
    for tick in range(int(seconds * SAMPLE_RATE / block)):
        start = time.perf_counter()
        for k, stream in enumerate(opened):
            at = (int(offsets[k]) + tick * block) % (len(samples) - block)
            stream.feed(samples[at : at + block])
        executor.run_ready()
        for stream in opened:
            stream.pull()
        ticks.append(time.perf_counter() - start)
    for stream in opened:
        stream.cancel()
    warm = ticks[len(ticks) // 10 :] or ticks  # the first ticks hold no frames yet (look-ahead)
    if windowed is not None:
        # a windowed model (diffusion) runs every stream's window in one tick per stride: it
        # keeps up when all ticks together use <= 80 % of the audio's time; the window's tick
        # (p99) is latency added on top of the look-ahead, held to ``windowed`` seconds
        load = sum(warm) / (len(warm) * block / SAMPLE_RATE)
        p99 = float(np.percentile(warm, 99))
        return p99 * (block / SAMPLE_RATE) / windowed if load <= 0.8 else float("inf")
    return float(np.percentile(warm, 99))


def bank_ticks(model: Any, options: Any, samples: np.ndarray, block: int, streams: int,
               seconds: float) -> tuple[list[float], float]:  # fmt: skip
    """Tick times (s) of ``streams`` streams in one stream bank (arrays in, arrays out) after a
    warm-up, and the process's CPU seconds per tick. A tick's audio is cut from the speech
    before its clock starts: the tick times the bank's push alone (a server holds the block)."""
    bank = model.stream_bank(options, max_push=block)
    slots = bank.open(streams)
    offsets = np.random.default_rng(streams).integers(0, len(samples) - block, streams)
    ticks = []
    ar = np.arange(block)
    warm_up = int(0.5 * SAMPLE_RATE / block)  # new shapes (graph captures) settle first
    cpu = 0.0
    for tick in range(warm_up + int(seconds * SAMPLE_RATE / block)):
        at = (offsets + tick * block) % (len(samples) - block)
        audio = samples[at[:, None] + ar[None, :]]
        cpu_start, start = time.process_time(), time.perf_counter()
        bank.push(slots, audio)
        ticks.append(time.perf_counter() - start)
        if tick >= warm_up:
            cpu += time.process_time() - cpu_start
    bank.cancel(slots)
    return ticks[warm_up:], cpu / max(1, len(ticks) - warm_up)


def bank_trial(model: Any, options: Any, samples: np.ndarray, block: int, streams: int,
               seconds: float) -> float:  # fmt: skip
    """p99 tick time (s) of ``streams`` streams in one stream bank."""
    ticks, _ = bank_ticks(model, options, samples, block, streams, seconds)
    return float(np.percentile(ticks, 99))


def bank_sizes(model: Any, options: Any, samples: np.ndarray, block: int, sizes: list[int],
               seconds: float) -> str:  # fmt: skip
    """Tick p50 / p99 / max and CPU time per tick of banks of the given sizes."""
    parts = []
    for n in sizes:
        ticks, cpu = bank_ticks(model, options, samples, block, n, seconds)
        p50, p99 = percentiles([1e3 * t for t in ticks])
        parts.append(f"{n}: {p50:.1f} / {p99:.1f} / {1e3 * max(ticks):.1f} (CPU {1e3 * cpu:.1f})")
        print(f"bank of {n}: tick p50 / p99 / max ms {parts[-1]}", flush=True)
    return (f"bank sizes, tick p50 / p99 / max ms (CPU ms per tick), {block}-sample blocks: "
            + "; ".join(parts))  # fmt: skip


def bank_breakdown(model: Any, options: Any, samples: np.ndarray, block: int, streams: int,
                   seconds: float) -> str:  # fmt: skip
    """Where a bank's tick goes (device synchronised around each phase): p50/p99 ms of the
    network call, the chain steps, the take, and the whole tick."""
    import torch

    bank = model.stream_bank(options, max_push=block)
    sync = torch.cuda.synchronize if bank.device.type == "cuda" else (lambda: None)
    spent: dict[str, list[float]] = {"windows": [], "network": [], "chain": [], "take": [],
                                     "tick": []}  # fmt: skip

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any) -> Any:
            sync()
            t0 = time.perf_counter()
            out = fn(*a)
            sync()
            spent[name].append(1e3 * (time.perf_counter() - t0))
            return out

        return wrapper

    bank._inputs = timed("windows", bank._inputs)
    bank._network = timed("network", bank._network)
    bank._step_chain = timed("chain", bank._step_chain)
    bank._collect = timed("take", bank._collect)
    slots = bank.open(streams)
    offsets = np.random.default_rng(streams).integers(0, len(samples) - block, streams)
    ar = np.arange(block)
    for tick in range(int(seconds * SAMPLE_RATE / block)):
        at = (offsets + tick * block) % (len(samples) - block)
        audio = samples[at[:, None] + ar[None, :]]
        sync()
        t0 = time.perf_counter()
        bank.push(slots, audio)
        sync()
        spent["tick"].append(1e3 * (time.perf_counter() - t0))
    bank.cancel(slots)
    parts = []
    for name, values in spent.items():
        warm = values[len(values) // 10 :] or values
        p50, p99 = percentiles(warm)
        parts.append(f"{name} {p50:.1f} / {p99:.1f}")
    return f"bank of {streams}, p50 / p99 ms: " + ", ".join(parts)


def bank_profile(model: Any, options: Any, samples: np.ndarray, block: int, streams: int,
                 ticks: int = 20) -> str:  # fmt: skip
    """``torch.profiler`` over ``ticks`` ticks of a bank of ``streams`` (after a warm-up): the
    kernels and host calls that take its time, as a table (where to look next)."""
    from torch.profiler import ProfilerActivity, profile

    bank = model.stream_bank(options, max_push=block)
    slots = bank.open(streams)
    offsets = np.random.default_rng(streams).integers(0, len(samples) - block, streams)
    ar = np.arange(block)
    blocks = [samples[((offsets + t * block) % (len(samples) - block))[:, None] + ar[None, :]]
              for t in range(ticks + 40)]  # fmt: skip
    for audio in blocks[:40]:
        bank.push(slots, audio)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if bank.device.type == "cuda" else [])  # fmt: skip
    with profile(activities=activities) as prof:
        for audio in blocks[40:]:
            bank.push(slots, audio)
    bank.cancel(slots)
    sort = "cuda_time_total" if bank.device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=60)
    return f"profile of a bank of {streams}, {ticks} ticks:\n{table}"


def network_baseline(model: Any, repeat: int = 20) -> str:
    """The same run's baseline: the regression network alone, one frame per call (what each
    frame of a 20 ms-block stream costs at least), on this machine as loaded now."""
    rows = {"input": np.zeros((1, 1, 8320), np.float32),
            "emotion": np.zeros((1, 1, 26), np.float32)}  # fmt: skip
    for _ in range(3):
        model.engine.run(rows)
    spent = []
    for _ in range(repeat):
        start = time.perf_counter()
        model.engine.run(rows)
        spent.append(1e3 * (time.perf_counter() - start))
    p50, p99 = percentiles(spent)
    return f"baseline, same run: the network alone, 1 frame per call: p50 {p50:.1f} / p99 {p99:.1f} ms"


def sustained(trial: Callable[[int], float], period: float, limit: int,
              budget_s: float) -> tuple[int, dict[int, float]]:  # fmt: skip
    """Largest N with p99 tick <= period: doubling, then bisection, within ``budget_s``."""
    seen: dict[int, float] = {}
    good, bad = 0, None
    n = 1
    deadline = time.perf_counter() + budget_s
    while n <= limit and time.perf_counter() < deadline:
        seen[n] = trial(n)
        if seen[n] <= period:
            good = n
            n *= 2
        else:
            bad = n
            break
    while bad is not None and bad - good > max(1, good // 8) and time.perf_counter() < deadline:
        mid = (good + bad) // 2
        seen[mid] = trial(mid)
        if seen[mid] <= period:
            good = mid
        else:
            bad = mid
    return good, seen


def regression_model(args: argparse.Namespace) -> Any:
    from bench_regression import ensure_folder

    from a2x_core.models.registry import load_model

    model_json = ensure_folder(args.cache / "regression")
    if args.device == "cpu":
        from a2x_core.backends.onnxruntime import spin_threads

        spin_threads(not args.no_spin)  # as a2x live runs it, unless --no-spin
        model = load_model(model_json, backend="onnxruntime", threads=args.threads)
        if getattr(args, "int8", False):
            from a2x_core.audio.decode import Audio

            model.quantize_int8(Audio(speech(20.0)))
        return model
    model = load_model(model_json, backend="torch", device=args.device,
                       precision=args.precision, compile_network=args.compile)  # fmt: skip
    if args.compile_rows:
        model.compile_rows = args.compile_rows
    if args.compile and args.compile_mode:
        from a2x_core.postprocess.gpu import CompiledNetwork

        rows = int(model.compile_rows)
        model._device_cache[("compiled", id(model.engine), rows)] = CompiledNetwork(
            model.engine, rows=rows, mode=args.compile_mode)  # fmt: skip
    return model


def diffusion_model(args: argparse.Namespace) -> Any:
    """A v3.0-sized diffusion folder (the full-scale network of ``diffusion_network.py``, 24,002
    skin / 5,602 tongue vertices), built once into the cache."""
    from diffusion_network import export_diffusion_network

    from a2x_core.models.registry import load_model
    from tests.diffusion_folders import make_diffusion_folder

    cache = args.cache / "diffusion"
    cache.mkdir(parents=True, exist_ok=True)
    onnx = cache / "network_full.onnx"
    if not onnx.exists():
        print(f"building a full-size diffusion network in {onnx} ...", flush=True)
        export_diffusion_network(onnx, skin_verts=24002, tongue_verts=5602, scale="full")
    folder = make_diffusion_folder(cache / "folder", num_verts_skin=24002, num_verts_tongue=5602,
                                   latent=256, network=onnx)  # fmt: skip
    if args.device == "cpu":
        return load_model(folder.model_json, backend="onnxruntime", threads=args.threads)
    return load_model(folder.model_json, backend="torch", device=args.device,
                      precision=args.precision)  # fmt: skip


def kinds(args: argparse.Namespace) -> dict[str, Callable[[], Any]]:
    """Model kind -> loader; a kind without ``open_stream`` is reported as not streaming."""
    loaders: dict[str, Callable[[], Any]] = {"regression": lambda: regression_model(args),
                                             "diffusion": lambda: diffusion_model(args)}  # fmt: skip

    def default() -> Any:
        from a2x_core.models.registry import load_model

        return load_model("default")

    loaders["default"] = default
    return loaders


def ab_note(args: argparse.Namespace, model: Any, options: Any, samples: np.ndarray,
            block: int, fps_text: str) -> str:  # fmt: skip
    """``--ab``: the two settings' rows of :func:`ab_latency` as one note."""
    if args.ab == "conv2d":
        from a2x_core.backends import onnxruntime as ort_backend

        ort_backend.CONV1D_AS_2D = False
        try:
            plain = regression_model(args)
        finally:
            ort_backend.CONV1D_AS_2D = True
        variants = {"1-D convs as 2-D (default)": (lambda: model.open_stream(options), lambda: None),
                    "the file's 1-D convs": (lambda: plain.open_stream(options), lambda: None)}  # fmt: skip
    elif args.ab == "int8":
        quantised = int8_model(args, options, samples)
        error = int8_error(model, quantised, options, samples)
        variants = {"fp32 (1-D convs as 2-D)": (lambda: model.open_stream(options), lambda: None),
                    "int8 QDQ": (lambda: quantised.open_stream(options), lambda: None)}  # fmt: skip
    else:
        if not openblas_threads(1):
            return "A/B blas: numpy's OpenBLAS not found"
        variants = {"OpenBLAS 1 thread": (lambda: model.open_stream(options),
                                          lambda: openblas_threads(1)),
                    "OpenBLAS 2 threads": (lambda: model.open_stream(options),
                                           lambda: openblas_threads(2))}  # fmt: skip
    start = os.getloadavg()[0]
    result = ab_latency(variants, samples[: int(args.seconds * SAMPLE_RATE)], block,
                        args.ab_segment_s)  # fmt: skip
    rows = [f"{n}: compute per frame p50 {r['compute'][0]:.1f} / p99 {r['compute'][1]:.1f} ms, "
            f"CPU {r['cpu_ms']:.1f} ms per frame ({r['frames']} frames)"
            for n, r in result.items()]  # fmt: skip
    if args.ab == "int8":
        rows.append(error)
    return (f"A/B {args.ab}, regression at {fps_text} fps, {args.seconds:g} s in turns of "
            f"{args.ab_segment_s:g} s (load {start:.2f} -> {os.getloadavg()[0]:.2f}): "
            + "; ".join(rows))


def int8_model(args: argparse.Namespace, options: Any, samples: np.ndarray) -> Any:
    """A second regression model on the int8 network (:meth:`RegressionModel.quantize_int8`,
    calibrated on 32 windows of the speech's first 20 s with the run's emotion row)."""
    from a2x_core.audio.decode import Audio

    quantised = regression_model(argparse.Namespace(**{**vars(args), "int8": False}))
    quantised.quantize_int8(Audio(samples[: 20 * SAMPLE_RATE]), options)
    return quantised


def int8_error(model: Any, quantised: Any, options: Any, samples: np.ndarray) -> str:
    """The int8 network's error where it counts: the ARKit weights of one offline run of 10 s
    of the speech, against the fp32 run."""
    from a2x_core.audio.decode import Audio

    clip = [Audio(samples[: 10 * SAMPLE_RATE])]
    want = model.animate(clip, options)[0].weights
    got = quantised.animate(clip, options)[0].weights
    diff = np.abs(got - want)
    return (f"int8 error on the ARKit weights (10 s offline, vs fp32): max {diff.max():.4f}, "
            f"p99 {np.percentile(diff, 99):.4f}, mean {diff.mean():.5f} (weights' p99 "
            f"{np.percentile(np.abs(want), 99):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="regression,default")
    parser.add_argument("--fps", default="30,60")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--block-ms", type=float, default=20.0)
    parser.add_argument("--no-pace", action="store_true")
    parser.add_argument("--load-seconds", type=float, default=3.0)
    parser.add_argument("--load-budget-s", type=float, default=240.0)
    parser.add_argument("--max-streams", type=int, default=64)
    parser.add_argument("--no-load", action="store_true")
    parser.add_argument("--window-latency-ms", type=float, default=100.0,
                        help="diffusion load: sustained while all ticks use <= 80 %% of real "
                        "time and the window's tick (p99) adds <= this to the look-ahead")
    parser.add_argument("--live", action="store_true",
                        help="also a2x live's path: file at real-time pace -> Live Link UDP")
    parser.add_argument("--bank", action="store_true", help="also the stream bank (torch device)")
    parser.add_argument("--bank-max", type=int, default=8192)
    parser.add_argument("--breakdown", default="", help="bank sizes to break down, e.g. 1,1024")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA)")
    parser.add_argument("--compile-rows", type=int, default=0,
                        help="rows of one compiled network pass (default 256)")
    parser.add_argument("--compile-mode", default="",
                        help="torch.compile mode of the network, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--bank-sizes", default="",
                        help="bank sizes to time (tick p50/p99/max, CPU per tick), e.g. 768,1024")
    parser.add_argument("--no-latency", action="store_true", help="skip the one-stream latency")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after the model loads (a server's setting: the "
                        "collector's full passes no longer walk the model's objects in a tick)")
    parser.add_argument("--profile-bank", type=int, default=0,
                        help="torch.profiler table of a bank of this many streams")
    parser.add_argument("--ab", default="", choices=["", "conv2d", "blas", "int8"],
                        help="CPU regression: A/B of one stream, two settings alternating in "
                        "one process (conv2d: 1-D convs as 2-D vs as they are; blas: OpenBLAS "
                        "1 vs 2 threads; int8: the network statically quantised (QDQ, "
                        "calibrated on the speech) vs fp32, with the weights' error)")
    parser.add_argument("--ab-segment-s", type=float, default=2.0)
    parser.add_argument("--int8", action="store_true",
                        help="CPU regression: the explicit int8 network (quantize_int8, "
                        "calibrated on the speech) for the latency and live runs")
    parser.add_argument("--live-block-ms", type=float, default=0.0,
                        help="the live path's source block (default: a2x live's, 10 ms)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--language", default="auto", help="the default model's language "
                        "(another code than auto/en: the language-independent phone loop)")
    parser.add_argument("--speech", type=Path, help="the speech to push (default: the repo's "
                        "sample), looped to --seconds")  # fmt: skip
    parser.add_argument("--no-spin", action="store_true",
                        help="CPU: ONNX Runtime's threads sleep between operators (the default "
                        "outside a2x live, which spins them)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_stream"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.ab and args.int8:
        parser.error("--ab compares against the fp32 model: run it without --int8")

    from a2x_core.options import InferenceOptions
    from a2x_core.timing import parse_fps

    block = int(round(args.block_ms * SAMPLE_RATE / 1000))
    samples = speech(max(args.seconds, 10.0), args.speech)
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.2f}; device {args.device} {args.precision}"
        f"{' compiled' if args.compile else ''}; block {args.block_ms:g} ms; "
        f"{'real-time pace' if not args.no_pace else 'no pacing'}",
        "",
        "| model | fps | look-ahead p50 / p99 (ms) | compute per frame p50 / p99 (ms) | "
        "push p50 / p99 (ms) | streams sustained (p99 tick <= block) |",
        "|---|---|---|---|---|---|",
    ]
    loaders = kinds(args)
    notes: list[str] = []
    for name in [m for m in args.models.split(",") if m]:
        model = loaders[name]()
        if args.gc_freeze:
            import gc

            gc.collect()
            gc.freeze()
        if not hasattr(model, "open_stream"):
            lines.append(f"| {name} | - | does not stream yet | | | |")
            continue
        for fps_text in args.fps.split(","):
            fps = parse_fps(fps_text)
            options = InferenceOptions(fps=fps, language=args.language if name == "default"
                                       else "auto")  # fmt: skip
            lat = None if args.no_latency else latency(
                lambda m=model, o=options: m.open_stream(o),
                samples[: int(args.seconds * SAMPLE_RATE)], block, fps, not args.no_pace)  # fmt: skip
            load = "-"
            if not args.no_load and hasattr(model, "stream_executor"):
                windowed = args.window_latency_ms / 1000 if name == "diffusion" else None
                best, seen = sustained(
                    lambda n, m=model, o=options, w=windowed: load_trial(
                        lambda ex: m.open_stream(o, executor=ex), m.stream_executor, samples,
                        block, n, args.load_seconds,
                        w),
                    block / SAMPLE_RATE, args.max_streams, args.load_budget_s,
                )  # fmt: skip
                tried = ", ".join(f"{n}: {1e3 * t:.1f} ms" for n, t in sorted(seen.items()))
                load = f"**{best}** streams (p99 tick by N: {tried})"
                if args.bank and hasattr(model, "stream_bank"):
                    best, seen = sustained(
                        lambda n, m=model, o=options: bank_trial(m, o, samples, block, n,
                                                                 args.load_seconds),
                        block / SAMPLE_RATE, args.bank_max, args.load_budget_s,
                    )  # fmt: skip
                    tried = ", ".join(f"{n}: {1e3 * t:.1f} ms" for n, t in sorted(seen.items()))
                    load += f"; **{best}** in a stream bank (p99 tick by N: {tried})"
            sizes = [int(x) for x in args.bank_sizes.split(",") if x]
            if sizes and hasattr(model, "stream_bank"):
                notes.append(bank_sizes(model, options, samples, block, sizes, args.load_seconds))
            if args.profile_bank and hasattr(model, "stream_bank"):
                notes.append(bank_profile(model, options, samples, block, args.profile_bank))
                print(notes[-1], flush=True)
            for n in [int(x) for x in args.breakdown.split(",") if x]:
                notes.append(bank_breakdown(model, options, samples, block, n, args.load_seconds))
                print(notes[-1], flush=True)
            if name == "regression" and args.device == "cpu":
                notes.append(network_baseline(model))
                print(notes[-1], flush=True)
            if args.ab and name == "regression" and args.device == "cpu":
                notes.append(ab_note(args, model, options, samples, block, fps_text))
                print(notes[-1], flush=True)
            if args.live:
                from a2x_core.live.runner import BLOCK_S

                block_ms = args.live_block_ms or 1000 * BLOCK_S
                result = live_path(model, options, samples[: int(args.seconds * SAMPLE_RATE)], fps,
                                   block_s=block_ms / 1000)  # fmt: skip
                p50, p99 = result["latency"]
                notes.append(
                    f"live path, {name} at {fps_text} fps, {args.seconds:g} s of speech at "
                    f"real-time pace -> Live Link UDP on 127.0.0.1: end-to-end latency p50 "
                    f"{p50:.0f} ms, p99 {p99:.0f} ms (look-ahead "
                    f"{result['lookahead_ms']:.0f} ms; p99 − look-ahead "
                    f"{p99 - result['lookahead_ms']:.0f} ms); {result['received']} of "
                    f"{result['frames']} packets received; source blocks "
                    f"{block_ms:g} ms")  # fmt: skip
                print(notes[-1], flush=True)
            if lat is None:
                lines.append(f"| {name} | {fps_text} | - | - | - | {load} |")
                continue
            la, co, pu = lat["lookahead"], lat["compute"], lat["push"]
            lines.append(
                f"| {name} (window {lat['stated_lookahead_ms']:.0f} ms) | {fps_text} | "
                f"{la[0]:.0f} / {la[1]:.0f} | {co[0]:.1f} / {co[1]:.1f} | "
                f"{pu[0]:.1f} / {pu[1]:.1f} | {load} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines + ([""] + notes if notes else []))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
