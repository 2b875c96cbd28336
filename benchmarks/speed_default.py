"""Speed of the default model, end to end: wall time of ``DefaultLipSyncModel().animate`` per clip.

Usage::

    .venv/bin/python benchmarks/speed_default.py [--data ../shared/data] [--modes default fast]
        [--threads N]

Each mode runs in a fresh interpreter, so the first clip pays for everything a user's first
call pays for (decoder start, worker processes). Audio decoding is not timed (it is the same
for every model). Prints one row per mode: total audio seconds / total wall seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def clips(data: Path) -> list[Path]:
    """speech_en (transcript list order, no .raw duplicates) and the 33 s MediaPipe clip."""
    speech = data / "speech_en"
    with open(speech / "transcripts.tsv", newline="", encoding="utf-8") as handle:
        files = [speech / r["file"] for r in csv.DictReader(handle, delimiter="\t")]
    files = [f for f in files if f.suffix != ".raw"]
    return files + [data / "arkit_pairs" / "nn_training_mediapipe" / "extracted_audio.wav"]


def run_mode(mode: str, data: Path, threads: int | None = None) -> dict:
    """Time every clip in this process (called in a fresh interpreter per mode)."""
    from a2x_core.audio.decode import decode_audio
    from a2x_core.lipsync.model import DefaultLipSyncModel
    from a2x_core.options import InferenceOptions

    options = InferenceOptions(fast=mode == "fast", threads=threads)
    rows = []
    for path in clips(data):
        audio = decode_audio(path)
        start = time.perf_counter()
        DefaultLipSyncModel().animate([audio], options)
        rows.append((path.name, audio.duration_s, time.perf_counter() - start))
    from a2x_core.lipsync import parallel

    parallel.shutdown()  # so that the workers' CPU time is counted below
    cpu = sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return {"mode": mode, "clips": rows, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--modes", nargs="+", default=["default", "fast"], choices=["default", "fast"]
    )
    parser.add_argument("--threads", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--verbose", action="store_true", help="print every clip")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_mode(args.child, args.data, args.threads)))
        return 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cores: {os.cpu_count()}"
    )
    print("| mode | clips | audio (s) | wall (s) | x real time | first clip wall (s) | CPU (s) |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes:
        out = subprocess.run(
            [sys.executable, __file__, "--data", str(args.data), "--child", mode]
            + (["--threads", str(args.threads)] if args.threads else []),
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        report = json.loads(out.stdout.strip().splitlines()[-1])
        audio = sum(r[1] for r in report["clips"])
        wall = sum(r[2] for r in report["clips"])
        first = report["clips"][0][2]
        print(
            f"| {mode} | {len(report['clips'])} | {audio:.1f} | {wall:.2f} | {audio / wall:.1f} "
            f"| {first:.2f} | {report['cpu_s']:.1f} |"
        )
        load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
        print(f"load average after {mode}: {load[0]:.2f}")
        if args.verbose:
            for name, seconds, took in report["clips"]:
                print(f"|  {name} | | {seconds:.1f} | {took:.2f} | {seconds / took:.1f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
