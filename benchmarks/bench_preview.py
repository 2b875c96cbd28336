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

``--baseline REV`` renders with the a2x_core of git revision ``REV`` as well (extracted to a
temporary folder), old and new alternately, each in a fresh process, and prints the ratio of
their medians: the only fair comparison on a machine whose load changes from minute to minute.

``--split`` also times the two halves apart, once each: drawing every frame (no encoder) and
encoding those frames (no drawing; x264 on one thread, CPU time). They run on two threads in a
real render (PyAV releases the GIL while x264 works), so on two free cores the render's speed
is bounded by the slower half: the line prints that bound.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Frames kept for --split's encoding half (720p frames are 1.4 MB each).
MAX_SPLIT_FRAMES = 300
#: Where ``a2x_core`` is imported from: this checkout, or (for a --baseline run, in a child
#: process) an older revision's copy.
SOURCE = Path(os.environ.get("A2X_BENCH_SOURCE", str(REPO)))
sys.path.insert(0, str(SOURCE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=str(REPO / "samples" / "jfk.flac"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--video-fps", default="30")
    parser.add_argument("--compare", action="store_true", help="two faces side by side")
    parser.add_argument("--split", action="store_true", help="also time drawing and encoding apart")
    parser.add_argument("--baseline", metavar="REV", help="also render with git revision REV's "
                        "a2x_core, alternately, and print new/old ratios")  # fmt: skip
    parser.add_argument("--child", metavar="PICKLE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args)
        return
    if args.baseline:
        compare(args)
        return

    from a2x_core.api import Animator
    from a2x_core.preview.video import write_preview

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
    if args.split:
        split(results, Fraction(args.video_fps), width, height)


def child(path: Path, args: argparse.Namespace) -> None:
    """One timed render of the pickled results, as a JSON line (the --baseline runs)."""
    import resource

    try:
        from a2x_core.preview.video import write_preview
    except ImportError:  # a --baseline revision from before the stage packages
        from a2x_core.preview import write_preview  # type: ignore[no-redef]

    results = pickle.loads(path.read_bytes())
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        write_preview(Path(folder) / "warm.mp4", results, size=(320, 240))  # imports, fonts
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu, wall = usage.ru_utime + usage.ru_stime, time.perf_counter()
        write_preview(Path(folder) / "bench.mp4", results, fps=Fraction(args.video_fps),
                      size=(width, height))  # fmt: skip
        wall = time.perf_counter() - wall
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "load": os.getloadavg()[0]}))


def compare(args: argparse.Namespace) -> None:
    """Old (``--baseline`` revision) and new renders alternately, each in its own process
    (warmed by a small render first), then the medians and their ratios."""
    from a2x_core.api import Animator

    result = Animator("default").animate(args.clip)
    results = [result, result] if args.compare else [result]
    seconds = result.duration_s
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as folder:
        old_root = Path(folder) / "old"
        old_root.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "a2x_core"],
                                 check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive, check=True)
        pickled = Path(folder) / "results.pickle"
        pickled.write_bytes(pickle.dumps(results))
        command = [sys.executable, __file__, "--child", str(pickled), "--size", args.size,
                   "--video-fps", args.video_fps]  # fmt: skip
        for run in range(args.repeat):
            for label, root in (("old", old_root), ("new", REPO)):
                environment = dict(os.environ, A2X_BENCH_SOURCE=str(root))
                line = subprocess.run(command, check=True, capture_output=True, text=True,
                                      env=environment).stdout.strip().splitlines()[-1]  # fmt: skip
                measured = json.loads(line)
                runs[label].append(measured)
                print(f"run {run + 1} {label}: {seconds / measured['wall']:.1f}x real time, "
                      f"{measured['cpu'] / seconds:.3f} CPU-s per video second, "
                      f"load {measured['load']:.1f}", flush=True)  # fmt: skip
    median = {label: {key: statistics.median(m[key] for m in found) for key in ("wall", "cpu")}
              for label, found in runs.items()}  # fmt: skip
    print(f"median old ({args.baseline}): {seconds / median['old']['wall']:.1f}x real time, "
          f"{median['old']['cpu'] / seconds:.3f} CPU-s/s; new: "
          f"{seconds / median['new']['wall']:.1f}x, {median['new']['cpu'] / seconds:.3f} CPU-s/s; "
          f"new is {median['old']['wall'] / median['new']['wall']:.2f}x as fast (wall), "
          f"{median['old']['cpu'] / median['new']['cpu']:.2f}x (CPU)")  # fmt: skip


def split(results: list, fps: Fraction, width: int, height: int) -> None:
    """Drawing alone, then x264 alone on the drawn frames (both in CPU ms per frame)."""
    import av
    import numpy as np

    from a2x_core.preview import video as preview
    from a2x_core.preview.raster import YuvImage

    first = results[0]
    frames = max(1, int(round(first.duration_s * fps)))
    times = first.start_s + np.arange(frames) / float(fps)
    panels = preview.layout(results, ["a"] * len(results), width, height)
    background = YuvImage(width, height, preview.BACKGROUND)
    for panel in panels:
        panel.face.draw_static(background)
    canvas = YuvImage(width, height)
    canvas.data[:] = background.data
    tracks = [preview._frame_weights(panel.result, times) for panel in panels]
    for panel in panels:  # the tape's chunks are drawn once per run: not per-frame work
        for t in times:
            panel.tape.window(t)
    drawn, draw_s, handoff_s = [], 0.0, 0.0
    moving = [box for panel in panels for box in (
        panel.face.eye_box, panel.face.base_box,
        (panel.tape_x, panel.tape_y, panel.tape_x + panel.tape.width,
         panel.tape_y + panel.tape.height))]  # fmt: skip
    pool = preview._FramePool(av, width, height, 10, canvas, moving)  # as a run hands frames over
    for i, t in enumerate(times[:MAX_SPLIT_FRAMES]):
        cpu = time.process_time()
        for panel, (weights, tongue) in zip(panels, tracks, strict=True):
            panel.face.draw(canvas, background, weights[i], None if tongue is None else tongue[i])
            preview._draw_tape(canvas, panel, t)
        middle = time.process_time()
        pool.next_frame(canvas)  # what a run hands to the encoder
        handoff_s += time.process_time() - middle
        draw_s += middle - cpu
        drawn.append(av.VideoFrame.from_ndarray(canvas.data, format="yuv420p"))  # kept, untimed
    frames = len(drawn)
    draw_ms = draw_s / frames * 1000
    handoff_ms = handoff_s / frames * 1000
    with tempfile.TemporaryDirectory() as folder:
        container = av.open(str(Path(folder) / "x.mp4"), "w")
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(preview.X264_OPTIONS, threads="1")
        cpu = time.process_time()
        for i, frame in enumerate(drawn):
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        encode_ms = (time.process_time() - cpu) / frames * 1000
        container.close()
    bound = 1000 / max(draw_ms + handoff_ms, encode_ms) / float(fps)
    print(f"split ({frames} frames): drawing {draw_ms:.2f} ms/frame (fresh caches, as in a "
          f"run) + hand-off to PyAV {handoff_ms:.2f}, x264 {encode_ms:.2f} ms/frame; on two free "
          f"cores <= {bound:.1f}x real time; load {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
