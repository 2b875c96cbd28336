"""``a2x live`` runs OpenBLAS on one thread (issue 13 point 4, the 2-core CPU's live latency):
a stream's per-frame numpy work is too small for a second thread, whose spinning after each
call takes a core from the network. The setting must reach OpenBLAS, i.e. be made before numpy
loads, and leave an explicit choice of the user alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: runs the console entry point as ``a2x <argv>`` (``--help``: argparse exits before any work)
#: and reports the variable and whether numpy was loaded before the command set it
_PROBE = """
import os, sys
sys.argv = ["a2x", *sys.argv[1:]]
numpy_before = "numpy" in sys.modules
from a2x_core.cli import console_main
try:
    console_main()
except SystemExit:
    pass
print("RESULT", os.environ.get("OPENBLAS_NUM_THREADS"), numpy_before)
"""


def _probe(argv: list[str], env_threads: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO)
    if env_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env_threads
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    return line.split()[1:]


@pytest.mark.parametrize(("argv", "env_threads", "want"), [
    (["live", "--help"], None, "1"),
    (["live", "--help"], "2", "2"),  # the user's own setting wins
    (["info", "--help"], None, "None"),  # other commands keep OpenBLAS's default
])  # fmt: skip
def test_live_sets_one_openblas_thread_before_numpy_loads(argv, env_threads, want) -> None:
    threads, numpy_before = _probe(argv, env_threads)
    assert threads == want
    assert numpy_before == "False"
