"""``a2x serve`` under load (issue 14 point 4): N concurrent NIM gRPC streams on loopback.

The server (the real ``ServiceServer``: grpc.aio + the model hub's one stream owner) runs in
this process; the clients run in ``--client-procs`` other processes (so that the load generator
does not share the server's interpreter). Every client stream does what a live NIM client does:
header, then ``--chunk-ms`` of real speech every ``--chunk-ms`` at real-time pace (chunk ``j``
is sent when its audio has been "recorded", at ``t0 + (j + 1) * chunk``), then end of audio;
streams start staggered over one chunk. Per N it reports:

- first-frame latency: first frame received - first audio sent (p50, p99 over streams);
- frame latency: frame received - the moment its audio time was recorded (``t0 + k / fps``), so
  it includes the model's look-ahead (regression v2.3: 260 ms), the chunking and all compute
  (p50, p99 over all frames of all streams);
- server delay: frame received - the moment the message that completed its window (its target
  sample + the look-ahead) was sent: what the service adds to the model's look-ahead (the
  issue's target on one H200: p99 <= 50 ms with >= 500 streams);
- frames/s received in total; lost (expected - received) and reordered (time codes not strictly
  increasing) frames, and streams that did not end with Status SUCCESS.

Models: ``regression`` (Mark-sized folder around the ~18.3 M-parameter network of
``a2f_network.py``, random weights, built once into ``--cache``; ``--device cuda`` runs it with
the torch engine), ``small`` (the tests' tiny regression folder: the cost of the service
itself), ``default`` (the embedded model), or a model.json path.

Usage: python benchmarks/bench_service.py [--model regression] [--streams 1,4,16,64]
       [--seconds 6] [--chunk-ms 40] [--client-procs 2] [--device cpu|cuda] [--out res.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
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

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
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
            elif reply.HasField("status"):
                code = reply.status.code
        await writer
    first = received[0] - (t0 + chunk_s) if received else float("nan")
    reordered = int(np.sum(np.diff(times) <= 0)) if len(times) > 1 else 0
    return {"frames": len(times), "first": first, "latencies": latencies, "delays": delays,
            "reordered": reordered, "ok": code == 0}  # fmt: skip


def client_process(port: int, streams: int, seconds: float, chunk: int, start: float,
                   fps: float, offset: int, lookahead: int, out: Any) -> None:  # fmt: skip
    pcm = speech(seconds)
    chunk_s = chunk / RATE

    async def run() -> list[dict[str, Any]]:
        tasks = [_one_stream(port, np.roll(pcm, 997 * (offset + k)), chunk,
                             start + chunk_s * ((offset + k) * 0.618 % 1.0), fps, lookahead)
                 for k in range(streams)]  # fmt: skip
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(run())
    except BaseException as error:  # the parent must hear of it, not wait for a timeout
        out.put([{"error": repr(error)}] * streams)
        raise
    out.put([r if isinstance(r, dict) else {"error": repr(r)} for r in results])


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
                                                          start, args.fps, offset, lookahead,
                                                          queue))  # fmt: skip
        worker.start()
        workers.append(worker)
        offset += share
    results: list[dict[str, Any]] = []
    for _ in workers:
        results += queue.get(timeout=args.seconds * 4 + 120)
    wall = time.time() - start
    for worker in workers:
        worker.join(30)
    errors = [r["error"] for r in results if "error" in r]
    good = [r for r in results if "error" not in r]
    latencies = [v for r in good for v in r["latencies"]]
    delays = [v for r in good for v in r["delays"]]
    firsts = [r["first"] for r in good]
    frames = sum(r["frames"] for r in good)
    return {
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


def load(args: argparse.Namespace) -> Any:
    from a2x_core.models import load_model

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
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.chunk = int(round(args.chunk_ms * RATE / 1000))

    from a2x_core.service.hub import Limits, ModelHub
    from a2x_core.service.server import ServeConfig, ServiceServer

    model = load(args)
    counts = [int(n) for n in args.streams.split(",") if n]
    uploads = [int(n) for n in args.uploads.split(",") if n]
    hub = ModelHub(model, fps=int(args.fps),
                   limits=Limits(max_streams=max(counts + uploads) + 8))  # fmt: skip
    server = ServiceServer(hub, ServeConfig(grpc_port=0, http_port=0 if uploads else None)).start()
    pcm = speech(args.seconds)
    reference = model.open_stream(hub.base_options)
    expected = len(reference.push(pcm, RATE)) + len(reference.close())
    lookahead = int(getattr(reference, "lookahead_samples", 0))
    lookahead_ms = lookahead / RATE * 1e3
    lines = [
        f"`bench_service.py --model {args.model} --device {args.device} --seconds {args.seconds:g} "
        f"--chunk-ms {args.chunk_ms:g} --fps {args.fps:g} --client-procs {args.client_procs}` on "
        f"{platform.machine()} ({os.cpu_count()} cores), model look-ahead {lookahead_ms:.0f} ms, "
        f"{expected} frames per stream",
        "",
        "| streams | first frame p50 / p99 (ms) | frame latency p50 / p99 (ms) | server delay "
        "p50 / p99 (ms) | frames/s | lost | reordered | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    try:
        for n in counts:
            rounds_before = hub.rounds
            result = trial(server.grpc_port, n, args, expected, lookahead)
            line = (f"| {n} | {result['first_p50']:.0f} / {result['first_p99']:.0f} | "
                    f"{result['lat_p50']:.0f} / {result['lat_p99']:.0f} | "
                    f"{result['delay_p50']:.1f} / {result['delay_p99']:.1f} | "
                    f"{result['fps_total']:.0f} | {result['lost']} | {result['reordered']} | "
                    f"{result['failed']} |")  # fmt: skip
            lines.append(line)
            print(line, f"(hub rounds {hub.rounds - rounds_before})",
                  json.dumps(result["errors"]) if result["errors"] else "", flush=True)
            if args.stop_when_failing and result["delay_p99"] > 50:
                break
        if uploads:
            import io

            import soundfile

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
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
