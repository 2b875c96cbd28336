"""A live take for a UI: :func:`a2x_core.live.runner.pump` on a background thread, the newest frame kept for
a poller (a DCC's timer on its main thread), every frame kept while recording, and a stop that
sends the stream's tail and hands back the take (``docs/live.md``, "Blender").

The UI never waits on the model: :meth:`LiveSession.latest` only reads a reference, and a
failure of the source or the model ends the session with :attr:`LiveSession.error` set (and
raised again by :meth:`LiveSession.stop`) instead of dying silently on the thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import CancelledError, EngineError
from ..head.stream import with_head_motion
from .runner import Block, LiveStats, pump, pump_tail, take_result

#: States of a session, in order: ``loading`` (the model loads on the thread), ``running``,
#: ``ended`` (the audio ended or a stop closed the stream), ``failed``, ``cancelled``.
STATES = ("loading", "running", "ended", "failed", "cancelled")


class _RecordedTake:
    """What both sessions keep of a take: its state, the frames recorded, the newest frame."""

    _recorded: list[Any]
    _latest: Any
    model: Any  # the loaded model (None until it is)

    def _begin(self, options: Any, audio_path: str, record: bool) -> None:
        self.options = options
        self.audio_path = audio_path
        #: Frames are kept for the take while this is True.
        self.recording = record
        self.stats = LiveStats()
        self.state = "loading"
        #: What ended the session when ``state == "failed"`` (also raised by :meth:`stop`).
        self.error: BaseException | None = None
        self._latest = None
        self._recorded = []

    def _result(self) -> Any:
        """After a stop: the session's error, a cancel, or the take."""
        if self.error is not None:
            raise self.error
        if self.state == "cancelled":
            raise CancelledError("live session cancelled")
        return self.take()

    def take(self) -> Any:
        """The recorded frames so far as an AnimationResult (times from the first one)."""
        if self.model is None:
            raise EngineError("the live session's model never loaded", hint="see its error")
        frames = list(self._recorded)
        fps = self.options.fps
        whole = bool(frames) and frames[0].index == 0 and len(frames) == self.stats.frames
        duration_s = self.stats.received_s if whole else len(frames) / float(fps)
        return take_result(frames, self.model, self.options, fps, audio_path=self.audio_path,
                           duration_s=duration_s)  # fmt: skip

    @property
    def recorded_frames(self) -> int:
        return len(self._recorded)

    @property
    def recorded_from(self) -> int | None:
        """Index of the first recorded frame (0: the take starts with the audio), or None."""
        return self._recorded[0].index if self._recorded else None


