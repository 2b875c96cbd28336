"""Speed as a user gets it: the whole ``a2x animate CLIP.wav -o out.json`` command, timed.

Usage::

    .venv/bin/python benchmarks/speed_cli.py [--seconds 60] [--repeats 5]
        [--modes default fast] [--data ../shared/data] [--keep DIR] [--source CHECKOUT]
        [--quiet] [--no-bytecode-cache]

Builds a clip of ``--seconds`` of real speech (the ``speech_en`` clips concatenated, 16 kHz
mono, as ``long_input_default.py`` does) in a temporary folder, then runs the command line
``python -m a2x_core animate clip.wav -o out.json --overwrite [--fast]`` as a subprocess
(progress bar on, as users run it, into /dev/null; ``--quiet`` adds ``-q``), ``--repeats``
times per mode (modes interleaved, so that a change of load hits both alike). Everything a user
waits for is inside: interpreter start-up, imports, audio decoding, decoder loads, worker
start, recognition, curves, the JSON write and the exit.

Per run: wall time (from start to the exit of the process), **CPU seconds of the process
tree** (user + system of the command and of the workers it reaped, from ``wait4``), and the
load around it: the 1-minute load average before and after, and the CPU seconds other
processes used on this machine while it ran (``/proc/stat`` busy time minus ours; 0 on an
idle machine). On a shared machine read the wall time with that column: the CPU seconds move
much less with load than the wall time does. Modules are byte-compiled once before the runs
(into a cache in the temporary folder; the checkout is left alone), as ``pip install`` does;
``--no-bytecode-cache`` times a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` instead. A
warm-up run per mode comes first and is not counted. Linux only. The clip is deleted afterwards
(``--keep DIR`` keeps it and the outputs); never commit it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def machine_busy_s() -> float:
    """Seconds all cores together spent busy since boot (``/proc/stat``: all but idle and
    iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_once(clip: Path, out: Path, fast: bool, env: dict[str, str], source: Path = REPO,
             quiet: bool = False) -> dict[str, float]:  # fmt: skip
    """One command: wall seconds, CPU seconds of its process tree, load before/after and the
    CPU seconds the rest of the machine used meanwhile."""
    command = [sys.executable, "-m", "a2x_core", "animate", str(clip), "-o", str(out),
               "--overwrite", *(["--fast"] if fast else []), *(["-q"] if quiet else [])]  # fmt: skip
    load_before = os.getloadavg()[0]
    busy_before = machine_busy_s()
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=source, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    busy = machine_busy_s() - busy_before
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "load_before": load_before,
            "load_after": os.getloadavg()[0], "others_cpu_s": max(0.0, busy - cpu)}  # fmt: skip


def build(seconds: float, data: Path, folder: Path) -> Path:
    """The test clip: ``seconds`` of concatenated real speech."""
    sys.path.insert(0, str(Path(__file__).parent))
    from long_input_default import build_clip, speech

    clip = folder / f"speech_{seconds:g}s.wav"
    build_clip(speech(data), seconds / 60.0, clip)
    return clip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per mode (default 5)")
    parser.add_argument("--modes", nargs="+", default=["default", "fast"],
                        choices=["default", "fast"])  # fmt: skip
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--keep", type=Path, help="keep the clip and outputs in this folder")
    parser.add_argument("--source", type=Path, default=REPO,
                        help="the checkout whose a2x_core runs (default: this one)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="run the command with -q (no "
                        "progress bar; default: as users run it, progress on stderr)")  # fmt: skip
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="compile every module at every start, as with "
                        "PYTHONDONTWRITEBYTECODE=1 and no __pycache__ (default: compiled once, "
                        "as pip does at install)")  # fmt: skip
    args = parser.parse_args(argv)
    if not (args.data / "speech_en").is_dir():
        raise SystemExit(f"{args.data / 'speech_en'} is missing; pass --data")
    with tempfile.TemporaryDirectory(prefix="a2x-speed-cli-") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        clip = build(args.seconds, args.data, folder)
        env = dict(os.environ, PYTHONPATH=str(args.source))
        if args.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:  # compiled once into a cache of ours (the checkout is left alone), as installed
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(temporary) / "pycache")
            for mode in args.modes:  # warm-up: compiles, fills the page cache; not counted
                run_once(clip, folder / f"out_{mode}.json", mode == "fast", env, args.source,
                         args.quiet)
        print(f"clip: {args.seconds:g} s of speech_en; cores: {os.cpu_count()}; "
              f"python {sys.version.split()[0]}")  # fmt: skip
        print("| mode | run | load before → after | wall (s) | × real time | CPU (s) "
              "| others' CPU meanwhile (s) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.modes}
        for k in range(args.repeats):
            for mode in args.modes:
                r = run_once(clip, folder / f"out_{mode}.json", mode == "fast", env,
                             args.source, args.quiet)
                runs[mode].append(r)
                print(f"| {mode} | {k + 1} | {r['load_before']:.2f} → {r['load_after']:.2f} "
                      f"| {r['wall_s']:.2f} | {args.seconds / r['wall_s']:.1f} | {r['cpu_s']:.2f} "
                      f"| {r['others_cpu_s']:.1f} |", flush=True)  # fmt: skip
        print()
        print("| mode | runs | best wall (s) | × real time | median wall (s) | median CPU (s) |")
        print("|---|---|---|---|---|---|")
        for mode, rows in runs.items():
            best = min(r["wall_s"] for r in rows)
            print(f"| {mode} | {len(rows)} | {best:.2f} | {args.seconds / best:.1f} "
                  f"| {statistics.median(r['wall_s'] for r in rows):.2f} "
                  f"| {statistics.median(r['cpu_s'] for r in rows):.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
