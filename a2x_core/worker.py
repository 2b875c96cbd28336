"""The external runtime: ``python -m a2x_core.worker`` runs inference for a DCC in a subprocess.

A DCC whose own Python cannot hold the GPU stack (CUDA, TensorRT) points its add-on at
another interpreter where ``a2x[gpu]`` is installed; the add-on then talks to this module
over pipes, with no network listener.

Protocol (version 2), UTF-8 JSON, one object per line:

* stdin, first line: the request, ``{"protocol": 2, "command": "animate" | "info" | "live",
  "model": "default" | "/path/model.json", "emotion_model": null | "/path/a2e/model.json",
  "audio": ["clip.wav", ...], "options": {...}}``; ``options`` holds
  :class:`~a2x_core.options.InferenceOptions` fields in the form
  :meth:`~a2x_core.options.InferenceOptions.to_json` writes (fps as ``"num/den"``).
  ``emotion_model`` (an Audio2Emotion model.json) detects each clip's emotions, as
  ``Animator(..., emotion_model=...)`` does. Version 1 requests (no ``emotion_model``) are
  still served; a version 1 worker refuses version 2 requests with the fix.
* ``live`` (a live preview, :class:`~a2x_core.live.session.WorkerLiveSession`) also takes
  ``"source": {"file": path, "real_time": true}`` or ``{"device": name | null}`` (a
  microphone of the worker's machine) and streams instead of answering once:
  ``{"event": "live", "model": {...}}`` (:func:`model_summary`) when the stream is open,
  then per push with frames ``{"event": "frames", "frames": [...], "received_s": s,
  "latencies_s": [...]}`` (:func:`frame_to_json`; no latencies for the tail), until the
  audio ends or a ``stop`` line, then the stream's tail and ``{"event": "live_end", ...}``.
* stdin afterwards: the client keeps it open while it waits. Closing it (EOF) or writing a
  ``cancel`` line cancels the work between units; the worker then answers with a
  ``CancelledError`` error event and exits with code 130. Terminating the process works too.
  A ``stop`` line ends a ``live`` request cleanly (tail frames, then ``done``).
* stdout: ``{"event": "hello", "protocol": 1, "version": ...}``, then any number of
  ``{"event": "progress", "fraction": f, "stage": s}``, then either one
  ``{"event": "result", "index": i, "result": {...}}`` per clip (weights, tongue weights, eye
  rotations, emotions and detected emotions as base64 little-endian float32 with their
  shape) or ``{"event": "info", "info": {...}}`` (:func:`model_summary`), and last
  ``{"event": "done"}``; on failure ``{"event": "error", "type": "ModelError", "message":
  ...}`` instead, and exit code 2 (130 when cancelled). Anything else the libraries print
  goes to stderr, never into the protocol stream.

:class:`WorkerJob` is the client side, with the same ``poll() / cancel() / result()`` shape
as :class:`~a2x_core.jobs.Job` so that the Blender and Maya adapters poll either alike.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from queue import Empty, Queue
from typing import IO, Any

import numpy as np

from . import errors
from .audio.decode import check_audio_path
from .errors import A2XError, CancelledError, EngineError, ParameterError
from .inputs import loads_json
from .jobs import CancelToken, Progress
from .options import InferenceOptions
from .result import AnimationResult
from .version import __version__

PROTOCOL = 2
#: Request versions this worker serves (1: no ``emotion_model``).
SUPPORTED_PROTOCOLS = (1, 2)
_OPTION_FIELDS = set(InferenceOptions.__dataclass_fields__)


# --------------------------------------------------------------------------- serialisation


def options_to_json(options: InferenceOptions) -> dict[str, Any]:
    """Options in wire form (see :meth:`InferenceOptions.to_json`), every emotion key listed
    (exports summarise long key lists; the worker needs them all)."""
    data = options.to_json()
    data["emotions"] = [[t, dict(v)] for t, v in options.emotions]
    return data


def options_from_json(data: dict[str, Any]) -> InferenceOptions:
    """Options from wire form; unknown fields are an error that names them."""
    if not isinstance(data, dict):
        raise ParameterError(f"the worker request's options must be an object, found {data!r}",
                             hint='send e.g. "options": {"fps": "30/1"}')  # fmt: skip
    unknown = sorted(set(data) - _OPTION_FIELDS)
    if unknown:
        raise ParameterError(
            f"unknown option(s) {', '.join(map(str, unknown))} in the worker request",
            hint="update a2x in the external runtime to the add-on's version",
        )
    fields = dict(data)
    emotions = fields.get("emotions")
    if isinstance(emotions, list):  # JSON [[t, {...}], ...]; InferenceOptions checks the rest
        fields["emotions"] = tuple(tuple(k) if isinstance(k, list) else k for k in emotions)
    return InferenceOptions(**fields)


def _array_to_json(array: np.ndarray | None) -> dict[str, Any] | None:
    if array is None:
        return None
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(data.shape), "b64": base64.b64encode(data.tobytes()).decode("ascii")}


def _array_from_json(data: dict[str, Any] | None) -> np.ndarray | None:
    if data is None:
        return None
    raw = base64.b64decode(data["b64"])
    return np.frombuffer(raw, dtype="<f4").reshape(data["shape"]).astype(np.float32)


def result_to_json(result: AnimationResult) -> dict[str, Any]:
    """The parts of a result an adapter bakes, in wire form (options travel in the request)."""
    return {
        "weights": _array_to_json(result.weights),
        "fps": f"{result.fps.numerator}/{result.fps.denominator}",
        "names": list(result.names),
        "audio_path": result.audio_path,
        "start_s": result.start_s,
        "duration_s": result.duration_s,
        "model": result.model,
        "model_version": result.model_version,
        "parameters": json.loads(json.dumps(result.parameters, default=str)),
        "tongue_weights": _array_to_json(result.tongue_weights),
        "tongue_names": list(result.tongue_names),
        "eye_rotations": _array_to_json(result.eye_rotations),
        "head_rotations": _array_to_json(result.head_rotations),
        "emotions": _array_to_json(result.emotions),
        "detected_emotions": _array_to_json(result.detected_emotions),
        "emotion_names": list(result.emotion_names),
        "warnings": list(result.warnings),
    }


def result_from_json(data: dict[str, Any], options: InferenceOptions) -> AnimationResult:
    num, den = str(data["fps"]).split("/")
    return AnimationResult(
        weights=_array_from_json(data["weights"]),  # type: ignore[arg-type]
        fps=Fraction(int(num), int(den)),
        names=tuple(data["names"]),
        audio_path=data.get("audio_path", ""),
        start_s=float(data.get("start_s", 0.0)),
        duration_s=float(data.get("duration_s", 0.0)),
        model=data.get("model", ""),
        model_version=data.get("model_version", ""),
        options=options,
        parameters=dict(data.get("parameters", {})),
        tongue_weights=_array_from_json(data.get("tongue_weights")),
        tongue_names=tuple(data.get("tongue_names", ())),
        eye_rotations=_array_from_json(data.get("eye_rotations")),
        head_rotations=_array_from_json(data.get("head_rotations")),
        emotions=_array_from_json(data.get("emotions")),
        detected_emotions=_array_from_json(data.get("detected_emotions")),
        emotion_names=tuple(data.get("emotion_names", ())),
        warnings=list(data.get("warnings", [])),
    )


def frame_to_json(frame: Any) -> dict[str, Any]:
    """A stream frame (:class:`~a2x_core.audio.accumulator.StreamFrame`) in wire form."""
    return {"index": int(frame.index), "time_s": float(frame.time_s),
            **{name: _array_to_json(getattr(frame, name)) for name in _FRAME_ARRAYS}}  # fmt: skip


def frame_from_json(data: dict[str, Any]) -> Any:
    from .audio.accumulator import StreamFrame

    arrays = {name: _array_from_json(data[name]) for name in _FRAME_ARRAYS if name in data}
    return StreamFrame(index=int(data["index"]), time_s=float(data["time_s"]), **arrays)


#: The arrays of a stream frame, as they travel.
_FRAME_ARRAYS = ("weights", "tongue_weights", "jaw_transform", "eye_rotations", "emotions",
                 "head_rotation")  # fmt: skip


def model_summary(model: Any) -> dict[str, Any]:
    """What an adapter shows about a loaded model: name, kind, version, the emotions it
    accepts and, for diffusion models, its identities (``[]`` for other kinds)."""
    return {
        "name": str(getattr(model, "name", "")),
        "kind": str(getattr(model, "kind", "")),
        "version": str(getattr(model, "version", "")),
        "emotion_names": list(getattr(model, "emotion_names", ()) or ()),
        "identities": [str(i) for i in getattr(model, "identities", ()) or ()],
    }


# --------------------------------------------------------------------------- worker side


class _Channel:
    """Writes protocol events to the real stdout; everything else printed goes to stderr."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _watch_stdin(stream: IO[str], token: CancelToken, stop: threading.Event) -> None:
    """Cancel on EOF or a ``cancel`` line: the client closed the pipe or asked to stop; a
    ``stop`` line ends a live request cleanly (its tail is still sent)."""
    for line in stream:
        word = line.strip().lower()
        if word == "cancel":
            break
        if word == "stop":
            stop.set()
    token.cancel()


