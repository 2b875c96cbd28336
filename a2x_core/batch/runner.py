"""The client side of ``a2x batch``: plan, connect, submit, collect, report.

Idioms (``docs/batch.md``; measurements in ``../shared/docs/streaming_services.md`` §5):

- one Dask task per ``chunk`` clips of one model (``client.submit(run_task, key=...)``); the
  key holds the clip's input digest, so resubmitting the same work is a no-op for Dask too;
- clips of one model are submitted back to back (``priority``): every worker runs one model's
  clips in a row on its warm copy (:func:`~a2x_core.batch.work.warm_model`), and on GPU
  workers a task's clips are one batched call;
- retries: ``retries=`` re-runs a task that raised; a task whose worker died is rescheduled
  by Dask, and a task that was on ``allowed-failures + 1`` = 2 dying workers is given up
  (``KilledWorker``): a task of one clip marks it failed, not retried forever; a task of
  several is split into one task per clip, so that only the clip that kills its workers fails;
- Ctrl-C: pending futures are cancelled, the report says ``cancelled`` for them, the cluster
  is closed; workers write atomically, so whatever was stopped left nothing half-written.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import A2XError, ParameterError
from ..options import InferenceOptions
from . import ledger
from .manifest import Clip
from .report import write_report

#: Dask settings of a local cluster (and of a client's own scheduler): a task counted on two
#: dying workers fails; one task per worker thread at a time, so that a crash counts against
#: the clip that caused it rather than a clip waiting behind it.
DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": 1,
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.worker.daemon": False,  # the default model's long-clip decoder pool
    # the statistical profiler samples every worker's stack each 10 ms: measured 1.75x the
    # default model's time per clip on the 2-core VM (13.8 s → 7.9 s for 29 clips)
    "distributed.worker.profile.enabled": False,
    # periodic bookkeeping that a batch does not use, on the cores the clips need: stealing
    # (tasks wait on the scheduler's queue: worker-saturation), the dashboard's system monitor
    # and the event loop's health ticks
    "distributed.scheduler.work-stealing": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "500ms",
}

Progress = Callable[[dict[str, Any]], None]


@dataclass
class BatchSettings:
    """What every clip shares; a manifest row can change the model and some options."""

    outdir: Path
    formats: tuple[str, ...] = (".json",)
    model: str = "default"
    options: InferenceOptions = field(default_factory=InferenceOptions)
    engine: dict[str, Any] = field(default_factory=lambda: {"backend": "auto"})
    overwrite: bool = False
    blend: Path | None = None
    object_name: str | None = None
    blender: dict[str, str | None] = field(default_factory=dict)
    chunk: int = 1
    retries: int = 1
    render: dict[str, Any] | None = None  # --render/--export-fbx (render_step.render_settings)
    emotion_model: str | None = None
    #: clips per ``animate_many`` call inside a task (None: the whole task's group): smaller
    #: steps let a GPU worker write one step's clips while it animates the next
    step: int | None = None


#: ``--chunk`` and the step inside it when the command line names none. GPU: large tasks, one
#: batched call each (measured on an H200, 200 clips in one task: steps of 100/50/32 took
#: 3.8/4.7/4.0 s against 3.6 s for one call: the call's own host work, not decoding or
#: writing, bounds it, and smaller calls only add rounds); CPU: a few clips per task, which
#: spares Dask round trips (worker CPU per clip -15 %, client -45 % against one per task)
#: and still spreads over the workers.
DEFAULT_CHUNK = {"gpu": 256, "cpu": 4}
DEFAULT_STEP: dict[str, int | None] = {"gpu": None, "cpu": None}


@dataclass
class BatchPlan:
    tasks: list[dict[str, Any]]
    rows: dict[str, dict[str, Any]]  # skipped or failed before any work
    order: list[str]  # clip names in manifest order
    clips: dict[str, dict[str, Any]]


def require_dask() -> Any:
    """``distributed``, or an error naming the extra that installs it."""
    try:
        import distributed
    except ImportError:
        raise ParameterError("a2x batch runs on Dask, which is not installed",
                             hint="pip install 'a2x[batch]' (dask[distributed])") from None  # fmt: skip
    return distributed


def _model_input(spec: str, cache: dict[str, Any]) -> dict[str, Any]:
    """What identifies a model for resuming: its spec and model.json's digest."""
    if spec not in cache:
        if spec == "default":  # its version changes with what it makes of the same inputs
            from ..lipsync.model import DefaultLipSyncModel

            cache[spec] = {"spec": "default", "version": DefaultLipSyncModel.version}
        else:
            from ..models.registry import resolve_model_json

            try:
                path = resolve_model_json(spec)
                cache[spec] = {"spec": spec, "sha256": ledger.file_sha256(path)}
            except (A2XError, OSError) as error:
                cache[spec] = {"spec": spec, "error": str(error)}
    return cache[spec]


