"""``a2x batch --blend``: every clip baked into its own copy of a scene by real Blender (the
``bpy`` module in its own Python, as the workers run it), each copy opened again and checked."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from tests.core.batch_clips import corrupt_clips, cut_clips, write_manifest

pytest.importorskip("distributed")

MAKE_SCENE = """
import sys, bpy
from a2x_core.names import ARKIT_52
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 60, 1.0
scene.frame_start, scene.frame_end = 1, 10
for name in ("Face", "Other"):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for shape in ARKIT_52:
        obj.shape_key_add(name=shape)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])
"""

INSPECT = """
import json, sys, bpy
out = {}
for path in sys.argv[1:]:
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    def keys(obj):
        key = obj.data.shape_keys
        action = key.animation_data.action if key.animation_data else None
        if action is None:
            return {}
        curves = {}
        for layer in getattr(action, "layers", []):
            for strip in layer.strips:
                for bag in strip.channelbags:
                    curves.update({fc.data_path: fc for fc in bag.fcurves})
        if not curves and hasattr(action, "fcurves"):
            curves = {fc.data_path: fc for fc in action.fcurves}
        result = {}
        for data_path, fc in curves.items():
            points = [0.0] * (2 * len(fc.keyframe_points))
            fc.keyframe_points.foreach_get("co", points)
            result[data_path] = points
        return result
    strips = [s for s in scene.sequence_editor.strips_all] if scene.sequence_editor else []
    out[path] = {
        "face": keys(bpy.data.objects["Face"]), "other": keys(bpy.data.objects["Other"]),
        "sounds": [bpy.path.abspath(s.sound.filepath) for s in strips if s.type == "SOUND"],
        "frame_end": scene.frame_end,
    }
