"""Blender batch bake: each clip into its own copy of a scene (``OUTDIR/<clip>.blend``).

The worker that animated the clip hands the result to Blender, which opens the scene, bakes
the curves onto the object's shape keys with the add-on's own bake code (auto-mapped names,
an Action of the artist's kept by baking to an NLA strip), adds the sound strip, extends the
frame range and saves the copy under a hidden temporary name that is then renamed: a killed
Blender leaves no partial ``.blend``.

Blender runs as (first that applies): the worker's own Python when it imports ``bpy``
(Blender as a module, in-process), a Python with the ``bpy`` module (``--blender-python``,
e.g. a venv with ``pip install bpy``: its NumPy<2 keeps it apart from a2x's), or Blender's
binary in background mode (``--blender-exe``). The last two run this file as a script::

    python blender_bake.py REQUEST.json
    blender -b --factory-startup --python-exit-code 1 --python blender_bake.py -- REQUEST.json

and print ``A2X_BAKE {json}`` on success.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script inside Blender: find a2x_core beside us
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from a2x_core.errors import OutputError, ParameterError  # noqa: E402

RESULT_MARK = "A2X_BAKE "
#: The add-on's bake code, beside the package in a source checkout.
ADDON_BAKE = Path(__file__).resolve().parents[2] / "plugins" / "blender" / "bake.py"
BAKE_TIMEOUT_S = 600
_BPY_LOCK = threading.Lock()


def _addon_bake() -> Any:
    """The add-on's ``bake`` module (bpy side), loaded from its file."""
    if "a2x_addon_bake" in sys.modules:
        return sys.modules["a2x_addon_bake"]
    if not ADDON_BAKE.exists():
        raise ParameterError("the Blender add-on's bake code is not beside a2x_core",
                             path=ADDON_BAKE, hint="run a2x batch from an a2x source checkout")  # fmt: skip
    spec = importlib.util.spec_from_file_location("a2x_addon_bake", ADDON_BAKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bake_request(request: dict[str, Any]) -> dict[str, Any]:
    """In Blender: open the scene, bake, add the sound, save the copy atomically."""
    import bpy

    from a2x_core.retarget import auto_map, plan_bake, scene_fps
    from a2x_core.worker import options_from_json, result_from_json

    bake = _addon_bake()
    result = result_from_json(request["result"], options_from_json(request["options"]))
    bpy.ops.wm.open_mainfile(filepath=request["scene"], load_ui=False)
    obj = bpy.data.objects.get(request["object"])
    if obj is None:
        names = ", ".join(o.name for o in bpy.data.objects if getattr(o.data, "shape_keys", None))
        raise ParameterError(f"no object {request['object']!r} in the scene", path=request["scene"],
                             hint=f"objects with shape keys: {names or 'none'}")  # fmt: skip
    key = getattr(obj.data, "shape_keys", None)
    if key is None:
        raise ParameterError(f"object {obj.name!r} has no shape keys", path=request["scene"],
                             hint="name the face mesh that holds the ARKit shapes")  # fmt: skip
    scene = bpy.context.scene
    fps = scene_fps(scene.render.fps, scene.render.fps_base)
    start = int(scene.frame_start)
    rows = list(auto_map([b.name for b in key.key_blocks if b != key.reference_key]).targets)
    plan = plan_bake(result, rows, fps, start)
    done = bake.bake_key(key, plan, use_nla=bake.artist_action(key) is not None,
                         metadata={"audio": request["audio"], "model": request["model"],
                                   "start_frame": start})  # fmt: skip
    bake.sync_sound_strip(scene, request["audio"], start)
    bake.extend_frame_range(scene, done.frame_range[1])
    target = Path(request["output"])
    temp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.blend")
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(temp), copy=True, check_existing=False)
        if not request.get("overwrite") and target.exists():
            raise OutputError("already exists", path=target, hint="pass --overwrite to replace it")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return {"object": obj.name, "channels": done.channels, "keys": done.keys_per_channel,
            "frames": list(done.frame_range), "output": str(target)}  # fmt: skip


def bake_with_blender(blend: dict[str, Any], result: Any, blender: dict[str, Any], *,
                      overwrite: bool) -> dict[str, Any]:  # fmt: skip
    """From a worker: bake ``result`` per ``blend`` (scene, object, audio, output) in Blender."""
    from a2x_core.worker import result_to_json

    request = {**blend, "result": result_to_json(result), "overwrite": overwrite,
               "options": _options_json(result)}  # fmt: skip
    _remove_dead_temps(Path(blend["output"]))
    python, exe = blender.get("python"), blender.get("exe")
    if not python and not exe:
        if importlib.util.find_spec("bpy") is None:
            raise ParameterError("--blend needs Blender: this worker's Python has no bpy module",
                                 hint="pass --blender-python PYTHON_WITH_BPY or --blender-exe "
                                 "PATH/blender")  # fmt: skip
        with _BPY_LOCK:  # one Blender per process: the writer pool's threads take turns
            return bake_request(request)
    with tempfile.TemporaryDirectory(prefix="a2x-bake-") as folder:
        request_file = Path(folder) / "request.json"
        request_file.write_text(json.dumps(request), encoding="utf-8")
        script = str(Path(__file__).resolve())
        if python:
            argv = [python, script, str(request_file)]
        else:
            argv = [exe, "-b", "--factory-startup", "--python-exit-code", "1", "--python", script,
                    "--", str(request_file)]  # fmt: skip
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)  # the script finds a2x_core itself; no foreign packages
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=folder,
                                  timeout=BAKE_TIMEOUT_S)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ParameterError(f"Blender could not run ({error})", path=argv[0],
                                 hint="check --blender-python / --blender-exe") from None  # fmt: skip
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    error_lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    message = next((ln.split("A2X_BAKE_ERROR ", 1)[1] for ln in reversed(error_lines)
                    if "A2X_BAKE_ERROR " in ln), " | ".join(error_lines[-3:]))  # fmt: skip
    raise ParameterError(f"Blender bake failed (exit {proc.returncode}): {message}",
                         path=blend["scene"])  # fmt: skip


def _remove_dead_temps(target: Path) -> None:
    """The temporary copies a killed Blender left for this clip (its PID no longer runs)."""
    from a2x_core.export.writers import _pid_alive

    for stale in target.parent.glob(f".{glob.escape(target.stem)}.*.tmp.blend"):
        pid = stale.name[len(target.stem) + 2 : -len(".tmp.blend")]
        if pid.isdigit() and not _pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


def _options_json(result: Any) -> dict[str, Any]:
    from a2x_core.worker import options_to_json

    return options_to_json(result.options)


def main(argv: list[str]) -> int:
    """Script entry inside Blender: the request file is the last argument."""
    args = argv[argv.index("--") + 1:] if "--" in argv else argv[1:]
    request = json.loads(Path(args[-1]).read_text(encoding="utf-8"))
    try:
        summary = bake_request(request)
    except Exception as error:  # noqa: BLE001 - reported to the worker as one line
        print(f"A2X_BAKE_ERROR {type(error).__name__}: {error}", flush=True)
        return 1
    print(RESULT_MARK + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
