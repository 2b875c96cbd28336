"""Shared fixtures: paths to the repo, the bundled sample and the team's ../shared data."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# A shell without job control starts background jobs (`make test &`, `nohup … &`) with SIGINT
# ignored, and an ignored signal stays ignored in every child: the tests that press Ctrl-C on
# a2x subprocesses would see it lost. Give the children the normal Ctrl-C back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE = REPO / "samples" / "jfk.flac"
SAMPLE_TRANSCRIPT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test skips cleanly where the shared folder is absent."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is absent")
    return data


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m a2x_core`` in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "a2x_core", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: Seconds the interpreter may take to exit once every test has finished before the guard
#: reports what still runs and exits with the run's own status.
EXIT_GRACE_S = 60.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._a2x_exitstatus = int(exitstatus)  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop what the tests left running, and never let an exit hang the CI.

    An interpreter exits only once its non-daemon threads, its thread and process pools and its
    multiprocessing children have ended: a pool worker still busy (or stuck) kept a finished,
    green run waiting until CI's time limit. The phone-decoding pool is killed here (its workers
    hold no state); anything else still running after EXIT_GRACE_S is reported — every thread's
    stack, every child — and the run exits with its own status.
    """
    status = getattr(config, "_a2x_exitstatus", 1)
    parallel = sys.modules.get("a2x_core.lipsync.parallel")
    if parallel is not None:
        parallel.abort()

    def guard() -> None:
        time.sleep(EXIT_GRACE_S)
        out = sys.__stderr__
        print(f"\nconftest: the run ended (status {status}) but the interpreter has not exited "
              f"after {EXIT_GRACE_S:.0f} s; what still runs:", file=out, flush=True)  # fmt: skip
        faulthandler.dump_traceback(file=out, all_threads=True)
        for child in multiprocessing.active_children():
            print(f"conftest: killing child process {child.name} (pid {child.pid})", file=out)
            child.kill()
        out.flush()
        os._exit(status)

    threading.Thread(target=guard, name="conftest-exit-guard", daemon=True).start()
    # The backstop if no Python thread can run any more (a hang inside finalisation).
    faulthandler.dump_traceback_later(4 * EXIT_GRACE_S, exit=True, file=sys.__stderr__)