def _read_request(line: str) -> dict[str, Any]:
    """The request object of the first stdin line, its fields' types checked, so that any
    malformed request is a ParameterError event (exit 2), never a TypeError."""
    try:
        request = loads_json(line, "the worker request")
    except ValueError:
        raise ParameterError(
            "the first stdin line is not a JSON request", hint="see a2x_core/worker.py"
        ) from None
    if not isinstance(request, dict):
        raise ParameterError(f"the worker request must be a JSON object, found {_short(request)}",
                             hint='send {"command": "animate", ...}; see a2x_core/worker.py')  # fmt: skip
    protocol = request.get("protocol", PROTOCOL)
    if isinstance(protocol, bool) or protocol not in SUPPORTED_PROTOCOLS:
        raise ParameterError(
            f"worker request speaks protocol {_short(protocol)}, this a2x speaks "
            f"{', '.join(map(str, SUPPORTED_PROTOCOLS))}",
            hint="install the same a2x version in the external runtime as in the add-on",
        )
    fields = (("command", str, False), ("model", str, False), ("emotion_model", str, True))
    for name, kind, nullable in fields:
        value = request.get(name)
        if name in request and not (isinstance(value, kind) or (nullable and value is None)):
            raise ParameterError(f"the worker request's {name} must be text, found {_short(value)}")
    audio = request.get("audio")
    if audio is not None and (
        not isinstance(audio, list) or not all(isinstance(a, str) for a in audio)
    ):
        raise ParameterError(f"the worker request's audio must be a list of paths, found "
                             f"{_short(audio)}", hint='send "audio": ["/path/clip.wav"]')  # fmt: skip
    return request


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:40]}…({len(text)} characters)"


