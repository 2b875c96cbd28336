"""``a2x live``'s CPU thread settings. It runs OpenBLAS on one thread (issue 13 point 4, the 2-core CPU's live latency):
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


def test_spinning_threads_reach_the_sessions_created_afterwards(tmp_path: Path) -> None:
    """``spin_threads()`` (``a2x live``: one latency-bound stream) makes ONNX Runtime's threads
    spin between operators in sessions created from then on; the default stays off (offline
    and batch work between calls gets the CPU)."""
    from a2x_core.backends import onnxruntime as backend
    from a2x_core.models.registry import load_model
    from tests.a2f_folders import make_regression_folder

    folder = make_regression_folder(tmp_path / "model")

    def spinning(model: object) -> str:
        options = model.engine._session.get_session_options()
        return options.get_session_config_entry("session.intra_op.allow_spinning")

    assert backend.SPIN_THREADS is False
    before = load_model(folder.model_json, backend="onnxruntime", threads=1)
    try:
        backend.spin_threads()
        after = load_model(folder.model_json, backend="onnxruntime", threads=1)
    finally:
        backend.spin_threads(False)
    assert (spinning(before), spinning(after)) == ("0", "1")
    assert (before.engine.describe()["spinning_threads"],
            after.engine.describe()["spinning_threads"]) == (False, True)  # fmt: skip


_LIVE_PROBE = """
import sys
from a2x_core import cli
from a2x_core.backends import onnxruntime as backend
code = cli.main(sys.argv[1:])
print("RESULT", code, backend.SPIN_THREADS)
"""


def test_a2x_live_turns_spinning_on(tmp_path: Path) -> None:
    from tests.a2f_folders import make_regression_folder
    from tests.conftest import SAMPLE

    folder = make_regression_folder(tmp_path / "model")
    argv = ["live", "--source", str(SAMPLE), "--model", str(folder.model_json), "--engine",
            "onnxruntime", "--threads", "1", "--duration", "0.5", "--as-fast-as-possible", "-q"]
    done = subprocess.run([sys.executable, "-c", _LIVE_PROBE, *argv], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT")), done.stderr)
    assert line.split()[1:] == ["0", "True"], line
