"""``a2x serve`` under load (issue 14 point 4): N concurrent NIM gRPC streams on loopback.

The server (the real ``ServiceServer``: grpc.aio + the model hub's one stream owner) runs in
this process; the clients run in ``--client-procs`` other processes (so that the load generator
does not share the server's interpreter). Every client stream does what a live NIM client does:
header, then ``--chunk-ms`` of real speech every ``--chunk-ms`` at real-time pace (chunk ``j``
is sent when its audio has been "recorded", at ``t0 + (j + 1) * chunk``), then end of audio;
streams start staggered over one chunk (``--stagger-ms``: longer). Per N it reports:

- first-frame latency: first frame received - first audio sent (p50, p99 over streams);
- frame latency: frame received - the moment its audio time was recorded (``t0 + k / fps``), so
  it includes the model's look-ahead (regression v2.3: 260 ms), the chunking and all compute
  (p50, p99 over all frames of all streams);
- server delay: frame received - the moment the message that completed its window (its target
  sample + the look-ahead) was sent: what the service adds to the model's look-ahead (the
  issue's target on one H200: p99 <= 50 ms with >= 500 streams);
- frames/s received in total; lost (expected - received) and reordered (time codes not strictly
  increasing) frames, and streams that did not end with Status SUCCESS.

and where a tail comes from: the server delay's p99 of the frames sent while the audio streams
and of the tails (frames after the end of audio: a close's new shapes), the CPU time per frame
of the servers and of the clients, the whole machine's busy share (clients and servers share
its cores), how late the clients' loops sent their chunks, and per round of every server
process the hub's queue wait, round time and the I/O loop's hand-over lag (``StageLog``).

Models: ``regression`` (Mark-sized folder around the ~18.3 M-parameter network of
``a2f_network.py``, random weights, built once into ``--cache``; ``--device cuda`` runs it with
the torch engine), ``small`` (the tests' tiny regression folder: the cost of the service
itself), ``default`` (the embedded model), or a model.json path.

``--processes 1,4`` runs every N against one server process (in this process) and then
against ``a2x serve --processes 4``'s group (the same ``ServerGroup``, children on one port);
``--profile`` samples the one-process server's threads (where its time goes). ``--warm-streams
0,auto`` and ``--round-ms 0,5`` run each configuration with and without the stream bank's
warm-up before listening and with the hub's rounds at least 5 ms apart: A/B in one run.
``--mps`` runs the whole benchmark under NVIDIA's Multi-Process Service (its control daemon
started here, with its own pipe and log folders, and stopped at the end), so that the server
processes' kernels share the GPU at once instead of time-slicing between CUDA contexts.

Usage: python benchmarks/bench_service.py [--model regression] [--streams 1,4,16,64]
       [--seconds 6] [--chunk-ms 40] [--client-procs 2] [--device cpu|cuda]
       [--processes 1,4] [--warm-streams 0,auto] [--round-ms 0,5] [--mps] [--profile]
       [--out res.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RATE = 16000


def speech(seconds: float) -> np.ndarray:
    """Real speech (``bench_stream.speech``: the repo's sample, looped) as int16 at 16 kHz."""
    from bench_stream import speech as float_speech

    return (np.clip(float_speech(seconds), -1, 1) * 32767).astype("<i2")


# ----------------------------------------------------------------------------- clients


async def _one_stream(port: int, pcm: np.ndarray, chunk: int, start: float, fps: float,
                      lookahead: int) -> dict[str, Any]:  # fmt: skip
    import grpc

    from a2x_core.service import nim_messages as m

    # a connection of its own, as a separate NIM client has: grpc shares one connection
    # between the channels of a process otherwise (its global subchannel pool), which put all
    # of a client process's streams on one server process of a --processes group
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.stream_stream("/" + m.SERVICE_NAME + "/" + m.METHOD_NAME,
                                     request_serializer=m.AudioStream.SerializeToString,
                                     response_deserializer=m.AnimationDataStream.FromString)  # fmt: skip
        stream = call()
        header = m.AudioStream()
        audio = header.audio_stream_header.audio_header
        audio.channel_count, audio.samples_per_second, audio.bits_per_sample = 1, RATE, 16
        await asyncio.sleep(max(0.0, start - time.time()))
        await stream.write(header)
        t0 = time.time()
        chunk_s = chunk / RATE

        sent: list[float] = []  # when each chunk (and last, the end of audio) went out

        async def write() -> None:
            for j, first in enumerate(range(0, len(pcm), chunk)):
                await asyncio.sleep(max(0.0, t0 + (j + 1) * chunk_s - time.time()))
                message = m.AudioStream()
                message.audio_with_emotion.audio_buffer = pcm[first:first + chunk].tobytes()
                await stream.write(message)
                sent.append(time.time())
            await stream.write(m.AudioStream(end_of_audio=m.AudioStream.EndOfAudio()))
            sent.append(time.time())
            await stream.done_writing()

        writer = asyncio.create_task(write())
        times, latencies, received, delays = [], [], [], []
        tail = []  # per frame: whether it came after the end of audio was sent (the close's)
        code = None
        async for reply in stream:
            now = time.time()
            if reply.HasField("animation_data"):
                for frame in reply.animation_data.skel_animation.blend_shape_weights:
                    times.append(frame.time_code)
                    latencies.append(now - (t0 + frame.time_code))
                    received.append(now)
                    # the message that completed this frame's window: its server-side delay
                    need = int(round(frame.time_code * fps)) * RATE // int(fps) + lookahead
                    j = min(max(-(-need // chunk) - 1, 0), len(sent) - 1)
                    if j >= 0:
                        delays.append(now - sent[j])
                    tail.append(writer.done())
            elif reply.HasField("status"):
                code = reply.status.code
        await writer
    first = received[0] - (t0 + chunk_s) if received else float("nan")
    reordered = int(np.sum(np.diff(times) <= 0)) if len(times) > 1 else 0
    # how late the client's own loop sent each chunk (its load: it delays the receipts too)
    late = [at - (t0 + (j + 1) * chunk_s) for j, at in enumerate(sent[:-1])]
    return {"frames": len(times), "first": first, "latencies": latencies, "delays": delays,
            "tail": tail, "late": late, "reordered": reordered, "ok": code == 0}  # fmt: skip


def client_process(port: int, streams: int, seconds: float, chunk: int, start: float,
                   stagger_s: float, fps: float, offset: int, lookahead: int,
                   out: Any) -> None:  # fmt: skip
    pcm = speech(seconds)

    async def run() -> list[dict[str, Any]]:
        tasks = [_one_stream(port, np.roll(pcm, 997 * (offset + k)), chunk,
                             start + stagger_s * ((offset + k) * 0.618 % 1.0), fps, lookahead)
                 for k in range(streams)]  # fmt: skip
        return await asyncio.gather(*tasks, return_exceptions=True)

    cpu = time.process_time()
    try:
        results = asyncio.run(run())
    except BaseException as error:  # the parent must hear of it, not wait for a timeout
        out.put(([{"error": repr(error)}] * streams, 0.0))
        raise
    out.put(([r if isinstance(r, dict) else {"error": repr(r)} for r in results],
             time.process_time() - cpu))  # fmt: skip


def upload_process(port: int, uploads: int, wav: bytes, start: float, out: Any) -> None:
    """``uploads`` concurrent POST /v1/animate (format npz) of one clip; each one's latency."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def one(_: int) -> dict[str, Any]:
        with httpx.Client(timeout=600) as client:
            time.sleep(max(0.0, start - time.time()))
            began = time.time()
            answer = client.post(f"http://127.0.0.1:{port}/v1/animate?format=npz", content=wav)
            return {"latency": time.time() - began, "ok": answer.status_code == 200,
                    "code": answer.status_code, "bytes": len(answer.content)}  # fmt: skip

    try:
        with ThreadPoolExecutor(uploads) as pool:
            out.put(list(pool.map(one, range(uploads))))
    except BaseException as error:
        out.put([{"error": repr(error)}] * uploads)
        raise


def upload_trial(port: int, n: int, args: argparse.Namespace, wav: bytes) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = min(args.client_procs, n)
    start = time.time() + 3.0
    shares = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    workers = [ctx.Process(target=upload_process, args=(port, share, wav, start, queue))
               for share in shares]  # fmt: skip
    for worker in workers:
        worker.start()
    results: list[dict[str, Any]] = []
    for _ in workers:
        results += queue.get(timeout=600)
    wall = time.time() - start
    for worker in workers:
        worker.join(30)
    latencies = [r["latency"] for r in results if r.get("ok")]
    return {"n": n, "p50": np.percentile(latencies, 50) if latencies else float("nan"),
            "p99": np.percentile(latencies, 99) if latencies else float("nan"),
            "per_s": len(latencies) / wall, "failed": n - len(latencies)}  # fmt: skip


# ----------------------------------------------------------------------------- profile


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, by name (Python's thread
    names, else the kernel's: grpc's own threads), summed per name; Linux only."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        name = names.get(int(task.name), comm)
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


class StackSampler:
    """Where the server's threads spend their time: every ``interval`` s, the Python stack of
    each named thread (``sys._current_frames``), counted per function inclusively (on the stack)
    and exclusively (the innermost frame). Works on threads that do not cooperate (the hub's
    worker, grpc.aio's loop) at ~2 % overhead; C time (grpc core, torch, protobuf) counts for
    the Python frame that called it."""

    def __init__(self, names: tuple[str, ...], interval: float = 0.002) -> None:
        import collections
        import threading

        self.names, self.interval = names, interval
        self.inclusive: dict[str, Any] = {n: collections.Counter() for n in names}
        self.exclusive: dict[str, Any] = {n: collections.Counter() for n in names}
        self.samples = dict.fromkeys(names, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="a2x-bench-sampler", daemon=True)

    def __enter__(self) -> StackSampler:
        self._cpu_before = thread_cpu()
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        after = thread_cpu()
        self.cpu = {k: v - self._cpu_before.get(k, 0.0) for k, v in after.items()}

    def _run(self) -> None:
        import threading

        while not self._stop.wait(self.interval):
            ids = {t.ident: t.name for t in threading.enumerate() if t.name in self.names}
            for ident, frame in sys._current_frames().items():
                name = ids.get(ident)
                if name is None:
                    continue
                self.samples[name] += 1
                seen = set()
                leaf = True
                while frame is not None:
                    code = frame.f_code
                    key = f"{Path(code.co_filename).name}:{code.co_name}"
                    if leaf:
                        self.exclusive[name][key] += 1
                        leaf = False
                    if key not in seen:
                        self.inclusive[name][key] += 1
                        seen.add(key)
                    frame = frame.f_back

    def report(self, top: int = 25) -> str:
        lines = ["CPU seconds per thread of the server process during the trial (/proc): " +
                 ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.cpu.items(), key=lambda kv: -kv[1])
                           if v >= 0.01)]
        for name in self.names:
            total = max(self.samples[name], 1)
            lines.append(f"## thread {name}: {self.samples[name]} samples")
            lines.append("inclusive %  | exclusive % | function")
            for key, count in self.inclusive[name].most_common(top):
                lines.append(f"{100 * count / total:7.1f} | {100 * self.exclusive[name][key] / total:7.1f}"
                             f" | {key}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- trials


def trial(port: int, n: int, args: argparse.Namespace, expected: int,
          lookahead: int) -> dict[str, Any]:  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = min(args.client_procs, n)
    start = time.time() + 3.0 + 0.02 * n  # every client process connected before the start
    shares = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    workers = []
    offset = 0
    for share in shares:
        worker = ctx.Process(target=client_process, args=(port, share, args.seconds, args.chunk,
                                                          start, args.stagger_ms / 1e3, args.fps, offset, lookahead,
                                                          queue))  # fmt: skip
        worker.start()
        workers.append(worker)
        offset += share
    results: list[dict[str, Any]] = []
    client_cpu = 0.0
    host_before = host_cpu()
    for _ in workers:
        got, cpu = queue.get(timeout=args.seconds * 4 + 120)
        results += got
        client_cpu += cpu
    wall = time.time() - start
    host_busy = host_cpu_busy(host_before, host_cpu())
    for worker in workers:
        worker.join(30)
    errors = [r["error"] for r in results if "error" in r]
    good = [r for r in results if "error" not in r]
    latencies = [v for r in good for v in r["latencies"]]
    delays = [v for r in good for v in r["delays"]]
    late = [v for r in good for v in r["late"]]
    # the p99 split: frames sent while the audio streams, and the tails (after end of audio)
    split = {flag: [v for r in good for v, t in zip(r["delays"], r["tail"], strict=True)
                    if t == flag] for flag in (False, True)}  # fmt: skip
    p99 = {flag: np.percentile(v, 99) * 1e3 if v else float("nan") for flag, v in split.items()}
    firsts = [r["first"] for r in good]
    frames = sum(r["frames"] for r in good)
    return {
        "client_cpu_ms": client_cpu * 1e3 / max(frames, 1), "host_busy": host_busy,
        "late_p50": np.percentile(late, 50) * 1e3 if late else float("nan"),
        "late_p99": np.percentile(late, 99) * 1e3 if late else float("nan"),
        "window": (start, time.time()),
        "delay_p99_streaming": p99[False], "delay_p99_tail": p99[True],
        "tail_share": len(split[True]) / max(len(delays), 1),
        "streams": n, "first_p50": np.percentile(firsts, 50) * 1e3 if firsts else float("nan"),
        "first_p99": np.percentile(firsts, 99) * 1e3 if firsts else float("nan"),
        "lat_p50": np.percentile(latencies, 50) * 1e3 if latencies else float("nan"),
        "lat_p99": np.percentile(latencies, 99) * 1e3 if latencies else float("nan"),
        "delay_p50": np.percentile(delays, 50) * 1e3 if delays else float("nan"),
        "delay_p99": np.percentile(delays, 99) * 1e3 if delays else float("nan"),
        "fps_total": frames / max(wall, 1e-9), "lost": expected * n - frames,
        "reordered": sum(r["reordered"] for r in good),
        "failed": len(errors) + sum(not r["ok"] for r in good), "errors": errors[:3],
    }  # fmt: skip


@contextlib.contextmanager
def mps_daemon(enabled: bool) -> Any:
    """NVIDIA's MPS control daemon for the duration of the run (CUDA contexts made afterwards in
    this process and its children become MPS clients); yields its log folder, or None."""
    if not enabled:
        yield None
        return
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        raise SystemExit("--mps: nvidia-cuda-mps-control is not on PATH (MPS needs NVIDIA's "
                         "driver utilities); run without --mps")  # fmt: skip
    pipe = tempfile.mkdtemp(prefix="a2x-mps-pipe-")
    logs = tempfile.mkdtemp(prefix="a2x-mps-log-")
    os.environ.update(CUDA_MPS_PIPE_DIRECTORY=pipe, CUDA_MPS_LOG_DIRECTORY=logs)
    subprocess.run([control, "-d"], check=True, timeout=30)
    try:
        yield Path(logs)
    finally:
        for name in ("control.log", "server.log"):
            log = Path(logs) / name
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-6:]
                print(f"MPS {name} (last lines):\n  " + "\n  ".join(tail), flush=True)
        # not waited for: the daemon quits once its last client (this process) has exited
        quitter = subprocess.Popen([control], stdin=subprocess.PIPE, start_new_session=True)
        quitter.stdin.write(b"quit\n")
        quitter.stdin.close()


def load(args: argparse.Namespace) -> Any:
    from a2x_core.models.registry import load_model

    if args.model == "regression":
        from bench_regression import ensure_folder

        model_json = ensure_folder(args.cache / "regression")
    elif args.model == "small":  # the tests' tiny folder: what the service itself costs
        from tests.a2f_folders import make_regression_folder

        model_json = make_regression_folder(args.cache / "small", seed=1).model_json
    else:
        model_json = args.model
    if args.device == "cpu" or args.model == "default":
        model = load_model(model_json, backend="onnxruntime" if args.model != "default" else "auto",
                           threads=args.threads)  # fmt: skip
        if args.postprocess:  # torch stages on the CPU: the hub's stream-bank path
            model.postprocess = args.postprocess
        return model
    return load_model(model_json, backend="torch", device=args.device, precision=args.precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="regression")
    parser.add_argument("--streams", default="1,4,16,64", help="gRPC stream counts ('' = none)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--chunk-ms", type=float, default=40.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--postprocess", default="", help="cpu: torch stages on the CPU, so that "
                        "plain streams run in the stream bank as on a GPU")  # fmt: skip
    parser.add_argument("--cache", type=Path, default=Path("/tmp/a2x_bench_stream"))
    parser.add_argument("--stop-when-failing", action="store_true",
                        help="stop after the first N whose p99 latency exceeds look-ahead + 50 ms")
    parser.add_argument("--uploads", default="", help="also N concurrent HTTP uploads of a "
                        "--seconds clip to /v1/animate, e.g. 1,4,16,64")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="sample the server's I/O and "
                        "model threads during the gRPC trials; print where their time goes")
    parser.add_argument("--processes", default="1", help="server processes, a list: each value "
                        "runs every --streams N (1: in this process; more: a2x serve "
                        "--processes' ServerGroup on one port), e.g. 1,4,8")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=8, help="streams per server process in a "
                        "2 s warm-up trial before each configuration (0: none)")  # fmt: skip
    parser.add_argument("--warm-streams", default="auto", help="a list: each value runs "
                        "every configuration with each process's stream bank warmed up for "
                        "that many streams before it listens (0: none, the old baseline; auto: "
                        "as a2x serve, twice a process's share of the streams on CUDA), e.g. "
                        "0,auto")  # fmt: skip
    parser.add_argument("--round-ms", default="0", help="a list: the hubs' shortest time "
                        "between two rounds (ModelHub.round_interval_s), e.g. 0,5")
    parser.add_argument("--switch-interval-ms", type=float, default=0.5, help="the servers' GIL "
                        "switch interval (ServeConfig.switch_interval_s; 0: Python's 5 ms)")
    parser.add_argument("--stagger-ms", type=float, default=None, help="the streams' starts "
                        "spread over this long (default: one chunk, the worst case: every "
                        "stream ends within one chunk too)")  # fmt: skip
    parser.add_argument("--mps", action="store_true", help="run under NVIDIA's Multi-Process "
                        "Service (its daemon started and stopped here)")  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with mps_daemon(args.mps):
        run(args)


def run(args: argparse.Namespace) -> None:
    """Every configuration the arguments name, the table printed and written to ``--out``."""
    args.switch = args.switch_interval_ms / 1e3 if args.switch_interval_ms > 0 else None
    args.processes = [int(p) for p in args.processes.split(",") if p]
    args.warm_streams = [w.strip() for w in args.warm_streams.split(",") if w.strip()]
    args.round_ms = [float(r) for r in args.round_ms.split(",") if r.strip()]
    args.chunk = int(round(args.chunk_ms * RATE / 1000))
    args.stagger_ms = args.chunk_ms if args.stagger_ms is None else args.stagger_ms

    from a2x_core.options import InferenceOptions

    model = load(args)
    counts = [int(n) for n in args.streams.split(",") if n]
    uploads = [int(n) for n in args.uploads.split(",") if n]
    args.max_streams = max(counts + uploads + [1]) + 8 * max(args.processes) + 8
    pcm = speech(args.seconds)
    reference = model.open_stream(InferenceOptions().with_changes(fps=int(args.fps)))
    expected = len(reference.push(pcm, RATE)) + len(reference.close())
    lookahead = int(getattr(reference, "lookahead_samples", 0))
    lookahead_ms = lookahead / RATE * 1e3
    lines = [
        f"`bench_service.py --model {args.model} --device {args.device} --precision "
        f"{args.precision} --seconds {args.seconds:g} --chunk-ms {args.chunk_ms:g} --fps "
        f"{args.fps:g} --client-procs {args.client_procs} --switch-interval-ms "
        f"{args.switch_interval_ms:g} --stagger-ms {args.stagger_ms:g}{' --mps' if args.mps else ''}` "
        f"on {platform.machine()} "
        f"({os.cpu_count()} cores), model look-ahead {lookahead_ms:.0f} ms, {expected} frames "
        "per stream; server / client CPU = CPU time of the server process(es) / the client "
        "processes per frame delivered; host busy = all cores' busy share during the trial; "
        "late = how late the clients sent their chunks; queue / round / mailbox = the hub's "
        "per-round command wait, round time and the loop's hand-over lag (every process)",
        "",
        "| processes | warm-up streams | round ms | streams | first frame p50 / p99 (ms) | "
        "frame latency p50 / p99 (ms) | server delay p50 / p99 (ms) | "
        "server delay p99 streaming / tail (tail share) | frames/s | "
        "server CPU (ms/frame) | client CPU (ms/frame) | host busy (%) | "
        "client late p50 / p99 (ms) | hub queue p50 / p99 (ms) | hub round p50 / p99 (ms) | "
        "mailbox p50 / p99 (ms) | lost / reordered / failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    try:
        for processes in args.processes:
            for warm in args.warm_streams:  # interleaved: a baseline beside each variant
                for round_ms in args.round_ms:
                    serve_trials(model, processes, warm, round_ms, counts, args, expected,
                                 lookahead, lines)  # fmt: skip
        if uploads:
            upload_trials(model, uploads, pcm, args, lines)
    finally:
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")


def group_server(args: argparse.Namespace, slots: Any = None) -> Any:
    """One process of a ``--processes`` group (``ServerGroup``'s build): the model loaded as
    ``load`` does, its hub, a gRPC server on the group's port (SO_REUSEPORT), its stage log."""
    from a2x_core.service.hub import Limits, ModelHub
    from a2x_core.service.server import ServeConfig, ServiceServer

    hub = ModelHub(load(args), fps=int(args.fps), limits=Limits(max_streams=args.max_streams),
                   shared_slots=slots, round_interval_s=args.round_now / 1e3)  # fmt: skip
    server = ServiceServer(hub, ServeConfig(grpc_port=args.port, http_port=None, reuse_port=True,
                                            serving=False, switch_interval_s=args.switch,
                                            warm_streams=args.warm_now))  # fmt: skip
    StageLog(server, args.stages)
    return server


def process_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system, all threads) the processes ``pids`` have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def host_cpu() -> tuple[int, int]:
    """The machine's CPU ticks so far, (busy, total), over all cores (/proc/stat; Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def host_cpu_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Busy fraction of all the machine's cores between two :func:`host_cpu` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else float("nan")


class StageLog:
    """A server process's stage timings for the benchmark: every 0.25 s a thread drains its
    hub's ``stage_times`` (queue wait, round) and its loop's mailbox lags into
    ``folder/<pid>.txt`` ("time stage seconds" lines), so that the parent can pick each
    trial's window from every process of a group."""

    def __init__(self, server: Any, folder: Path) -> None:
        import threading

        self.server, self.path = server, folder / f"{os.getpid()}.txt"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="a2x-bench-stages", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from a2x_core.service.hub import _MAILBOXES

        with self.path.open("a") as out:
            while not self._stop.wait(0.25):
                now = time.time()
                sources = dict(self.server.hub.stage_times)
                loop = self.server._loop
                box = _MAILBOXES.get(loop) if loop is not None else None
                if box is not None:
                    sources["mailbox"] = box.lags
                lines = []
                for stage, values in sources.items():
                    while values:
                        lines.append(f"{now:.3f} {stage} {values.popleft():.6f}\n")
                out.writelines(lines)
                out.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def stage_percentiles(folder: Path, window: tuple[float, float]) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) of each stage over every process's samples drained in ``window``."""
    values: dict[str, list[float]] = {}
    for path in folder.glob("*.txt"):
        for line in path.read_text().splitlines():
            at, stage, seconds = line.split()
            if window[0] <= float(at) <= window[1] + 0.5:
                values.setdefault(stage, []).append(float(seconds))
    return {stage: (np.percentile(v, 50) * 1e3, np.percentile(v, 99) * 1e3)
            for stage, v in values.items()}  # fmt: skip


def serve_trials(model: Any, processes: int, warm: str, round_ms: float, counts: list[int],
                 args: argparse.Namespace, expected: int, lookahead: int,
                 lines: list[str]) -> None:  # fmt: skip
    """Every N of ``counts`` against ``processes`` server processes (1: the server in this
    process; more: ``ServerGroup`` children on one port), each process's stream bank warmed up
    before it listens as ``warm`` says (0: not; "auto": as ``a2x serve`` does), its hub's
    rounds at least ``round_ms`` apart, then a short warm-up trial."""
    import copy
    import socket

    from a2x_core.service.hub import Limits, ModelHub
    from a2x_core.service.server import ServeConfig, ServiceServer, warm_streams_for

    args.stages = Path(tempfile.mkdtemp(prefix="a2x-bench-stages-"))
    hub = server = group = log = None
    started = time.time()
    args.round_now = round_ms
    if processes == 1:
        hub = ModelHub(model, fps=int(args.fps), limits=Limits(max_streams=args.max_streams),
                       round_interval_s=round_ms / 1e3)  # fmt: skip
        args.warm_now = warm_streams_for(hub, args.max_streams) if warm == "auto" else int(warm)
        server = ServiceServer(hub, ServeConfig(grpc_port=0, http_port=None,
                                                switch_interval_s=args.switch,
                                                warm_streams=args.warm_now))  # fmt: skip
        log = StageLog(server, args.stages)
        server.start()
        port, pids = server.grpc_port, [os.getpid()]
    else:
        from a2x_core.service.group import ServerGroup

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args.port = probe.getsockname()[1]
        # the CLI's rule (warm_streams_for) without a hub here: the children's banks are CUDA
        # when the benchmark runs on CUDA
        share = -(-args.max_streams // processes)
        args.warm_now = (min(args.max_streams, 2 * share) if args.device.startswith("cuda")
                         else 0) if warm == "auto" else int(warm)  # fmt: skip
        group = ServerGroup(processes, group_server, (args,), "127.0.0.1",
                            {"--grpc-port": args.port}).start()  # fmt: skip
        port, pids = args.port, group.pids
    print(f"{processes} process(es), warm-up for {args.warm_now} streams each, rounds >= "
          f"{round_ms:g} ms apart: serving after "
          f"{time.time() - started:.1f} s", flush=True)  # fmt: skip
    try:
        if args.warmup:  # every process's engine and bank warmed up (not reported)
            short = copy.copy(args)
            short.seconds = 2.0
            trial(port, args.warmup * processes, short, 0, lookahead)
        sampler = StackSampler(("a2x-serve-io", "a2x-serve-model")) \
            if args.profile and processes == 1 else None  # fmt: skip
        for n in counts:
            rounds_before = hub.rounds if hub is not None else 0
            bank_before = hub.bank_seconds if hub is not None else 0.0
            cpu_before = process_cpu(pids)
            if sampler is not None:
                with sampler:
                    result = trial(port, n, args, expected, lookahead)
                print(sampler.report(), flush=True)
                sampler = StackSampler(sampler.names)
            else:
                result = trial(port, n, args, expected, lookahead)
            frames = expected * n - result["lost"]
            cpu_ms = (process_cpu(pids) - cpu_before) * 1e3 / max(frames, 1)
            stages = stage_percentiles(args.stages, result["window"])
            nan = (float("nan"), float("nan"))
            line = (f"| {processes} | {args.warm_now} | {round_ms:g} | {n} | "
                    f"{result['first_p50']:.0f} / {result['first_p99']:.0f} | "
                    f"{result['lat_p50']:.0f} / {result['lat_p99']:.0f} | "
                    f"{result['delay_p50']:.1f} / {result['delay_p99']:.1f} | "
                    f"{result['delay_p99_streaming']:.1f} / {result['delay_p99_tail']:.1f} "
                    f"({100 * result['tail_share']:.0f} %) | "
                    f"{result['fps_total']:.0f} | {cpu_ms:.2f} | {result['client_cpu_ms']:.2f} | "
                    f"{100 * result['host_busy']:.0f} | "
                    f"{result['late_p50']:.1f} / {result['late_p99']:.1f} | " +
                    " | ".join("{:.1f} / {:.1f}".format(*stages.get(k, nan))
                               for k in ("queue", "round", "mailbox")) +
                    f" | {result['lost']} / {result['reordered']} / {result['failed']} |")  # fmt: skip
            lines.append(line)
            if args.out:  # every row survives a later failure or time-out
                args.out.write_text("\n".join(lines) + "\n")
            rounds = ""
            if hub is not None:  # bank iterations and their mean time inside the server
                iterations = hub.rounds - rounds_before
                busy = hub.bank_seconds - bank_before
                rounds = (f"(hub rounds {iterations}, bank {busy:.1f} s = "
                          f"{1e3 * busy / max(iterations, 1):.1f} ms per round)")  # fmt: skip
            print(line, rounds, json.dumps(result["errors"]) if result["errors"] else "",
                  flush=True)  # fmt: skip
            if args.stop_when_failing and result["delay_p99"] > 50:
                break
    finally:
        if log is not None:
            log.stop()
        if server is not None:
            server.stop(grace=2.0)
        if group is not None:
            group.stop(grace=2.0)
        shutil.rmtree(args.stages, ignore_errors=True)


def upload_trials(model: Any, uploads: list[int], pcm: np.ndarray, args: argparse.Namespace,
                  lines: list[str]) -> None:  # fmt: skip
    """N concurrent HTTP uploads against one in-process server."""
    import io

    import soundfile

    from a2x_core.service.hub import Limits, ModelHub
    from a2x_core.service.server import ServeConfig, ServiceServer

    hub = ModelHub(model, fps=int(args.fps), limits=Limits(max_streams=args.max_streams))
    server = ServiceServer(hub, ServeConfig(grpc_port=None, http_port=0)).start()
    try:
        buffer = io.BytesIO()
        soundfile.write(buffer, pcm, RATE, format="WAV", subtype="PCM_16")
        lines += ["", f"HTTP uploads: N concurrent `POST /v1/animate?format=npz` of a "
                  f"{args.seconds:g} s clip (the server animates one upload at a time)", "",
                  "| uploads | latency p50 / p99 (s) | uploads/s | failed |",
                  "|---|---|---|---|"]  # fmt: skip
        print("\n".join(lines[-5:]), flush=True)
        for n in uploads:
            result = upload_trial(server.http_port, n, args, buffer.getvalue())
            lines.append(f"| {n} | {result['p50']:.2f} / {result['p99']:.2f} | "
                         f"{result['per_s']:.2f} | {result['failed']} |")  # fmt: skip
            print(lines[-1], flush=True)
    finally:
        server.stop(grace=2.0)


if __name__ == "__main__":
    main()