def _serve(request: dict[str, Any], channel: _Channel, token: CancelToken,
           stop: threading.Event | None = None) -> None:  # fmt: skip
    from .api import Animator

    command = request.get("command", "animate")
    if command == "live":
        _live_source(request)
        from .backends.onnxruntime import spin_threads

        # one latency-bound stream in a process of its own, as ``a2x live``: ONNX Runtime's
        # threads spin between operators (a worker serves one request, so no bake shares it)
        spin_threads()
    options = options_from_json(request.get("options", {}))
    model_spec = request.get("model", "default")
    channel.send("progress", fraction=0.0, stage="loading model")
    animator = Animator(model_spec, options, emotion_model=request.get("emotion_model") or None)
    if command == "info":
        channel.send("info", info=model_summary(animator.model))
        return
    if command == "live":
        _serve_live(request, animator.model, options, channel, token, stop or threading.Event())
        return
    if command != "animate":
        raise ParameterError(f"unknown worker command {command!r}",
                             hint="use animate, info or live")  # fmt: skip
    audio = request.get("audio") or []
    if not audio:
        raise ParameterError("the worker request names no audio", hint="pass audio: [paths]")

    def progress(p: Progress) -> None:
        channel.send("progress", fraction=round(p.fraction, 4), stage=p.stage)

    results = animator.animate_many([str(a) for a in audio], options, progress, token)
    for index, result in enumerate(results):
        channel.send("result", index=index, result=result_to_json(result))


