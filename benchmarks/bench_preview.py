"""Speed of the preview video: how many times faster than real time ``write_preview`` renders.

Usage::

    .venv/bin/python benchmarks/bench_preview.py [--clip samples/jfk.flac] [--repeat 3]
        [--size 1280x720] [--video-fps 30] [--compare]

The clip is animated once with the default model (not timed); each repeat then renders the
whole preview (drawing, H.264 + AAC encoding, muxing, the atomic write) into a temporary
folder. Prints, per repeat, the wall-clock speed (audio seconds / wall seconds) and the CPU
seconds the process spent per second of video (drawing thread + encoder threads), and the
load average, since on a shared machine the wall-clock figure says as much about the
neighbours as about the renderer. The first repeat includes matplotlib's import.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=str(REPO / "samples" / "jfk.flac"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--video-fps", default="30")
    parser.add_argument("--compare", action="store_true", help="two faces side by side")
    args = parser.parse_args()

    from a2x_core.api import Animator
    from a2x_core.preview import write_preview

    width, height = (int(v) for v in args.size.split("x"))
    result = Animator("default").animate(args.clip)
    results = [result, result] if args.compare else [result]
    print(f"clip {Path(args.clip).name}: {result.duration_s:.2f} s, {args.size} at "
          f"{args.video_fps} fps, {len(results)} face(s), {os.cpu_count()} CPUs")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.repeat):
            cpu, wall = time.process_time(), time.perf_counter()
            write_preview(Path(folder) / "bench.mp4", results, fps=Fraction(args.video_fps),
                          size=(width, height))  # fmt: skip
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            load = os.getloadavg()[0]
            print(f"run {run + 1}: {wall:.2f} s wall = {result.duration_s / wall:.1f}x real time; "
                  f"{cpu / result.duration_s:.3f} CPU-s per video second; load {load:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
