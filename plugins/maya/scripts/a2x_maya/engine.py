"""The player node's compute glue, without Maya: cache, background job, lookup.

Each ``a2xInferencePlayer`` owns a :class:`PlayerEngine`. On every evaluation the node hands
it the current :class:`~a2x_maya.parameters.PlayerInputs`; when their :func:`track_key`
changed, the engine cancels the running job and starts a new one (a
:class:`a2x_core.jobs.Job`: the whole track, off the main thread). Until the new track is
ready the previous one keeps playing (or rest values); playback is only
:meth:`~a2x_maya.track.Track.sample`. A poller on the main thread calls :meth:`poll` and
dirties the node when a track lands.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from a2x_core.errors import A2XError, CancelledError
from a2x_core.jobs import CancelToken, Job, Progress, ProgressCallback

from .parameters import PlaybackControls, PlayerInputs, model_parameter_names, track_key
from .track import FrameValues, Track, rest_frame

log = logging.getLogger("a2x_maya")

#: (model spec, inputs, progress, cancel) -> AnimationResult; swapped by tests.
Runner = Callable[[PlayerInputs, ProgressCallback, CancelToken], Any]


class ModelCache:
    """Loaded models shared by every player (loading a network takes seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], Any] = {}

    def get(self, spec: str, emotion_model: str = "") -> Any:
        """The :class:`a2x_core.api.Animator` for ``spec`` (with an Audio2Emotion model when
        ``emotion_model`` is given), loaded once; both share one loaded face model."""
        from a2x_core.api import Animator

        with self._lock:
            if (spec, "") not in self._models:
                self._models[(spec, "")] = Animator(spec)
            if (spec, emotion_model) not in self._models:
                model = self._models[(spec, "")].model
                self._models[(spec, emotion_model)] = Animator(model, emotion_model=emotion_model)
            return self._models[(spec, emotion_model)]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODELS = ModelCache()


def accepted_parameters(model: Any) -> list[str]:
    """Parameter names the model lists in ``info()["parameters"]`` (none if it lists none;
    a diffusion model lists them per identity, all with the same names)."""
    try:
        info = model.info()
    except Exception:  # a model without info() just takes no overrides
        return []
    return model_parameter_names(info) if isinstance(info, dict) else []


def run_inference(inputs: PlayerInputs, progress: ProgressCallback, cancel: CancelToken) -> Any:
    """The default runner: load (cached) the model and animate the player's audio."""
    animator = MODELS.get(inputs.model, inputs.emotion_model)
    model = animator.model
    options = inputs.options(accepted_parameters(model), getattr(model, "emotion_names", ()))
    return animator.animate(inputs.audio_path, options, progress=progress, cancel=cancel)


@dataclass(frozen=True)
class EngineStatus:
    """What the UI shows: ``state`` is "idle", "computing", "ready" or "error"."""

    state: str
    fraction: float = 0.0
    message: str = ""


