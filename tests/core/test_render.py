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

#: A test scene: the head (Workbench, small frame), a camera in front of its mouth. The
#: Rocketbox head is an FBX; the VRoid head is one OBJ per ARKit shape (same vertex order),
#: turned from OBJ's Y-up to Blender's Z-up as Blender's OBJ importer does.
MAKE_SCENE = """
import bpy, json, math, os, sys
import numpy as np
from mathutils import Vector
source, out = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene

def obj_vertices(path):
    with open(path, encoding="utf-8") as handle:
        rows = [line.split()[1:4] for line in handle if line.startswith("v ")]
    xyz = np.array(rows, dtype=np.float64)
    return np.stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]], axis=1)

if source.endswith(".fbx"):
    bpy.ops.import_scene.fbx(filepath=source)
    face = max((o for o in bpy.data.objects if getattr(o.data, "shape_keys", None)),
               key=lambda o: len(o.data.shape_keys.key_blocks))
    jaw_name = "AK_25_JawOpen"
else:
    scene.render.fps = 30
    with open(os.path.join(source, "_neutral.obj"), encoding="utf-8") as handle:
        faces = [[int(p.split("/")[0]) - 1 for p in line.split()[1:]]
                 for line in handle if line.startswith("f ")]
    mesh = bpy.data.meshes.new("VRoidFace")
    mesh.from_pydata(obj_vertices(os.path.join(source, "_neutral.obj")).tolist(), [], faces)
    face = bpy.data.objects.new("VRoidFace", mesh)
    scene.collection.objects.link(face)
    face.shape_key_add(name="Basis")
    for name in sorted(n[:-4] for n in os.listdir(source) if n.endswith(".obj") and n[0] != "_"):
        block = face.shape_key_add(name=name, from_mix=False)
        block.data.foreach_set("co", obj_vertices(os.path.join(source, name + ".obj")).ravel())
    jaw_name = "jawOpen"
scene.render.engine = "BLENDER_WORKBENCH"
scene.render.resolution_x, scene.render.resolution_y = 320, 240
key = face.data.shape_keys
basis = np.array([v.co[:] for v in key.reference_key.data])
jaw = np.array([v.co[:] for v in key.key_blocks[jaw_name].data])
moving = np.linalg.norm(jaw - basis, axis=1) > 1e-4 * max(1e-9, np.abs(jaw - basis).max())
mouth = face.matrix_world @ Vector(basis[moving].mean(axis=0))
height = float(np.ptp(basis[:, 2])) * max(face.matrix_world.to_scale())
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
distance = 0.35 if source.endswith(".fbx") else 1.4 * height
camera.location = mouth + Vector((0.0, -distance, 0.1 * distance))
camera.rotation_euler = (math.pi / 2, 0.0, 0.0)
scene.camera = camera
bpy.ops.wm.save_as_mainfile(filepath=out)
print("A2X_SCENE " + json.dumps({"face": face.name, "jaw": jaw_name,
                                 "fps": scene.render.fps / scene.render.fps_base}))
"""


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
jaw = [c for c in curves if c.data_path == 'key_blocks["%s"].value' % sys.argv[2]]
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


HEADS = {
    "rocketbox": "rocketbox_headbox/Male_Adult_03_facial.fbx",
    "vroid": "voice2motion_vroid_head/shape_keys",
}


def head_scene(shared_data: Path, tmp_path: Path, head: str) -> tuple[str, Path, dict]:
    """A test scene (``tmp_path/head.blend``) with one of the real heads of ../shared imported
    (never committed): the bpy Python, the .blend and the scene's description; skips when
    the head is absent."""
    source = shared_data / "head_mesh" / HEADS[head]
    if not source.exists():
        pytest.skip(f"{source} is absent")
    python = _bpy_python()
    maker = tmp_path / "make_scene.py"
    maker.write_text(MAKE_SCENE)
    blend = tmp_path / "head.blend"
    return python, blend, _run_bpy(python, maker, str(source), str(blend), mark="A2X_SCENE ")


@pytest.mark.parametrize("head", sorted(HEADS))
def test_render_bakes_a_real_head_and_renders_it_with_sound(shared_data, tmp_path: Path,
                                                            head: str) -> None:  # fmt: skip
    python, blend, scene = head_scene(shared_data, tmp_path, head)
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
    animated = _run_bpy(python, reader, str(take_fbx), scene["jaw"], mark="A2X_FBX ")
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
