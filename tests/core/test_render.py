"""``a2x render``: a real clip baked onto a real Rocketbox head in headless Blender (``bpy``),
rendered with the scene's camera to an MP4 with sound, and exported to FBX with its shape-key
animation. The head is imported from ../shared into a scene made here (never committed: its
licence does not allow redistribution)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE, run_cli

av = pytest.importorskip("av")

pytestmark = [pytest.mark.slow, pytest.mark.blender, pytest.mark.shared]

#: A test scene: the head (Workbench, small frame), a camera in front of its mouth.
MAKE_SCENE = """
import bpy, math, sys
import numpy as np
from mathutils import Vector
fbx, out = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
bpy.ops.import_scene.fbx(filepath=fbx)
scene.render.engine = "BLENDER_WORKBENCH"
scene.render.resolution_x, scene.render.resolution_y = 320, 240
face = max((o for o in bpy.data.objects if getattr(o.data, "shape_keys", None)),
           key=lambda o: len(o.data.shape_keys.key_blocks))
key = face.data.shape_keys
basis = np.array([v.co[:] for v in key.reference_key.data])
jaw = np.array([v.co[:] for v in key.key_blocks["AK_25_JawOpen"].data])
mouth = face.matrix_world @ Vector(basis[np.linalg.norm(jaw - basis, axis=1) > 1e-4].mean(axis=0))
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location = mouth + Vector((0.0, -0.35, 0.04))
camera.rotation_euler = (math.pi / 2, 0.0, 0.0)
scene.camera = camera
bpy.ops.wm.save_as_mainfile(filepath=out)
print("A2X_SCENE " + json.dumps({"face": face.name, "fps": scene.render.fps / scene.render.fps_base}))
""".replace("import bpy, math, sys", "import bpy, json, math, sys")

#: Reads an FBX back: the face's shape keys and how many of them are animated.
READ_FBX = """
import bpy, json, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.fbx(filepath=sys.argv[1])
face = max((o for o in bpy.data.objects if getattr(o.data, "shape_keys", None)),
           key=lambda o: len(o.data.shape_keys.key_blocks))
action = face.data.shape_keys.animation_data.action
curves = []
for layer in getattr(action, "layers", []):
    for strip in layer.strips:
        for bag in strip.channelbags:
            curves.extend(bag.fcurves)
if not curves:
    curves = list(action.fcurves)
jaw = [c for c in curves if c.data_path == 'key_blocks["AK_25_JawOpen"].value']
values = [jaw[0].evaluate(f) for f in range(1, 40)] if jaw else []
print("A2X_FBX " + json.dumps({"curves": len(curves), "jaw_max": max(values, default=0)}))
"""


def _bpy_python() -> str:
    from tests.blender.conftest import bpy_pythons

    pythons = bpy_pythons()
    if not pythons:
        pytest.skip("no Python with the bpy module (A2X_BPY_PYTHONS)")
    return pythons[max(pythons, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))]


def _run_bpy(python: str, script: Path, *args: str, mark: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python, str(script), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=script.parent)  # fmt: skip
    lines = [x for x in proc.stdout.splitlines() if x.startswith(mark)]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][len(mark):])


def test_render_bakes_a_rocketbox_head_and_renders_it_with_sound(shared_data, tmp_path: Path) -> None:
    fbx = shared_data / "head_mesh" / "rocketbox_headbox" / "Male_Adult_03_facial.fbx"
    if not fbx.exists():
        pytest.skip(f"{fbx} is absent")
    python = _bpy_python()
    maker = tmp_path / "make_scene.py"
    maker.write_text(MAKE_SCENE)
    blend = tmp_path / "head.blend"
    scene = _run_bpy(python, maker, str(fbx), str(blend), mark="A2X_SCENE ")
    before = blend.read_bytes()

    take = tmp_path / "line.json"
    animated = run_cli("animate", str(SAMPLE), "--start", "1", "--end", "4", "-o", str(take), "-q")
    assert animated.returncode == 0, animated.stderr
    video, take_fbx = tmp_path / "line.mp4", tmp_path / "line.fbx"
    proc = run_cli("render", str(take), "--blend", str(blend), "--object", scene["face"],
                   "-o", str(video), "--export-fbx", str(take_fbx), "--blender", python, "-q",
                   timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert blend.read_bytes() == before  # the artist's file is opened, never saved

    with av.open(str(video)) as container:
        streams = {s.type: s for s in container.streams}
        assert streams["video"].codec_context.name == "h264"
        assert streams["audio"].codec_context.name == "aac"
        rate = float(streams["video"].average_rate)
        lumas = [f.to_ndarray(format="gray").astype(np.int16) for f in container.decode(video=0)]
    assert rate == scene["fps"]
    duration = 3.0  # the take's: the frame range comes from the audio
    assert abs(len(lumas) / rate - duration) <= 1 / rate
    # the face moves: frames differ from one another around the mouth (the frame's middle)
    h, w = lumas[0].shape
    middle = [f[h // 3:, w // 4:3 * w // 4] for f in lumas]
    changes = [float(np.mean(np.abs(m - middle[0]))) for m in middle]
    assert max(changes) > 1.0, max(changes)

    reader = tmp_path / "read_fbx.py"
    reader.write_text(READ_FBX)
    animated = _run_bpy(python, reader, str(take_fbx), mark="A2X_FBX ")
    # the FBX exporter drops the curves that never move (the default model keeps e.g. the
    # eye looks at 0); the lip curves are there, jawOpen with its motion
    assert animated["curves"] >= 10 and animated["jaw_max"] > 0.2, animated


def test_render_refuses_a_missing_object_naming_the_meshes(shared_data, tmp_path: Path) -> None:
    python = _bpy_python()
    blend = tmp_path / "empty.blend"
    maker = tmp_path / "make_empty.py"
    maker.write_text("import bpy, sys\nbpy.ops.wm.read_factory_settings()\n"
                     "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])\nprint('A2X_OK {}')\n")  # fmt: skip
    _run_bpy(python, maker, str(blend), mark="A2X_OK ")
    proc = run_cli("render", str(SAMPLE), "--blend", str(blend), "--object", "Face",
                   "-o", str(tmp_path / "x.mp4"), "--blender", python)  # fmt: skip
    assert proc.returncode == 2
    assert "'Face'" in proc.stderr and "Cube" in proc.stderr, proc.stderr
    assert not (tmp_path / "x.mp4").exists()