class LiveSession(_RecordedTake):
    """Audio blocks → a model's stream on a thread of its own; poll it, stop it for the take.

    Args:
        model: a loaded model (``load_model``), or a function returning one, called on the
            session's thread so that a UI stays responsive while a model loads.
        options: the stream's :class:`~a2x_core.options.InferenceOptions` (its fps too).
        blocks: the source (:func:`a2x_core.live.runner.file_blocks`, :class:`a2x_core.live.runner.Microphone`, ...).
        record: keep every frame from the start (``recording`` can change at any time).
        audio_path: the file the take comes from ("" for a microphone), for the take.
    """

    def __init__(self, model: Any, options: Any, blocks: Iterator[Block], *,
                 record: bool = False, audio_path: str = "") -> None:  # fmt: skip
        self._model_or_loader = model
        self.model: Any = None if callable(model) and not hasattr(model, "open_stream") else model
        self._begin(options, audio_path, record)
        self._blocks = blocks
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------- life cycle

    def start(self) -> LiveSession:
        """Start the thread; returns at once."""
        if self._thread is not None:
            raise EngineError("this live session was already started", hint="start a new one")
        self._thread = threading.Thread(target=self._run, name="a2x-live", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        stream = None
        try:
            if self.model is None:
                self.model = self._model_or_loader()
            stream = with_head_motion(self.model.open_stream(self.options), self.model,
                                      self.options)
            if self._cancel.is_set():
                raise CancelledError("live session cancelled")
            self.state = "running"
            pump(stream, self._blocks, self.stats, self._keep, self._stop.is_set)
            if self._cancel.is_set():
                raise CancelledError("live session cancelled")
            pump_tail(stream, self.stats, self._keep)
            self.state = "ended"
        except BaseException as error:  # noqa: BLE001 - kept for the UI, raised by stop()
            if stream is not None:
                stream.cancel()
            close = getattr(self._blocks, "close", None)
            if close is not None:
                close()  # a model that failed to load leaves the source unopened
            if isinstance(error, CancelledError) and self._cancel.is_set():
                self.state = "cancelled"
            else:
                self.error = error
                self.state = "failed"

    def _keep(self, frames: Sequence[Any]) -> None:
        """A push's frames: the newest for :meth:`latest`, all of them while recording."""
        if self.recording:
            self._recorded.extend(frames)
        self._latest = frames[-1]

    @property
    def alive(self) -> bool:
        """True while the thread runs (loading, or audio still coming)."""
        return self._thread is not None and self._thread.is_alive()

    def latest(self) -> Any:
        """The newest frame (a ``StreamFrame``), None before the first; never blocks."""
        return self._latest

    def _join(self, timeout: float | None) -> None:
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise EngineError(f"the live session did not stop within {timeout} s",
                              hint="the audio source or the model is stuck; cancel it")  # fmt: skip

    def stop(self, timeout: float | None = 30.0) -> Any:
        """End the take: stop the source, send the stream's tail and return the recorded
        frames as an :class:`~a2x_core.result.AnimationResult` (empty when nothing was
        recorded). Raises the error that ended the session, if one did.

        Raises:
            A2XError: the source's or the model's error; EngineError when the thread does not
                stop within ``timeout`` seconds.
        """
        self._stop.set()
        self._join(timeout)
        return self._result()

    def cancel(self, timeout: float | None = 30.0) -> None:
        """Stop without a tail or a take (a file load, the add-on unregistering); waits for
        the thread, so nothing outlives the call."""
        self._cancel.set()
        self._stop.set()
        self._join(timeout)

class WorkerLiveSession(_RecordedTake):
    """:class:`LiveSession`'s interface over the external runtime (``python -m
    a2x_core.worker``, its ``live`` request): the model and the source run there, the frames
    come back as events, drained by :meth:`latest` on the poller's thread (no thread here).

    Args:
        python: the external runtime's interpreter.
        model: "default" or a model.json path, as the worker loads it.
        options: the stream's options.
        source: ``{"file": path, "real_time": True}`` or ``{"device": name or None}``.
        record, audio_path: as for :class:`LiveSession`.
        env: the worker's environment (default: this process's).
    """

    def __init__(self, python: str, model: str, options: Any, source: dict[str, Any], *,
                 record: bool = False, audio_path: str = "",
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        from ..worker import WorkerJob, options_to_json

        request = {"command": "live", "model": str(model), "options": options_to_json(options),
                   "source": dict(source)}  # fmt: skip
        session = self

        class LiveJob(WorkerJob):
            """The worker client, with the live events handed to the session."""

            def _handle(self, event: dict[str, Any]) -> None:
                if not session._handle(event):
                    super()._handle(event)

        self.job = LiveJob(python, request, env=env)
        self._begin(options, audio_path, record)
        self.model: Any = None
        self._cancelled = False

    def start(self) -> WorkerLiveSession:
        self.job.start()
        return self

    def _handle(self, event: dict[str, Any]) -> bool:
        """Take a live event (True); others (progress, error, end) are the job's (False)."""
        from types import SimpleNamespace

        from ..worker import frame_from_json

        kind = event.get("event")
        if kind == "frames":
            frames = [frame_from_json(f) for f in event.get("frames", [])]
            self.stats.received_s = float(event.get("received_s", self.stats.received_s))
            self.stats.latencies_s.extend(float(t) for t in event.get("latencies_s", []))
            self.stats.count(frames, None)
            if frames:
                if self.recording:
                    self._recorded.extend(frames)
                self._latest = frames[-1]
        elif kind == "live":
            summary = event.get("model", {})
            self.model = SimpleNamespace(name=summary.get("name", ""),
                                         version=summary.get("version", ""),
                                         emotion_names=tuple(summary.get("emotion_names", ())))  # fmt: skip
            self.state = "running"
        elif kind == "live_end":
            self.state = "ended"
        else:
            return False
        return True

    def _drain(self) -> None:
        """Handle every event that arrived; a finished worker's error ends the session."""
        if self.state in ("failed", "cancelled"):
            return
        try:
            self.job.poll()
        except CancelledError as error:
            if self._cancelled:
                self.state = "cancelled"
            else:
                self.error, self.state = error, "failed"
        except Exception as error:  # noqa: BLE001 - kept for the UI, raised by stop()
            self.error, self.state = error, "failed"

    @property
    def alive(self) -> bool:
        self._drain()
        return not self.job.done

    def latest(self) -> Any:
        """The newest frame, None before the first; reads the events that arrived, never
        waits for more."""
        self._drain()
        return self._latest

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive:
            if deadline is not None and time.monotonic() > deadline:
                self.job.cancel()
                raise EngineError(f"the external runtime's Live did not stop within {timeout} s",
                                  hint="it was cancelled; see its output")  # fmt: skip
            time.sleep(0.01)

    def stop(self, timeout: float | None = 30.0) -> Any:
        """As :meth:`LiveSession.stop`: a ``stop`` line, the tail frames, the take."""
        proc = self.job._proc
        if proc is not None and proc.stdin is not None and not self.job.done:
            try:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
            except OSError:
                pass  # the worker is gone already: its error or end is read below
        self._wait(timeout)
        return self._result()

    def cancel(self, timeout: float | None = 30.0) -> None:
        """As :meth:`LiveSession.cancel`: the worker is told to stop now and waited for."""
        self._cancelled = True
        self.job.cancel()
        self._wait(timeout)
        if self.state not in ("failed",):
            self.state = "cancelled"