def _emotion_input(path: str | None, cache: dict[str, Any]) -> dict[str, Any] | None:
    """What identifies an Audio2Emotion model for resuming: its path and model.json's digest."""
    if path is None:
        return None
    if path not in cache:
        file = Path(path)
        file = file / "model.json" if file.is_dir() else file
        try:
            cache[path] = {"spec": path, "sha256": ledger.file_sha256(file)}
        except OSError as error:
            cache[path] = {"spec": path,
                           "error": f"{file}: cannot read the emotion model ({error.strerror})"}  # fmt: skip
    return cache[path]


def _clip_options(clip: Clip, common: InferenceOptions) -> InferenceOptions:
    changes: dict[str, Any] = {}
    for name in ("transcript", "language", "identity", "emotions", "fps"):
        value = getattr(clip, name)
        if value is not None:
            changes[name] = value
    try:
        return common.with_changes(**changes) if changes else common
    except A2XError as error:
        raise ParameterError(f"{clip.row}: {error}") from None


def plan_batch(clips: list[Clip], settings: BatchSettings) -> BatchPlan:
    """Per clip: its options, inputs digest and outputs; clips already done are skipped.

    Raises:
        ParameterError: a row's options are invalid, or rows and ``--blend`` disagree.
    """
    from ..worker import options_to_json

    outdir = settings.outdir.resolve()
    models: dict[str, Any] = {}
    emotion_models: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    grouped: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    specs: dict[str, dict[str, Any]] = {}
    scene_sha256 = _digest(settings.blend)
    for clip in clips:
        spec = clip.model or settings.model
        options = _clip_options(clip, settings.options)
        audio = clip.audio.resolve()
        outputs = [outdir / f"{clip.name}{suffix}" for suffix in settings.formats]
        blend = None
        rig = clip.rig or settings.object_name
        if clip.rig and settings.blend is None:
            raise ParameterError(f"{clip.row}: a rig {clip.rig!r} but no scene",
                                 hint="pass --blend scene.blend")  # fmt: skip
        if settings.blend is not None:
            if not rig:
                raise ParameterError(f"{clip.row}: no object to bake onto",
                                     hint="pass --object NAME or fill the 'rig' column")  # fmt: skip
            outputs.append(outdir / f"{clip.name}.blend")
            blend = {"scene": str(settings.blend.resolve()), "object": rig, "audio": str(audio),
                     "output": str(outputs[-1]), "model": spec}  # fmt: skip
            if settings.render:  # a2x render's path (render_step.py): video/FBX, not a copy
                from .render_step import planned_outputs

                outputs[-1:] = planned_outputs(outdir, clip.name, settings.render)
                blend["render"] = settings.render
        model_input = _model_input(spec, models)
        emotion_spec = clip.emotion_model or settings.emotion_model
        emotion_input = _emotion_input(emotion_spec, emotion_models)
        entry: dict[str, Any] = {
            "name": clip.name, "audio": str(audio), "options": options_to_json(options),
            "outputs": [str(p) for p in outputs], "blend": blend,
            "inputs": {"model": spec, "model_id": model_input, "options": options_to_json(options),
                       "formats": list(settings.formats), "engine": settings.engine,
                       "blend": blend and {**blend, "scene_sha256": scene_sha256}},
        }  # fmt: skip
        if emotion_input is not None:  # absent otherwise: records of earlier runs still match
            entry["inputs"]["emotion_model"] = emotion_input
        specs[clip.name] = entry
        try:
            entry["inputs"]["audio_sha256"] = ledger.file_sha256(audio)
        except OSError as error:
            rows[clip.name] = _early_row(entry, "failed", f"{audio}: cannot read ({error.strerror})")
            continue
        entry["fingerprint"] = ledger.fingerprint(entry["inputs"])
        if "error" in model_input or (emotion_input or {}).get("error"):
            error = model_input.get("error") or (emotion_input or {})["error"]
            rows[clip.name] = _early_row(entry, "failed", error)
        elif not settings.overwrite and ledger.is_done(outdir, clip.name, entry["fingerprint"],
                                                       outputs):  # fmt: skip
            rows[clip.name] = _early_row(entry, "skipped", "")
        else:
            grouped.setdefault((spec, emotion_spec), []).append(entry)
    tasks = []
    for (spec, emotion_spec), entries in grouped.items():
        for start in range(0, len(entries), max(1, settings.chunk)):
            tasks.append({
                "model": spec, "engine": settings.engine, "outdir": str(outdir),
                "overwrite": settings.overwrite, "formats": list(settings.formats),
                "blender": settings.blender, "clips": entries[start:start + settings.chunk],
                "emotion_model": emotion_spec, "step": settings.step,
            })  # fmt: skip
    return BatchPlan(tasks=tasks, rows=rows, order=[c.name for c in clips], clips=specs)


