"""What a Dask worker runs for ``a2x batch``: one task = a few clips of one model.

The model is loaded once per worker process and kept warm (:data:`_MODELS`, keyed by the
model spec and engine settings), so the clips the client sends to the same workers skip the
load; a task's clips that share their options are animated in one ``animate_many`` call
(on a GPU worker: one batched executor call for all of them).

Every output is written atomically (:class:`~a2x_core.exporters.OutputSet`): a worker killed
mid-write leaves a hidden temporary file, never a partial output; the clip's record goes
last (:mod:`.ledger`). Nothing here raises for a bad clip: each clip returns its own row.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import A2XError

#: Models kept warm in this worker process (spec + engine settings → loaded model).
_MODELS: OrderedDict[str, Any] = OrderedDict()
_MODELS_KEPT = 4


def warm_model(spec: str, engine: dict[str, Any]) -> Any:
    """The loaded model for ``spec`` in this process (loaded on first use, then reused)."""
    from ..models import load_model

    key = json.dumps([spec, engine], sort_keys=True)
    model = _MODELS.get(key)
    if model is None:
        model = load_model(spec, **engine)
        _MODELS[key] = model
        while len(_MODELS) > _MODELS_KEPT:
            _MODELS.popitem(last=False)
    _MODELS.move_to_end(key)
    return model


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


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Animate, write and record every clip of ``task``; one report row per clip.

    ``task``: ``{"model", "engine", "outdir", "overwrite", "formats", "blender", "clips":
    [{"name", "audio", "options", "fingerprint", "inputs", "outputs", "blend"}]}``
    (built by :func:`a2x_core.batch.runner.plan_batch`).
    """
    from ..worker import options_from_json

    _allow_child_processes()
    rows: dict[str, dict[str, Any]] = {}
    try:
        model = warm_model(task["model"], task["engine"])
    except A2XError as error:
        return [_row(clip, "failed", str(error), 0.0) for clip in task["clips"]]
    by_options: dict[str, list[dict[str, Any]]] = {}
    for clip in task["clips"]:
        by_options.setdefault(json.dumps(clip["options"], sort_keys=True), []).append(clip)
    for group in by_options.values():
        try:
            options = options_from_json(group[0]["options"])
        except A2XError as error:
            rows.update({c["name"]: _row(c, "failed", str(error), 0.0) for c in group})
            continue
        rows.update(_animate_group(model, options, group, task))
    return [rows[clip["name"]] for clip in task["clips"]]


def _animate_group(model: Any, options: Any, clips: list[dict[str, Any]],
                   task: dict[str, Any]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Decode each clip (a bad one fails alone), animate the rest in one call; when that call
    fails, each clip again on its own so that only the culprit fails."""
    from ..api import Animator
    from ..audio import decode_audio

    rows: dict[str, dict[str, Any]] = {}
    animator = Animator(model, options)
    decoded = []
    for clip in clips:
        began = time.perf_counter()
        try:
            audio = decode_audio(clip["audio"], start_s=options.start_s, end_s=options.end_s)
        except A2XError as error:
            rows[clip["name"]] = _row(clip, "failed", str(error), time.perf_counter() - began)
            continue
        decoded.append((clip, audio, time.perf_counter() - began))
    if not decoded:
        return rows
    began = time.perf_counter()
    try:
        results = animator.animate_many([audio for _, audio, _ in decoded])
        share = (time.perf_counter() - began) / len(decoded)
        done = [(clip, result, seconds + share)
                for (clip, _, seconds), result in zip(decoded, results, strict=True)]  # fmt: skip
    except A2XError:
        done = []
        for clip, audio, seconds in decoded:
            began = time.perf_counter()
            try:
                result = animator.animate(audio)
            except A2XError as error:
                rows[clip["name"]] = _row(clip, "failed", str(error),
                                          seconds + time.perf_counter() - began)  # fmt: skip
                continue
            done.append((clip, result, seconds + time.perf_counter() - began))
    for clip, result, seconds in done:
        began = time.perf_counter()
        engine = str(result.parameters.get("engine") or ("lipsync" if model.kind == "default"
                                                          else task["engine"]["backend"]))  # fmt: skip
        try:
            write_clip(clip, result, task)
        except A2XError as error:
            rows[clip["name"]] = _row(clip, "failed", str(error), seconds, engine=engine)
            continue
        rows[clip["name"]] = _row(clip, "done", "", seconds + time.perf_counter() - began,
                                  engine=engine, warnings=result.warnings)  # fmt: skip
    return rows


def write_clip(clip: dict[str, Any], result: Any, task: dict[str, Any]) -> None:
    """The clip's outputs (all or none), its Blender scene copy, then its record.

    A pending record goes first: a retry of this clip (after its worker was killed between
    the outputs and the record) then knows the outputs are the batch's own to replace; an
    output of the same name that no batch wrote is refused unless ``--overwrite``.
    """
    from ..exporters import OutputSet, remove_stale_temps, stage_result
    from . import ledger

    outdir = Path(task["outdir"])
    name = clip["name"]
    overwrite = bool(task["overwrite"]) or ledger.owns(outdir, name)
    ledger.write_record(outdir, name, {"fingerprint": None, "state": "writing",
                                       "inputs": clip["inputs"]})  # fmt: skip
    files = [Path(p) for p in clip["outputs"]]
    for path in files:  # a killed worker's temporary files of this clip (Dask runs it once)
        remove_stale_temps(path, recent=True)
    with OutputSet(overwrite=overwrite) as staged:
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
    })  # fmt: skip


def _row(clip: dict[str, Any], status: str, error: str, seconds: float, *,
         engine: str = "", warnings: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    return {
        "clip": clip["name"], "audio": clip["audio"], "status": status, "error": error,
        "seconds": round(seconds, 4), "model": clip["inputs"]["model"], "engine": engine,
        "worker": _worker_name(), "outputs": [Path(p).name for p in clip["outputs"]],
        "warnings": list(warnings),
    }  # fmt: skip