print("INSPECT " + json.dumps(out))
"""


def _bpy_python() -> str:
    candidates = [p for p in os.environ.get("A2X_BPY_PYTHONS", "").split(os.pathsep) if p]
    candidates += sorted(str(p) for p in REPO.glob(".venv-bpy*/bin/python"))
    for python in candidates:
        probe = subprocess.run([python, "-c", "import bpy"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            return python
    pytest.skip("no Python with the bpy module (set A2X_BPY_PYTHONS)")


def _run_bpy(python: str, code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONNOUSERSITE="1")
    proc = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.blender
@pytest.mark.timeout(600)
def test_batch_bakes_each_clip_into_its_own_scene_copy(tmp_path: Path) -> None:
    python = _bpy_python()
    scene = tmp_path / "scene.blend"
    _run_bpy(python, MAKE_SCENE, str(scene))
    scene_bytes = scene.read_bytes()
    clips = cut_clips(tmp_path / "in", 2, seconds=0.7)
    bad = corrupt_clips(tmp_path / "in")[0]
    manifest = write_manifest(tmp_path / "in" / "takes.csv", [
        {"audio": clips[0].name, "rig": ""}, {"audio": clips[1].name, "rig": "Other"},
        {"audio": bad.name, "rig": ""},
    ])  # fmt: skip
    out = tmp_path / "out"
    proc = run_cli("batch", str(manifest), "-o", str(out), "--workers", "2", "--blend", str(scene),
                   "--object", "Face", "--blender-python", python, timeout=500)  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the corrupt clip fails, the others bake
    report = {r["clip"]: r for r in json.loads((out / "report.json").read_text())["clips"]}
    assert report[clips[0].stem]["status"] == report[clips[1].stem]["status"] == "done", report
    assert report[bad.stem]["status"] == "failed"
    assert scene.read_bytes() == scene_bytes  # the artist's scene is never written
    blends = [out / f"{c.stem}.blend" for c in clips]
    assert not (out / f"{bad.stem}.blend").exists()
    text = _run_bpy(python, INSPECT, *map(str, blends))
    found = json.loads(text.split("INSPECT ", 1)[1])
    for clip, blend, rig in zip(clips, blends, ("face", "other"), strict=True):
        info = found[str(blend)]
        baked, untouched = info[rig], info["other" if rig == "face" else "face"]
        assert not untouched and len(baked) >= 40  # ARKit shapes keyed on that object only
        exported = json.loads((out / f"{clip.stem}.json").read_text())
        names, weights = exported["facsNames"], np.asarray(exported["weightMat"])
        points = np.asarray(baked['key_blocks["jawOpen"].value']).reshape(-1, 2)
        assert points[0, 0] == pytest.approx(1.0)  # the scene's start frame, at 60 fps
        assert len(points) == len(weights)
        np.testing.assert_allclose(points[:, 1], weights[:, names.index("jawOpen")], atol=1e-5)
        assert info["sounds"] == [str(clip.resolve())]
        assert info["frame_end"] >= len(weights)


def _blender_launcher(folder: Path, python: str) -> Path:
    """An executable named ``blender`` that speaks Blender's command line over the bpy module
    (``tests/core/blender_cli.py``: Blender's binary can't be installed here, Debian's 3.4 is
    older than the add-on's 4.2)."""
    launcher = folder / "bin" / "blender"
    launcher.parent.mkdir(parents=True)
    script = REPO / "tests" / "core" / "blender_cli.py"
    launcher.write_text(f"#!/bin/sh\nexec {shlex.quote(python)} {shlex.quote(str(script))} \"$@\"\n")
    launcher.chmod(0o755)
    return launcher


@pytest.mark.slow
@pytest.mark.blender
@pytest.mark.timeout(600)
def test_batch_bakes_through_blenders_binary_protocol(tmp_path: Path) -> None:
    """``--blender-exe``: the worker runs ``blender -b --factory-startup --python-exit-code 1
    --python blender_bake.py -- REQUEST`` per clip; each copy holds the clip's keys on its
    object; a rig the scene lacks fails that clip with Blender's own message; a path that is
    no program fails with a clear error."""
    python = _bpy_python()
    scene = tmp_path / "scene.blend"
    _run_bpy(python, MAKE_SCENE, str(scene))
    clips = cut_clips(tmp_path / "in", 2, seconds=0.6)
    manifest = write_manifest(tmp_path / "in" / "takes.csv", [
        {"audio": clips[0].name, "rig": "Other"}, {"audio": clips[1].name, "rig": "Nope"},
    ])  # fmt: skip
    blender = _blender_launcher(tmp_path, python)
    out = tmp_path / "out"
    proc = run_cli("batch", str(manifest), "-o", str(out), "--workers", "1", "--blend", str(scene),
                   "--blender-exe", str(blender), timeout=500)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    report = {r["clip"]: r for r in json.loads((out / "report.json").read_text())["clips"]}
    assert report[clips[0].stem]["status"] == "done", report
    assert report[clips[1].stem]["status"] == "failed"
    assert "no object 'Nope' in the scene" in report[clips[1].stem]["error"]
    assert not (out / f"{clips[1].stem}.blend").exists() and not list(out.glob(".*.blend"))
    blend = out / f"{clips[0].stem}.blend"
    found = json.loads(_run_bpy(python, INSPECT, str(blend)).split("INSPECT ", 1)[1])[str(blend)]
    assert not found["face"] and len(found["other"]) >= 40
    weights = np.asarray(json.loads((out / f"{clips[0].stem}.json").read_text())["weightMat"])
    points = np.asarray(found["other"]['key_blocks["jawOpen"].value']).reshape(-1, 2)
    assert len(points) == len(weights) and found["sounds"] == [str(clips[0].resolve())]

    missing = run_cli("batch", str(tmp_path / "in" / "takes.csv"), "-o", str(tmp_path / "out2"),
                      "--workers", "1", "--blend", str(scene), "--object", "Face",
                      "--blender-exe", str(tmp_path / "no-blender"), timeout=300)  # fmt: skip
    assert missing.returncode == 1
    rows = json.loads((tmp_path / "out2" / "report.json").read_text())["clips"]
    assert all("Blender could not run" in row["error"] for row in rows), rows