def _digest(path: Path | None) -> str:
    try:
        return ledger.file_sha256(path) if path is not None else ""
    except OSError as error:
        raise ParameterError(f"cannot read the scene ({error.strerror})", path=path,
                             hint="pass an existing .blend") from None  # fmt: skip


def _early_row(entry: dict[str, Any], status: str, error: str) -> dict[str, Any]:
    return {"clip": entry["name"], "audio": entry["audio"], "status": status, "error": error,
            "seconds": 0.0, "model": entry["inputs"]["model"], "engine": "", "worker": "",
            "outputs": [Path(p).name for p in entry["outputs"]], "warnings": []}  # fmt: skip


@contextlib.contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None,
                gpu: bool = False) -> Iterator[Any]:  # fmt: skip
    """A Dask client: of an existing cluster (``scheduler``), else of a local one with
    ``workers`` single-threaded processes (default: one per core; with ``gpu``, one per GPU
    where dask-cuda is installed, else one). Closed, with its cluster, on the way out
    (Ctrl-C included)."""
    distributed = require_dask()
    import dask

    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # Dask's own INFO lines are not the user's business
    with dask.config.set(DASK_CONFIG), _restore_level(quiet, level):
        if scheduler:
            try:
                client = distributed.Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as error:
                raise ParameterError(f"cannot reach the Dask scheduler {scheduler} ({error})",
                                     hint="give tcp://HOST:PORT of a running `dask scheduler` "
                                     "(workers: `dask worker tcp://HOST:8786`)") from None  # fmt: skip
            cluster = None
        else:
            cluster = _local_cluster(distributed, workers, gpu)
            client = distributed.Client(cluster)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close(timeout=10)


@contextlib.contextmanager
def _restore_level(logger: logging.Logger, level: int) -> Iterator[None]:
    try:
        yield
    finally:
        logger.setLevel(level)


def _local_cluster(distributed: Any, workers: int | None, gpu: bool) -> Any:
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be at least 1, found {workers}")
    # Worker processes log at CRITICAL only: a clip's error is in the report, and a stop
    # (Ctrl-C) closing the scheduler first made workers print heartbeat tracebacks.
    # The scheduler's HTTP server (health routes; no dashboard) on a free loopback port: its
    # default, 8787, is often taken on a shared farm node and it then warned on stderr.
    common = {"threads_per_worker": 1, "dashboard_address": "127.0.0.1:0",
              "silence_logs": logging.CRITICAL, "scheduler_kwargs": {"dashboard": False}}
    if gpu and workers is None:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            workers = 1  # without dask-cuda every worker would land on the same GPU
        else:
            return LocalCUDACluster(**common)
    return distributed.LocalCluster(n_workers=workers or os.cpu_count() or 1, processes=True,
                                    **common)  # fmt: skip