class PlayerEngine:
    """Cache + job for one player node. Thread-safe: Maya may evaluate from worker threads.

    Args:
        runner: computes a result from inputs (default :func:`run_inference`).
    """

    def __init__(self, runner: Runner | None = None) -> None:
        self._runner = runner or run_inference
        self._lock = threading.RLock()
        self._track: Track | None = None
        self._track_key: tuple[Any, ...] | None = None
        self._job: Job[Any] | None = None
        self._job_key: tuple[Any, ...] | None = None
        self._job_inputs: PlayerInputs | None = None
        self._status = EngineStatus("idle")
        self._failed_key: tuple[Any, ...] | None = None
        self.warnings: list[str] = []
        ENGINES.add(self)

    # -- inputs ------------------------------------------------------------------------
    def request(self, inputs: PlayerInputs) -> EngineStatus:
        """Make sure a track for ``inputs`` is ready or being computed; never blocks.

        Invalid inputs are reported in the status (not raised): a node must evaluate.
        """
        key = track_key(inputs)
        with self._lock:
            if key == self._track_key:
                if self._track is not None:
                    self._track.offset_s = inputs.offset_s
                return self._status
            if key == self._job_key or key == self._failed_key:
                return self._status
            try:
                inputs.validate()
            except A2XError as error:
                self._cancel_job()
                self._failed_key = key
                self._status = EngineStatus("error", 0.0, str(error))
                return self._status
            self._start(inputs, key)
            return self._status

    def _start(self, inputs: PlayerInputs, key: tuple[Any, ...]) -> None:
        self._cancel_job()
        runner = self._runner
        self._job = Job(lambda progress, cancel: runner(inputs, progress, cancel), "a2x-player")
        self._job_key, self._job_inputs = key, inputs
        self._failed_key = None
        self._status = EngineStatus("computing", 0.0, "starting")
        self._job.start()

    def _cancel_job(self) -> None:
        if self._job is not None:
            self._job.cancel()
        self._job = self._job_key = self._job_inputs = None

    def cancel(self) -> None:
        """Stop the running job (the last finished track keeps playing)."""
        with self._lock:
            if self._job is not None:
                self._cancel_job()
                self._status = EngineStatus("error", 0.0, "cancelled by the user")

    # -- main-thread polling -------------------------------------------------------------
    def poll(self) -> bool:
        """Collect the job's progress or result; True when the outputs changed (a track
        landed or failed), so that the caller dirties the node."""
        with self._lock:
            job = self._job
            if job is None:
                return False
            try:
                progress = job.poll()
            except CancelledError:
                self._job = self._job_key = self._job_inputs = None
                return False
            except Exception as error:  # worker errors end up in the status and the log
                self._failed_key = self._job_key
                self._job = self._job_key = self._job_inputs = None
                message = str(error) if isinstance(error, A2XError) else f"{type(error).__name__}: {error}"
                if not isinstance(error, A2XError):
                    log.exception("a2x player inference failed")
                self._status = EngineStatus("error", 0.0, message)
                return True
            if progress is not None:
                self._status = EngineStatus("computing", progress.fraction, progress.stage)
                return False
            self._land(job.result(), self._job_inputs, self._job_key)
            return True

    def _land(self, result: Any, inputs: PlayerInputs | None, key: tuple[Any, ...] | None) -> None:
        offset = inputs.offset_s if inputs is not None else 0.0
        self._track, self._track_key = Track(result, offset), key
        self._job = self._job_key = self._job_inputs = None
        self.warnings = list(getattr(result, "warnings", []))
        self._status = EngineStatus("ready", 1.0, f"{self._track.num_frames} frames")

    def wait(self, inputs: PlayerInputs, on_progress: Callable[[Progress], bool] | None = None,
             interval_s: float = 0.05) -> Track:
        """Block until the track for ``inputs`` is ready (batch mode, baking).

        Args:
            on_progress: called with each progress report; returning False cancels.

        Raises:
            A2XError: the inputs are invalid or inference failed; CancelledError on cancel.
        """
        inputs.validate()
        status = self.request(inputs)
        key = track_key(inputs)
        while True:
            with self._lock:
                if self._track_key == key and self._track is not None:
                    return self._track
                job = self._job
            if job is None:
                if status.state == "error" or self._status.state == "error":
                    raise A2XError(self._status.message or "inference failed")
                status = self.request(inputs)
                continue
            try:
                job.result(timeout=interval_s)
            except TimeoutError:
                pass
            except BaseException:
                pass  # poll() below turns it into the status
            changed = self.poll()
            status = self._status
            if on_progress is not None and status.state == "computing":
                if not on_progress(Progress(status.fraction, status.message)):
                    self.cancel()
                    raise CancelledError("cancelled by the user")
            if changed and status.state == "error":
                raise A2XError(status.message)

    # -- playback ----------------------------------------------------------------------
    def sample(self, time_s: float, controls: PlaybackControls | None = None) -> FrameValues:
        """The outputs at scene time ``time_s`` from the cached track (rest values if none)."""
        with self._lock:
            track = self._track
        return rest_frame(controls) if track is None else track.sample(time_s, controls)

    @property
    def track(self) -> Track | None:
        with self._lock:
            return self._track

    @property
    def status(self) -> EngineStatus:
        with self._lock:
            return self._status

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._job is not None


#: Every live engine, for the main-thread poller.
ENGINES: weakref.WeakSet[PlayerEngine] = weakref.WeakSet()


def poll_all(engines: Sequence[PlayerEngine] | None = None) -> list[PlayerEngine]:
    """Poll every engine; returns those whose outputs changed (to dirty their nodes)."""
    changed = []
    for engine in list(engines if engines is not None else ENGINES):
        if engine.poll():
            changed.append(engine)
    return changed
