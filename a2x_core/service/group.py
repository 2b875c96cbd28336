"""Several server processes on one port (``a2x serve --processes N``): one Python process
delivers a few thousand NIM messages per second (docs/benchmarks.md, "a2x serve"), far below
what one GPU's stream bank computes, so N processes each load the model once, run their own
hub (and bank) on the same device and listen on the same gRPC/HTTP ports with SO_REUSEPORT:
the kernel spreads the *connections* over them (a client that opens many streams on one
channel keeps them on one process).

The parent (:class:`ServerGroup`) loads nothing: it checks that the ports are free, starts the
children, tells them when all are ready (then, and only then, every health check answers
SERVING), watches them (a child that dies is reported, its stream slots freed and a new one
started; the others keep serving) and stops them all together: Ctrl-C/SIGTERM reach the parent,
which asks every child for a graceful stop (running streams finish within the grace period).
Children ignore SIGINT/SIGTERM (a terminal's Ctrl-C reaches the whole process group) and stop
on the parent's word, or when the parent is gone (their pipe closes).

``--max-streams`` counts all processes together (the NIM's ``stream_number`` is per server,
whatever runs behind it): the children share one count (:class:`SharedSlots`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import A2XError, ParameterError

log = logging.getLogger("a2x_core")

#: A child that dies this many times in a row before it is ready ends the group (its start
#: fails for a reason a restart does not fix: the error it reported is the group's error).
START_ATTEMPTS = 3


class SharedSlots:
    """The stream slots of all processes of a group: one count per process in shared memory
    (a dead process's count is reset by the parent, so its slots come back)."""

    def __init__(self, counts: Any, index: int) -> None:
        self.counts = counts  # multiprocessing.Array("i", processes)
        self.index = index

    def take(self, limit: int) -> bool:
        """One slot for this process, if all processes together hold fewer than ``limit``."""
        with self.counts.get_lock():
            if sum(self.counts) >= limit:
                return False
            self.counts[self.index] += 1
            return True

    def give(self) -> None:
        with self.counts.get_lock():
            self.counts[self.index] = max(0, self.counts[self.index] - 1)


def child_main(index: int, build: Callable[..., Any], build_args: tuple[Any, ...],
               conn: Connection, counts: Any) -> None:  # fmt: skip
    """One server process: ``build(*build_args, slots=SharedSlots)`` returns an unstarted
    :class:`.server.ServiceServer` (model loaded, ``reuse_port`` set); it starts NOT_SERVING,
    says "ready", then follows the parent's "serving"/"stop" until stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns the stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        server = build(*build_args, slots=SharedSlots(counts, index))
        server.start()
    except BaseException as error:  # reported to the parent, which decides
        with contextlib.suppress(OSError):
            conn.send(("failed", str(error) if isinstance(error, A2XError) else
                       f"{type(error).__name__}: {error}"))  # fmt: skip
        sys.exit(1)
    try:
        conn.send(("ready", os.getpid()))
    except OSError:  # the parent went away while the model loaded
        server.stop(grace=0.0)
        return
    grace = 5.0
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the parent is gone: stop, leave no orphan
                break
            if message[0] == "serving":
                try:
                    server.set_serving(bool(message[1]))
                except Exception:  # its loop is gone: the server is ending anyway
                    log.debug("set_serving failed", exc_info=True)
            elif message[0] == "stop":
                grace = float(message[1])
                break
    finally:
        server.stop(grace=grace)
        with contextlib.suppress(OSError):
            conn.send(("stopped", os.getpid()))


@dataclass
class _Child:
    index: int
    process: Any
    conn: Connection
    ready: bool = False
    failures: int = 0  # deaths in a row before it was ready
    last_error: str | None = None  # what its last failed start said


@dataclass
class ServerGroup:
    """``processes`` children of ``build`` (a picklable function: see :func:`child_main`) on
    the same ``ports`` (checked free first, ``host``); ``report`` hears each child's death."""

    processes: int
    build: Callable[..., Any]
    build_args: tuple[Any, ...]
    host: str
    ports: dict[str, int]  # flag -> port, e.g. {"--grpc-port": 52000}
    report: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    restarts: int = 0  # children started again after a death (monitoring, tests)
    _children: list[_Child] = field(default_factory=list)
    _counts: Any = None
    _ctx: Any = None
    _serving: bool = False

    def start(self, timeout: float = 300.0) -> ServerGroup:
        """Start every child and wait until all are ready (then they answer SERVING).

        Raises:
            ParameterError: a port is taken (or the host is not this machine's).
            A2XError: a child could not start (its own error message).
        """
        if self.processes < 1:
            raise ParameterError(f"--processes {self.processes} must be >= 1")
        if not sys.platform.startswith("linux"):
            raise ParameterError("--processes N > 1 needs Linux: the processes share the ports "
                                 "through SO_REUSEPORT, which only Linux spreads over them",
                                 hint="run one process per port elsewhere")  # fmt: skip
        for flag, port in self.ports.items():
            _check_free(self.host, port, flag)
        self._ctx = multiprocessing.get_context("spawn")
        self._counts = self._ctx.Array("i", self.processes)
        try:
            for index in range(self.processes):
                self._children.append(self._spawn(index))
            deadline = time.monotonic() + timeout
            while not all(child.ready for child in self._children):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise A2XError(f"the server processes were not ready within {timeout:g} s")
                self._wait_once(min(left, 1.0), starting=True)
        except BaseException:
            self.stop(grace=0.0)
            raise
        if not self._serving:
            self._set_serving(True)
        return self

    @property
    def pids(self) -> list[int]:
        return [child.process.pid for child in self._children]

    def active_streams(self) -> int:
        return int(sum(self._counts)) if self._counts is not None else 0

    def poll(self, timeout: float = 0.5) -> None:
        """Handle what happened within ``timeout`` (deaths, restarts); call it in a loop.

        Raises:
            A2XError: a child died :data:`START_ATTEMPTS` times in a row before being ready.
        """
        self._wait_once(timeout, starting=False)

    def stop(self, grace: float = 5.0) -> None:
        """Graceful stop of every child at once (running streams get ``grace`` seconds), then
        whatever still runs is killed; every child is joined."""
        for child in self._children:
            with contextlib.suppress(OSError, ValueError):
                child.conn.send(("stop", grace))
        deadline = time.monotonic() + grace + 15.0
        for child in self._children:
            child.process.join(max(0.1, deadline - time.monotonic()))
            if child.process.is_alive():
                self.report(f"a2x serve: process {child.index + 1} (pid {child.process.pid}) "
                            "did not stop; killed")  # fmt: skip
                child.process.kill()
                child.process.join(5)
            with contextlib.suppress(OSError):
                child.conn.close()
        self._children = []

    # ------------------------------------------------------------------------- internals

    def _spawn(self, index: int) -> _Child:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=child_main, name=f"a2x-serve-{index + 1}",
            args=(index, self.build, self.build_args, child_end, self._counts),
        )  # fmt: skip
        process.start()
        child_end.close()
        return _Child(index, process, parent_end)

    def _wait_once(self, timeout: float, starting: bool) -> None:
        by_key: dict[Any, _Child] = {}
        for child in self._children:
            by_key[child.conn] = child
            by_key[child.process.sentinel] = child
        for key in wait(list(by_key), timeout):
            child = by_key[key]
            if key is child.conn:
                self._message(child)
            elif not child.process.is_alive() and child in self._children:
                self._died(child, starting)

    def _message(self, child: _Child) -> None:
        try:
            message = child.conn.recv()
        except (EOFError, OSError):  # its death is seen through the sentinel
            return
        if message[0] == "ready":
            child.ready, child.failures = True, 0
            if not self._serving and all(c.ready for c in self._children):
                self._set_serving(True)
        elif message[0] == "failed":
            child.last_error = message[1]

    def _died(self, child: _Child, starting: bool) -> None:
        child.process.join(1)
        code = child.process.exitcode
        with contextlib.suppress(OSError, EOFError):
            while child.conn.poll():  # a "failed" message sent just before the exit
                message = child.conn.recv()  # EOFError once all are read
                if message[0] == "failed":
                    child.last_error = message[1]
        error = child.last_error
        if starting and error is not None:  # a start error: no retry will fix a taken port
            raise A2XError(error)
        with self._counts.get_lock():
            self._counts[child.index] = 0  # its streams are gone: their slots come back
        with contextlib.suppress(OSError):
            child.conn.close()
        failures = 0 if child.ready else child.failures + 1
        if failures >= START_ATTEMPTS:
            raise A2XError(f"server process {child.index + 1} failed to start {failures} "
                           f"times: {error or _exit_text(code)}")  # fmt: skip
        self.report(f"a2x serve: process {child.index + 1} (pid {child.process.pid}) ended "
                    f"with {_exit_text(code)}; its streams were lost; starting a new one")  # fmt: skip
        if self._serving:
            self._set_serving(False)
        fresh = self._spawn(child.index)
        fresh.failures = failures
        self._children[self._children.index(child)] = fresh
        self.restarts += 1

    def _set_serving(self, serving: bool) -> None:
        self._serving = serving
        for child in self._children:
            if child.ready:
                with contextlib.suppress(OSError, ValueError):
                    child.conn.send(("serving", serving))


def _check_free(host: str, port: int, flag: str) -> None:
    """Refuse a port another program holds: the children bind with SO_REUSEPORT, which would
    otherwise join a listener of the same user instead of failing."""
    from .server import _cannot_listen

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as the servers have it: a port whose last connections are in
        # TIME_WAIT (a server just stopped) is free; one with a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError:
            raise _cannot_listen(f"{host}:{port}", flag) from None


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
