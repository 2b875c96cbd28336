"""Long input through the default model: wall time and peak memory for clips of N minutes.

Usage::

    .venv/bin/python benchmarks/long_input_default.py [--minutes 1 4 16 60] [--transcript]
        [--threads N] [--data ../shared/data] [--keep DIR]

Builds each clip by concatenating the real speech of ``speech_en`` (resampled to 16 kHz mono,
repeated until the length is reached) into a temporary WAV, then runs the CLI on it under
``/usr/bin/time -v`` (``a2x animate clip.wav -o clip.npz -q``). Reports the wall time, the
CPU time of the CLI and its workers (user + system; steadier than the wall time on a shared
machine), the peak RSS of the largest process (``time -v``) and the peak RSS of the whole process tree (the
CLI and its decoding workers, sampled from ``/proc`` every 0.2 s). ``--transcript`` passes the
concatenated transcripts too (forced alignment instead of recognition). Linux only. The clips
are deleted afterwards (``--keep DIR`` keeps them); never commit them.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RATE = 16000


def speech(data: Path) -> list[tuple[np.ndarray, str]]:
    """Every speech_en clip as 16 kHz samples, with its transcript."""
    sys.path.insert(0, str(REPO))
    from a2x_core.audio.decode import decode_audio

    folder = data / "speech_en"
    with open(folder / "transcripts.tsv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if not r["file"].endswith(".raw")]
    return [(decode_audio(folder / r["file"]).samples, r["transcript"]) for r in rows]


def build_clip(clips: list[tuple[np.ndarray, str]], minutes: float, path: Path) -> str:
    """Write ``minutes`` of concatenated speech to ``path``; returns its transcript."""
    import soundfile as sf

    need = int(minutes * 60 * RATE)
    words: list[str] = []
    with sf.SoundFile(str(path), "w", RATE, 1, "PCM_16") as out:
        written = 0
        while written < need:
            for samples, text in clips:
                piece = samples[: need - written]
                out.write(piece)
                written += len(piece)
                if len(piece) == len(samples):
                    words.append(text)
                if written >= need:
                    break
    return " ".join(words)


def _tree_rss_kib(root: int) -> int:
    """Summed VmRSS of ``root`` and all its descendants (0 for processes that are gone)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) if "VmRSS" in status else 0
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


def run(clip: Path, transcript: str | None, threads: int | None) -> dict[str, float]:
    """Animate ``clip`` with the CLI under ``/usr/bin/time -v``."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "a2x_core", "animate", str(clip),
               "-o", str(clip.with_suffix(".npz")), "-q", "--overwrite"]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    if transcript:
        transcript_file = clip.with_suffix(".txt")
        transcript_file.write_text(transcript, encoding="utf-8")
        command += ["--transcript-file", str(transcript_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    peak = [0]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"a2x failed ({process.returncode}):\n{stderr}")
    largest = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", stderr).group(1))
              for kind in ("User", "System"))  # fmt: skip
    return {"wall_s": wall, "cpu_s": cpu, "largest_mb": largest / 1024, "tree_mb": peak[0] / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", nargs="+", type=float, default=[1, 4, 16])
    parser.add_argument("--transcript", action="store_true", help="forced alignment to the text")
    parser.add_argument("--threads", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--keep", type=Path, help="write the clips here and keep them")
    args = parser.parse_args(argv)
    clips = speech(args.data)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f}; cores: {os.cpu_count()}")
    print("| audio (min) | wall (s) | x real time | CPU (s) | CPU s per audio minute | largest "
          "process peak RSS (MB) | process tree peak RSS (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="a2x-long-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for minutes in args.minutes:
            clip = folder / f"speech_{minutes:g}min.wav"
            text = build_clip(clips, minutes, clip)
            row = run(clip, text if args.transcript else None, args.threads)
            print(f"| {minutes:g} | {row['wall_s']:.1f} | {minutes * 60 / row['wall_s']:.1f} "
                  f"| {row['cpu_s']:.1f} | {row['cpu_s'] / minutes:.1f} | {row['largest_mb']:.0f} "
                  f"| {row['tree_mb']:.0f} |", flush=True)  # fmt: skip
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