def run_batch(plan: BatchPlan, client: Any, settings: BatchSettings,
              on_progress: Progress | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Run the planned tasks on ``client``'s cluster; write the report; rows in manifest order.

    A KeyboardInterrupt (Ctrl-C, SIGTERM in the CLI) cancels what has not finished, writes
    the report with those clips ``cancelled`` and is re-raised.
    """
    import distributed

    from .work import run_task

    rows = dict(plan.rows)
    futures = {}

    def submit(task: dict[str, Any], priority: int, tail: str = "") -> Any:
        first = task["clips"][0]
        key = f"a2x-batch-{first['name']}-{first['fingerprint'][:16]}{tail}"
        future = client.submit(run_task, task, key=key, retries=settings.retries, pure=False,
                               priority=priority)  # fmt: skip
        futures[future] = task
        return future

    for index, task in enumerate(plan.tasks):
        # earlier tasks first: one model's clips back to back on every worker
        submit(task, len(plan.tasks) - index)
    interrupted = False
    try:
        running = distributed.as_completed(list(futures))
        for future in running:
            task = futures[future]
            finished, error = _outcome(future)
            if finished is None:
                # clips the task did write before its worker died (or before its row was lost
                # with the worker) are done: their records say so
                recorded = {c["name"]: _recorded_row(c, settings.outdir) for c in task["clips"]}
                pending = [c for c in task["clips"] if recorded[c["name"]] is None]
                if type(error).__name__ == "KilledWorker" and len(pending) > 1:
                    rows.update({n: r for n, r in recorded.items() if r is not None})
                    for clip in pending:  # one task per clip: only the culprit fails
                        running.add(submit({**task, "clips": [clip]}, len(plan.tasks) + 1, "-alone"))
                    continue
                finished = [recorded[c["name"]] or _failed_row(c, error) for c in task["clips"]]
            for row in finished:
                rows[row["clip"]] = row
            if on_progress is not None:
                on_progress(rows)
    except KeyboardInterrupt:
        interrupted = True
        with contextlib.suppress(Exception):
            client.cancel(list(futures), force=True)
        raise
    finally:
        for name in plan.order:
            if name not in rows:
                rows[name] = _early_row(plan.clips[name], "cancelled",
                                        "the run stopped first" if interrupted else "not run")  # fmt: skip
        ordered = [rows[name] for name in plan.order]
        write_report(settings.outdir, ordered, {"interrupted": interrupted})
    return ordered


def _outcome(future: Any) -> tuple[list[dict[str, Any]] | None, BaseException | None]:
    """``(rows, None)`` of a finished task, else ``(None, its error)``; a result lost with its
    worker after the task finished (the rows live on the worker until fetched) is an error."""
    try:
        if future.status == "finished":
            return future.result(), None
        return None, future.exception()
    except Exception as error:  # noqa: BLE001 - KilledWorker, CancelledError, lost comms
        return None, error


def _recorded_row(clip: dict[str, Any], outdir: Path) -> dict[str, Any] | None:
    """The row of a clip whose outputs and done record are on disk, though its task's rows
    never came back (its worker died after writing it); None when it is not done."""
    outputs = [Path(p) for p in clip["outputs"]]
    if not ledger.is_done(outdir.resolve(), clip["name"], clip["fingerprint"], outputs):
        return None
    record = ledger.read_record(outdir.resolve(), clip["name"]) or {}
    return {**_early_row(clip, "done", ""), "worker": str(record.get("worker", ""))}


def _failed_row(clip: dict[str, Any], error: BaseException | None) -> dict[str, Any]:
    name = type(error).__name__
    if name == "KilledWorker":
        text = "crashed its Dask worker twice (a worker process died while running it); not retried"
    else:
        text = f"{name}: {error}"
    return _early_row(clip, "failed", text)
