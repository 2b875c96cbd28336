"""Progress, cancellation and background jobs.

Long work reports progress through a :class:`Progress` callback and checks a
:class:`CancelToken`; :class:`Job` runs any such work on a worker thread so that a DCC's UI
thread only polls (style guide §8): ``job.poll() -> Progress | None``, ``job.cancel()``,
``job.result()``; worker errors are re-raised on the polling thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import CancelledError

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """A progress report: ``fraction`` of the whole job done, in [0, 1], and what is running."""

    fraction: float
    stage: str = ""


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """A thread-safe flag that long-running stages check between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`CancelledError` if cancellation was requested."""
        if self._event.is_set():
            raise CancelledError("cancelled by the user")


class ProgressScale:
    """Maps a sub-stage's own 0..1 progress into a slice of the parent's range."""

    def __init__(self, callback: ProgressCallback | None, start: float, end: float) -> None:
        self.callback, self.start, self.end = callback, start, end

    def __call__(self, progress: Progress) -> None:
        if self.callback is not None:
            span = self.end - self.start
            self.callback(Progress(self.start + span * min(max(progress.fraction, 0.0), 1.0), progress.stage))


class Job(Generic[T]):
    """Run ``work(progress, cancel)`` on a daemon thread; poll it from the UI thread.

    The worker talks to the poller only through a queue, so nothing in the worker ever
    touches DCC state.
    """

    def __init__(self, work: Callable[[ProgressCallback, CancelToken], T], name: str = "a2x-job") -> None:
        self._work = work
        self._messages: queue.Queue[Progress] = queue.Queue()
        self._token = CancelToken()
        self._result: T | None = None
        self._error: BaseException | None = None
        self._latest = Progress(0.0, "starting")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Job[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._result = self._work(self._messages.put, self._token)
        except BaseException as error:  # re-raised on the polling thread
            self._error = error

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self._thread.ident is not None

    def poll(self) -> Progress | None:
        """The newest progress, or None once finished; re-raises the worker's error."""
        while True:
            try:
                self._latest = self._messages.get_nowait()
            except queue.Empty:
                break
        if self.done:
            if self._error is not None:
                raise self._error
            return None
        return self._latest

    def cancel(self) -> None:
        self._token.cancel()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the job and return its value (or raise its error)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("job still running")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]