def _live_source(request: dict[str, Any]) -> dict[str, Any]:
    """A live request's source object, checked before the model loads."""
    source = request.get("source")
    if not isinstance(source, dict):
        raise ParameterError(f"the worker's live request needs a source object, found "
                             f"{_short(source)}", hint='send "source": {"file": "/path/clip.wav"}'
                             ' or {"device": null}')  # fmt: skip
    return source


def _serve_live(request: dict[str, Any], model: Any, options: InferenceOptions,
                channel: _Channel, token: CancelToken, stop: threading.Event) -> None:  # fmt: skip
    """A live request: the source through the model's stream (:func:`a2x_core.live.runner.pump`, the loop
    of ``a2x live``), each push's frames as one event, until the audio ends or ``stop``."""
    from .live.runner import LiveStats, open_source, pump, pump_tail

    source = _live_source(request)
    path, device = source.get("file"), source.get("device")
    blocks = open_source(str(path) if path else None, device=device or None,
                         real_time=bool(source.get("real_time", True)))  # fmt: skip
    from .head.stream import with_head_motion

    stream = with_head_motion(model.open_stream(options), model, options)
    channel.send("live", model=model_summary(model))
    stats = LiveStats()

    def send(frames: Sequence[Any], latencies: list[float]) -> None:
        channel.send("frames", frames=[frame_to_json(f) for f in frames],
                     received_s=stats.received_s, latencies_s=latencies)  # fmt: skip

    try:
        pump(stream, blocks, stats, lambda new: send(new, stats.latencies_s[-len(new):]),
             lambda: stop.is_set() or token.cancelled)  # fmt: skip
        token.check()
        pump_tail(stream, stats, lambda tail: send(tail, []))
    except BaseException:
        stream.cancel()
        raise
    channel.send("live_end", frames=stats.frames, received_s=stats.received_s)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one request from stdin; see the module docstring for the protocol."""
    del argv
    channel = _Channel()
    channel.send("hello", protocol=PROTOCOL, version=__version__, python=sys.version.split()[0])
    token = CancelToken()
    line = sys.stdin.readline()
    try:
        request = _read_request(line)
        for path in request.get("audio") or []:
            check_audio_path(path)  # a missing clip is reported even if stdin closes next
        stop = threading.Event()
        threading.Thread(target=_watch_stdin, args=(sys.stdin, token, stop), daemon=True).start()
        _serve(request, channel, token, stop)
    except A2XError as error:
        channel.send("error", type=type(error).__name__, message=str(error))
        return error.exit_code
    except Exception as error:  # an unexpected failure still reaches the client as an event
        channel.send("error", type=type(error).__name__, message=f"{type(error).__name__}: {error}")
        return 1
    channel.send("done")
    return 0


# --------------------------------------------------------------------------- client side


def _error_from_event(event: dict[str, Any]) -> A2XError:
    kind = getattr(errors, str(event.get("type", "")), None)
    message = str(event.get("message", "the external runtime failed"))
    if isinstance(kind, type) and issubclass(kind, A2XError):
        return kind(message)
    return EngineError(f"external runtime: {message}")


class WorkerJob:
    """Runs one request in ``python -m a2x_core.worker`` and is polled like a :class:`Job`.

    Args:
        python: the external runtime's interpreter (a2x installed there).
        request: the request object (see the module docstring); ``protocol`` is filled in.
        env: environment for the child (default: this process's).
        cancel_grace_s: after :meth:`cancel` closes stdin, how long the child may take to stop
            before it is terminated.
    """

    def __init__(
        self,
        python: str | os.PathLike[str],
        request: dict[str, Any],
        env: dict[str, str] | None = None,
        cancel_grace_s: float = 3.0,
    ) -> None:
        self.python = str(python)
        self.request = {"protocol": PROTOCOL, **request}
        self.options = options_from_json(self.request.get("options", {}))
        self._env = env
        self._grace = cancel_grace_s
        self._events: Queue[dict[str, Any]] = Queue()
        self._stderr: deque[str] = deque(maxlen=40)
        self._latest = Progress(0.0, "starting external runtime")
        self._results: dict[int, AnimationResult] = {}
        self._info: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._cancel_at: float | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []

    def start(self) -> WorkerJob:
        if not Path(self.python).exists():
            raise EngineError(
                "the external runtime's Python does not exist",
                path=self.python,
                hint="fix the path in the add-on preferences or clear it to run in the DCC",
            )
        try:
            self._proc = subprocess.Popen(
                [self.python, "-m", "a2x_core.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                env=self._env,
            )
        except OSError as error:
            raise EngineError(
                f"cannot start the external runtime ({error})",
                path=self.python,
                hint="point the add-on preferences at a Python where a2x is installed",
            ) from None
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(self.request) + "\n")
        self._proc.stdin.flush()
        self._readers = [
            threading.Thread(target=self._read_stdout, name="a2x-worker-out", daemon=True),
            threading.Thread(target=self._read_stderr, name="a2x-worker-err", daemon=True),
        ]
        for thread in self._readers:
            thread.start()
        return self

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self._events.put(json.loads(line))
            except ValueError:
                self._stderr.append(line)
        self._events.put({"event": "_eof"})

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            self._latest = Progress(float(event.get("fraction", 0.0)), str(event.get("stage", "")))
        elif kind == "result":
            self._results[int(event["index"])] = result_from_json(event["result"], self.options)
        elif kind == "info":
            self._info = dict(event["info"])
        elif kind == "error":
            self._error = _error_from_event(event)
        elif kind == "_eof":
            self._finish()

    def _finish(self) -> None:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        for thread in self._readers:
            thread.join(timeout=1)
        self._finished = True
        if self._error is None and self._cancel_at is not None and code != 0:
            self._error = CancelledError("cancelled by the user")
        elif self._error is None and code != 0:
            tail = " | ".join(list(self._stderr)[-5:]) or "no output"
            self._error = EngineError(
                f"the external runtime exited with code {code}: {tail}",
                path=self.python,
                hint="run it by hand: <python> -m a2x_core.worker",
            )

    @property
    def done(self) -> bool:
        return self._finished

    def poll(self) -> Progress | None:
        """The newest progress, or None once finished; raises the worker's error."""
        while not self._finished:
            try:
                self._handle(self._events.get_nowait())
            except Empty:
                break
        if (
            not self._finished
            and self._cancel_at is not None
            and self._proc is not None
            and time.monotonic() - self._cancel_at > self._grace
            and self._proc.poll() is None
        ):
            self._proc.terminate()
        if self._finished:
            if self._error is not None:
                raise self._error
            return None
        return self._latest

    def cancel(self) -> None:
        """Ask the worker to stop: close its stdin now, terminate it after the grace time."""
        if self._cancel_at is None:
            self._cancel_at = time.monotonic()
            if self._proc is not None and self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.poll() is None:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("external runtime still running")
            try:
                self._handle(self._events.get(timeout=0.05))
            except Empty:
                pass

    def result(self, timeout: float | None = None) -> list[AnimationResult]:
        """Wait for the worker and return one result per clip (or raise its error)."""
        self._wait(timeout)
        if self._info is not None and not self._results:
            return []
        return [self._results[i] for i in sorted(self._results)]

    def info(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for an ``info`` request's answer (see :func:`model_summary`)."""
        self._wait(timeout)
        if self._info is None:
            raise EngineError("the external runtime sent no model info", path=self.python)
        return self._info


def start_worker(
    python: str | os.PathLike[str],
    model: str,
    sources: Sequence[str | os.PathLike[str]],
    options: InferenceOptions,
    emotion_model: str | os.PathLike[str] | None = None,
) -> WorkerJob:
    """Start animating ``sources`` in the external runtime; poll the returned job.

    Args:
        emotion_model: an Audio2Emotion model.json whose detected emotions drive the model
            (see :class:`~a2x_core.api.Animator`); None = none.
    """
    request = {
        "command": "animate",
        "model": str(model),
        "emotion_model": str(emotion_model) if emotion_model else None,
        "audio": [str(Path(s).resolve()) for s in sources],
        "options": options_to_json(options),
    }
    return WorkerJob(python, request).start()


def worker_model_info(
    python: str | os.PathLike[str], model: str, timeout: float = 120.0
) -> dict[str, Any]:
    """Load ``model`` in the external runtime and return :func:`model_summary` of it."""
    job = WorkerJob(python, {"command": "info", "model": str(model), "options": {}}).start()
    return job.info(timeout)


if __name__ == "__main__":
    sys.exit(main())
