"""What a Dask worker runs for ``a2x batch``: one task = a few clips of one model.

The model is loaded once per worker process and kept warm (:data:`_MODELS`, keyed by the
model spec and engine settings; an Audio2Emotion model likewise), so the clips the client
sends to the same workers skip the load; a task's clips that share their options are
animated in ``animate_many`` calls of ``step`` clips (on a GPU worker: one batched executor
call for all of them).

The host work around those calls runs beside them (:func:`_animate_group`): the clips are
decoded and resampled on a thread pool ahead of the call that needs them, and each animated
clip is written (outputs, then its record) on a writer pool while the next call runs. The
task returns when every clip of it is written, so a row that says ``done`` always has its
files and record on disk.

Every output is written atomically (:class:`~a2x_core.export.writers.OutputSet`): a worker killed
mid-write leaves a hidden temporary file, never a partial output; the clip's record goes
last (:mod:`.ledger`). Nothing here raises for a bad clip: each clip returns its own row.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import A2XError

#: Models kept warm in this worker process (spec + engine settings → loaded model).
_MODELS: OrderedDict[str, Any] = OrderedDict()
_MODELS_KEPT = 4
_MODELS_LOCK = threading.Lock()

#: Threads per worker process for decoding and for writing (each its own pool): host work that
#: mostly waits on files or runs in C (soundfile, soxr, json's encoder, rename).
HOST_THREADS = max(1, min(4, os.cpu_count() or 1))
_POOLS: dict[str, ThreadPoolExecutor] = {}


def warm_model(spec: str, engine: dict[str, Any]) -> Any:
    """The loaded model for ``spec`` in this process (loaded on first use, then reused)."""
    from ..models.registry import load_model

    return _warm(json.dumps([spec, engine], sort_keys=True), lambda: load_model(spec, **engine))


def warm_emotion_model(path: str, options: Any) -> Any:
    """The loaded Audio2Emotion model at ``path`` for ``options``' engine in this process
    (its other windows are made on use, so the window is not part of the key)."""
    from ..backends import EngineSettings
    from ..models.audio2emotion import EmotionModel

    engine = EngineSettings.of(options)
    key = json.dumps(["emotion", path, engine.backend, engine.threads, engine.device,
                      engine.precision])  # fmt: skip
    return _warm(key, lambda: EmotionModel.load(path, engine, buffer_length=options.emotion_window))


def _warm(key: str, load: Callable[[], Any]) -> Any:
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = load()
            _MODELS[key] = model
            while len(_MODELS) > _MODELS_KEPT:
                _MODELS.popitem(last=False)
        _MODELS.move_to_end(key)
        return model


def _pool(name: str) -> ThreadPoolExecutor:
    """This process's ``name`` pool (made on first use, kept for the worker's life)."""
    with _MODELS_LOCK:
        pool = _POOLS.get(name)
        if pool is None:
            pool = ThreadPoolExecutor(HOST_THREADS, thread_name_prefix=f"a2x-batch-{name}")
            _POOLS[name] = pool
        return pool


def _allow_child_processes() -> None:
    """Let the default model start its decoder pool inside a daemonic ``dask worker``.

    ``dask worker`` runs its worker processes as daemons (the local cluster of ``a2x batch``
    does not: ``distributed.worker.daemon`` False), and multiprocessing refuses children to a
    daemon, because they would outlive it. The decoder pool's processes end with their parent
    by themselves (``lipsync/parallel.py``: PR_SET_PDEATHSIG or a watcher thread), so the flag
    is dropped for this process rather than animating with other settings than ``a2x animate``.
    """
    import multiprocessing

    config = getattr(multiprocessing.current_process(), "_config", None)
    if isinstance(config, dict) and config.get("daemon"):
        config["daemon"] = False


def _decode_in_this_process() -> None:
    """Let the default model decode short clips in this worker process.

    Off the main thread (a Dask task's thread) the default model sends every clip to its
    decoder pool of one process per core, to keep pocketsphinx's GIL off a DCC's UI thread.
    A batch worker has no UI, and it is itself one of the cluster's per-core processes: the
    pool added processes on every core and a round trip per clip (measured on the 2-core VM,
    16 clips of 1-2 s in tasks of 4 off the main thread: 0.49 CPU-s per clip with the pool,
    0.44 without, pool start included). Long clips are still split over the pool, as
    ``a2x animate`` splits them; the phones are the same either way (one decoder, same input).
    """
    from ..lipsync.parallel import decode_in_workers_only

    decode_in_workers_only(False)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Animate, write and record every clip of ``task``; one report row per clip.

    ``task``: ``{"model", "engine", "outdir", "overwrite", "formats", "blender", "clips":
    [{"name", "audio", "options", "fingerprint", "inputs", "outputs", "blend"}]}`` and
    optionally ``"emotion_model"`` (an Audio2Emotion model.json) and ``"step"`` (clips per
    ``animate_many`` call; default all of the group) (built by
    :func:`a2x_core.batch.runner.plan_batch`).
    """
    from ..api import Animator
    from ..worker import options_from_json
    from . import ledger

    _allow_child_processes()
    _decode_in_this_process()
    rows: dict[str, dict[str, Any]] = {}
    try:
        model = warm_model(task["model"], task["engine"])
    except A2XError as error:
        return [_row(clip, "failed", str(error), 0.0) for clip in task["clips"]]
    outdir = Path(task["outdir"])
    ledger.remove_dead_temps(outdir)  # once per task, not per record
    stale = _stale_outputs(outdir, task["clips"])
    by_options: dict[str, list[dict[str, Any]]] = {}
    for clip in task["clips"]:
        by_options.setdefault(json.dumps(clip["options"], sort_keys=True), []).append(clip)
    for group in by_options.values():
        try:
            options = options_from_json(group[0]["options"])
            emotion_model = None
            if task.get("emotion_model"):
                emotion_model = warm_emotion_model(task["emotion_model"], options)
            animator = Animator(model, options, emotion_model=emotion_model)
        except A2XError as error:
            rows.update({c["name"]: _row(c, "failed", str(error), 0.0) for c in group})
            continue
        rows.update(_animate_group(animator, options, group, task, stale))
    return [rows[clip["name"]] for clip in task["clips"]]


def _stale_outputs(outdir: Path, clips: list[dict[str, Any]]) -> set[str]:
    """Names of the task's outputs that have temporary files beside them (a killed worker's):
    one folder listing per task, where each output's own sweep would list it per file."""
    try:
        hidden = [n for n in os.listdir(outdir) if n.startswith(".") and n.endswith(".tmp")]
    except OSError:
        return set()
    if not hidden:
        return set()
    from ..export.writers import _temp_stem

    paths = [Path(p) for clip in clips for p in clip["outputs"]]
    return {p.name for p in paths if any(h.startswith(_temp_stem(p)) for h in hidden)}


def _decode(clip: dict[str, Any], options: Any) -> tuple[Any, float, str]:
    """(audio or None, seconds, error) of one clip, on the decode pool."""
    from ..audio.decode import decode_audio

    began = time.perf_counter()
    try:
        audio = decode_audio(clip["audio"], start_s=options.start_s, end_s=options.end_s)
    except A2XError as error:
        return None, time.perf_counter() - began, str(error)
    return audio, time.perf_counter() - began, ""


def _animate_group(animator: Any, options: Any, clips: list[dict[str, Any]],
                   task: dict[str, Any], stale: set[str]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Decode every clip ahead on the decode pool (a bad one fails alone), animate ``step``
    clips per call (when a call fails, each of its clips again alone, so that only the
    culprit fails), and hand each result to the writer pool while the next call runs."""
    rows: dict[str, dict[str, Any]] = {}
    decoding = [(clip, _pool("decode").submit(_decode, clip, options)) for clip in clips]
    step = max(1, int(task.get("step") or len(clips)))
    writing: list[tuple[dict[str, Any], Future[dict[str, Any]]]] = []
    try:
        for start in range(0, len(decoding), step):
            decoded = []
            for clip, future in decoding[start:start + step]:
                audio, seconds, error = future.result()
                if audio is None:
                    rows[clip["name"]] = _row(clip, "failed", error, seconds)
                else:
                    decoded.append((clip, audio, seconds))
            for clip, result, seconds, error in _animate_step(animator, decoded):
                if result is None:
                    rows[clip["name"]] = _row(clip, "failed", error, seconds)
                    continue
                writing.append((clip, _pool("write").submit(_write_row, clip, result, seconds,
                                                            task, stale)))  # fmt: skip
    finally:
        problem = None
        for clip, future in writing:  # every write ends before the task does
            try:
                rows[clip["name"]] = future.result()
            except BaseException as error:  # noqa: BLE001 - re-raised once all have ended
                problem = problem or error
        for _, future in decoding:
            future.cancel()
        if problem is not None:
            raise problem
    return rows


def _animate_step(animator: Any, decoded: list[tuple[dict[str, Any], Any, float]]
                  ) -> list[tuple[dict[str, Any], Any, float, str]]:  # fmt: skip
    """``(clip, result or None, seconds, error)`` per decoded clip: one ``animate_many`` call,
    or each clip alone when that call fails."""
    if not decoded:
        return []
    began = time.perf_counter()
    try:
        results = animator.animate_many([audio for _, audio, _ in decoded])
    except A2XError:
        pass
    else:
        share = (time.perf_counter() - began) / len(decoded)
        return [(clip, result, seconds + share, "")
                for (clip, _, seconds), result in zip(decoded, results, strict=True)]  # fmt: skip
    done = []
    for clip, audio, seconds in decoded:
        began = time.perf_counter()
        try:
            done.append((clip, animator.animate(audio), seconds + time.perf_counter() - began, ""))
        except A2XError as error:
            done.append((clip, None, seconds + time.perf_counter() - began, str(error)))
    return done


def _write_row(clip: dict[str, Any], result: Any, seconds: float, task: dict[str, Any],
               stale: set[str]) -> dict[str, Any]:  # fmt: skip
    """On the writer pool: the clip's files and record, then its report row."""
    began = time.perf_counter()
    engine = str(result.parameters.get("engine") or ("lipsync" if task["model"] == "default"
                                                      else task["engine"]["backend"]))  # fmt: skip
    try:
        write_clip(clip, result, task, stale=stale)
    except A2XError as error:
        return _row(clip, "failed", str(error), seconds, engine=engine)
    return _row(clip, "done", "", seconds + time.perf_counter() - began, engine=engine,
                warnings=result.warnings)  # fmt: skip


def write_clip(clip: dict[str, Any], result: Any, task: dict[str, Any], *,
               stale: set[str] | None = None) -> None:  # fmt: skip
    """The clip's outputs (all or none), its Blender scene copy, then its record.

    A pending record goes first: a retry of this clip (after its worker was killed between
    the outputs and the record) then knows the outputs are the batch's own to replace; an
    output of the same name that no batch wrote is refused unless ``--overwrite``.
    ``stale``: the output names that have temporary files beside them (:func:`_stale_outputs`,
    listed once per task); None lists the folder for each output.
    """
    from ..export.writers import OutputSet, remove_stale_temps, stage_result
    from . import ledger

    outdir = Path(task["outdir"])
    name = clip["name"]
    overwrite = bool(task["overwrite"]) or ledger.owns(outdir, name)
    ledger.write_record(outdir, name, {"fingerprint": None, "state": "writing",
                                       "inputs": clip["inputs"]}, sweep=False)  # fmt: skip
    files = [Path(p) for p in clip["outputs"]]
    for path in files:  # a killed worker's temporary files of this clip (Dask runs it once)
        if stale is None or path.name in stale:
            remove_stale_temps(path, recent=True)
    with OutputSet(overwrite=overwrite, sweep=False) as staged:
        for path in files:
            if path.suffix.lower() not in (".blend", ".mp4", ".fbx"):  # Blender writes those
                stage_result(staged, result, path)
        staged.commit()
    if clip.get("blend") and clip["blend"].get("render"):  # --render/--export-fbx
        from .render_step import render_clip

        render_clip(clip, result, task["blender"], overwrite=overwrite)
    elif clip.get("blend"):
        from .blender_bake import bake_with_blender

        bake_with_blender(clip["blend"], result, task["blender"], overwrite=overwrite)
    ledger.write_record(outdir, name, {
        "fingerprint": clip["fingerprint"], "state": "done", "inputs": clip["inputs"],
        "outputs": [p.name for p in files], "worker": _worker_name(),
    }, sweep=False)  # fmt: skip


def _row(clip: dict[str, Any], status: str, error: str, seconds: float, *,
         engine: str = "", warnings: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    return {
        "clip": clip["name"], "audio": clip["audio"], "status": status, "error": error,
        "seconds": round(seconds, 4), "model": clip["inputs"]["model"], "engine": engine,
        "worker": _worker_name(), "outputs": [Path(p).name for p in clip["outputs"]],
        "warnings": list(warnings),
    }  # fmt: skip
