"""USD and glTF exports of a real take: read back with pxr / checked by USD's validators, and
checked by the Khronos glTF Validator (node) and Blender's glTF importer (real bpy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.export.writers import write_result
from a2x_core.names import TONGUE_16
from a2x_core.result import AnimationResult
from tests.conftest import REPO, SAMPLE, run_cli

NODE_MODULES = REPO / "tests" / "node_modules"
VALIDATOR_JS = REPO / "tests" / "gltf_validate.js"


@pytest.fixture(scope="module")
def take() -> AnimationResult:
    """Two seconds of the sample through the default model."""
    return Animator("default").animate(str(SAMPLE), start_s=1.0, end_s=3.0)


def _validate_usd(path: Path) -> list[str]:
    """USD's own validators (what ``usdchecker`` runs in usd-core >= 25.08)."""
    from pxr import Usd, UsdValidation

    stage = Usd.Stage.Open(str(path))
    context = UsdValidation.ValidationContext(
        UsdValidation.ValidationRegistry().GetOrLoadAllValidators())
    return [f"{error.GetName()}: {error.GetMessage()}" for error in context.Validate(stage)]


@pytest.mark.parametrize("suffix", [".usda", ".usdc"])
def test_usd_take_reads_back_and_passes_the_validators(take, tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("pxr")
    from pxr import Sdf, Usd, UsdMedia, UsdSkel

    path = write_result(take, tmp_path / f"take{suffix}")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    assert _validate_usd(path) == []
    stage = Usd.Stage.Open(str(path))
    assert stage.GetTimeCodesPerSecond() == float(take.fps) == stage.GetFramesPerSecond()
    assert stage.GetEndTimeCode() == take.num_frames - 1
    animation = UsdSkel.Animation(stage.GetPrimAtPath("/Take/Skeleton/Face"))
    assert list(animation.GetBlendShapesAttr().Get()) == list(take.names)
    weights = animation.GetBlendShapeWeightsAttr()
    assert len(weights.GetTimeSamples()) == take.num_frames
    for frame in (0, take.num_frames // 2, take.num_frames - 1):
        np.testing.assert_allclose(np.array(weights.Get(frame)), take.weights[frame], atol=1e-6)
    # the skeleton is bound to the animation, as UsdSkel's query API resolves it
    query = UsdSkel.Cache().GetSkelQuery(UsdSkel.Skeleton(stage.GetPrimAtPath("/Take/Skeleton")))
    assert query.GetAnimQuery().GetPrim().GetPath() == Sdf.Path("/Take/Skeleton/Face")
    sound = UsdMedia.SpatialAudio(stage.GetPrimAtPath("/Take/Audio"))
    asset = sound.GetFilePathAttr().Get()
    assert Path(asset.resolvedPath or (tmp_path / asset.path)).resolve() == SAMPLE.resolve()
    assert sound.GetMediaOffsetAttr().Get() == pytest.approx(1.0)


def test_usd_carries_audio2face_outputs_when_present(take, tmp_path: Path) -> None:
    """Tongue weights, jaw and eye motion and per-frame vertices, as an Audio2Face run gives
    them (here attached to the real take, with the shapes the Audio2Face models produce)."""
    pytest.importorskip("pxr")
    from pxr import Usd, UsdGeom, UsdSkel

    frames = take.num_frames
    rng = np.random.default_rng(0)
    jaw = np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1))
    jaw[:, 1, 3] = -take.curve("jawOpen")  # row-major: the translation is the last column
    a2f = replace(
        take,
        tongue_weights=rng.random((frames, 16), dtype=np.float32),
        tongue_names=TONGUE_16,
        jaw_transforms=jaw,
        eye_rotations=rng.uniform(-10, 10, (frames, 6)).astype(np.float32),
        arrays={"skin_geometry": rng.random((frames, 30), dtype=np.float32)},
    )
    path = write_result(a2f, tmp_path / "a2f.usda")
    assert _validate_usd(path) == []
    stage = Usd.Stage.Open(str(path))
    tongue = UsdSkel.Animation(stage.GetPrimAtPath("/Take/Skeleton/Tongue"))
    assert list(tongue.GetBlendShapesAttr().Get()) == list(TONGUE_16)
    frame = frames // 2
    matrix = UsdGeom.Xformable(stage.GetPrimAtPath("/Take/Jaw")).GetLocalTransformation(frame)
    assert matrix.ExtractTranslation()[1] == pytest.approx(-take.curve("jawOpen")[frame], abs=1e-6)
    points = UsdGeom.Points(stage.GetPrimAtPath("/Take/SkinPoints")).GetPointsAttr().Get(frame)
    np.testing.assert_allclose(np.array(points).reshape(-1), a2f.arrays["skin_geometry"][frame], atol=1e-6)


def _khronos_report(path: Path) -> dict:
    """The Khronos glTF Validator's report (npm gltf-validator, installed on first use as
    ``make gltf-validator`` does)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the Khronos glTF Validator runs on it)")
    if not (NODE_MODULES / "gltf-validator" / "package.json").exists():
        npm = shutil.which("npm")
        assert npm, "node without npm: run make gltf-validator"
        subprocess.run([npm, "install", "--no-save", "--no-package-lock", "--prefix",
                        str(REPO / "tests"), "gltf-validator"], check=True, timeout=300)  # fmt: skip
    proc = subprocess.run([node, str(VALIDATOR_JS), str(path)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, NODE_PATH=str(NODE_MODULES)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("suffix", [".gltf", ".glb"])
def test_gltf_take_passes_the_khronos_validator(take, tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("pygltflib")
    path = write_result(take, tmp_path / f"take{suffix}")
    report = _khronos_report(path)
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    info = report["info"]
    assert info["animationCount"] == 1 and info["hasMorphTargets"] is True
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(path))
    assert gltf.meshes[0].extras["targetNames"] == list(take.names)
    sampler = gltf.animations[0].samplers[0]
    times = gltf.accessors[sampler.input]
    assert times.count == take.num_frames
    assert times.max[0] == pytest.approx((take.num_frames - 1) / float(take.fps), abs=1e-5)
    assert gltf.accessors[sampler.output].count == take.num_frames * len(take.names)


def test_cli_writes_usd_and_gltf_beside_json(tmp_path: Path) -> None:
    pytest.importorskip("pxr")
    pytest.importorskip("pygltflib")
    outputs = [tmp_path / n for n in ("t.json", "t.usda", "t.glb")]
    args = [a for p in outputs for a in ("-o", str(p))]
    proc = run_cli("animate", str(SAMPLE), "--end", "1.5", "-q", *args)
    assert proc.returncode == 0, proc.stderr
    assert all(p.stat().st_size > 0 for p in outputs)
    again = run_cli("animate", str(SAMPLE), "--end", "1.5", "-q", "-o", str(outputs[1]))
    assert again.returncode == 2 and "already exists" in again.stderr


BLENDER_IMPORT = """
import bpy, json, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
mesh = next(o for o in bpy.data.objects if o.type == "MESH")
keys = mesh.data.shape_keys
action = keys.animation_data.action
curves = []
for layer in getattr(action, "layers", []):  # Blender 4.4+: layered actions
    for strip in layer.strips:
        for bag in strip.channelbags:
            curves.extend(bag.fcurves)
if not curves:  # older Blender (4.4/4.5 show the layered curves here too)
    curves = list(action.fcurves)
jaw = next(c for c in curves if c.data_path == 'key_blocks["jawOpen"].value')
fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
times = json.loads(sys.argv[2])
print("A2X_RESULT " + json.dumps({
    "names": [k.name for k in keys.key_blocks][1:],
    "keyed": len(curves),
    "jaw": [jaw.evaluate(t * fps) for t in times],
}))
"""


@pytest.mark.slow
@pytest.mark.blender
def test_gltf_take_imports_in_blender(take, tmp_path: Path) -> None:
    from tests.blender.conftest import bpy_pythons

    pythons = bpy_pythons()
    if not pythons:
        pytest.skip("no Python with the bpy module (A2X_BPY_PYTHONS)")
    path = write_result(take, tmp_path / "take.glb")
    script = tmp_path / "import_gltf.py"
    script.write_text(BLENDER_IMPORT)
    frames = [0, take.num_frames // 3, take.num_frames // 2]
    times = [f / float(take.fps) for f in frames]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for version, python in sorted(pythons.items()):
        proc = subprocess.run([python, str(script), str(path), json.dumps(times)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("A2X_RESULT "))
        imported = json.loads(line[len("A2X_RESULT "):])
        assert imported["names"] == list(take.names), version
        assert imported["keyed"] == len(take.names), version
        np.testing.assert_allclose(imported["jaw"], take.curve("jawOpen")[frames], atol=1e-4)


@pytest.fixture(scope="module")
def a2f_take(tmp_path_factory: pytest.TempPathFactory):
    """One second of the sample through a small generated Audio2Face regression folder (the
    real file layout), and that model's own head (its folder's blend-shape sets and jaw)."""
    from a2x_core.models.a2f_geometry import geometry_of
    from tests.a2f_folders import make_regression_folder

    folder = tmp_path_factory.mktemp("a2f") / "mark"
    make_regression_folder(folder)
    animator = Animator(str(folder / "model.json"))
    result = animator.animate(str(SAMPLE), start_s=1.0, end_s=2.0)
    return result, geometry_of(animator.model), folder / "model.json"


def test_usd_plays_the_take_on_the_audio2face_head(a2f_take, tmp_path: Path) -> None:
    """The model's skin and tongue as point clouds whose blend shapes are the model's poses:
    UsdSkel's own evaluation of a frame gives neutral + weights x deltas; the jaw's keypoints
    follow the jaw's transform."""
    pytest.importorskip("pxr")
    from pxr import Usd, UsdGeom, UsdSkel

    result, geometry, _ = a2f_take
    path = write_result(result, tmp_path / "a2f.usda", geometry=geometry)
    assert _validate_usd(path) == []
    stage = Usd.Stage.Open(str(path))
    frame = result.num_frames // 2
    cache = UsdSkel.Cache()
    root = UsdSkel.Root(stage.GetPrimAtPath("/Take"))
    cache.Populate(root, Usd.TraverseInstanceProxies())
    for prim, poses, weights, names in (
        ("/Take/Skin", geometry.skin, result.weights, result.names),
        ("/Take/Tongue", geometry.tongue, result.tongue_weights, result.tongue_names),
    ):  # fmt: skip
        points = UsdGeom.Points(stage.GetPrimAtPath(prim))
        neutral = np.array(points.GetPointsAttr().Get())
        np.testing.assert_allclose(neutral, poses.neutral, atol=1e-6)
        binding = UsdSkel.BindingAPI(points.GetPrim())
        assert list(binding.GetBlendShapesAttr().Get()) == list(names)
        skinning = cache.GetSkinningQuery(points.GetPrim())
        skeleton = cache.GetSkelQuery(UsdSkel.Skeleton(stage.GetPrimAtPath(
            str(binding.GetSkeletonRel().GetTargets()[0]))))  # fmt: skip
        played = skeleton.GetAnimQuery().ComputeBlendShapeWeights(frame)
        np.testing.assert_allclose(np.array(played), weights[frame], atol=1e-6)
        assert skinning.GetBlendShapeOrder() == binding.GetBlendShapesAttr().Get()
        query = UsdSkel.BlendShapeQuery(binding)
        deformed = points.GetPointsAttr().Get()  # deformed in place below
        assert query.ComputeDeformedPoints(*query.ComputeSubShapeWeights(played),
                                           query.ComputeBlendShapePointIndices(),
                                           query.ComputeSubShapePointOffsets(), deformed)  # fmt: skip
        expected = poses.neutral + np.einsum("p,pvc->vc", weights[frame], poses.deltas)
        assert np.abs(expected - poses.neutral).max() > 5e-4  # the frame moves the part
        np.testing.assert_allclose(np.array(deformed), expected, atol=2e-5)
    keypoints = stage.GetPrimAtPath("/Take/Jaw/Keypoints")
    world = UsdGeom.Xformable(keypoints).ComputeLocalToWorldTransform(frame)
    moved = np.array([world.Transform(p) for p in UsdGeom.Points(keypoints).GetPointsAttr().Get()])
    matrix = result.jaw_transforms[frame]
    np.testing.assert_allclose(moved, geometry.jaw_keypoints @ matrix[:3, :3].T + matrix[:3, 3],
                               atol=1e-4)  # fmt: skip


def _sparse_target(gltf, data: bytes, index: int) -> np.ndarray:
    """A morph target accessor read back: zeros, then the sparse values at their indices."""
    accessor = gltf.accessors[index]
    full = np.zeros((accessor.count, 3), dtype=np.float32)
    views = gltf.bufferViews
    if accessor.bufferView is not None:  # a dense target (the pose moves most vertices)
        view = views[accessor.bufferView]
        return np.frombuffer(data, np.float32, accessor.count * 3, view.byteOffset).reshape(-1, 3)
    if accessor.sparse is None:
        return full
    where = views[accessor.sparse.indices.bufferView]
    rows = np.frombuffer(data, np.uint32, accessor.sparse.count, where.byteOffset)
    what = views[accessor.sparse.values.bufferView]
    full[rows] = np.frombuffer(data, np.float32, accessor.sparse.count * 3,
                               what.byteOffset).reshape(-1, 3)  # fmt: skip
    return full


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_gltf_carries_the_audio2face_head(a2f_take, tmp_path: Path, suffix: str) -> None:
    """The model's skin (and tongue) as POINTS meshes whose sparse morph targets are its
    poses, named for ARKit; the jaw's keypoints on a node the jaw transforms move; the Khronos
    validator finds nothing to say."""
    pygltflib = pytest.importorskip("pygltflib")
    from a2x_core.models.a2f_geometry import PoseSet

    result, geometry, _ = a2f_take
    deltas = geometry.skin.deltas.copy()
    deltas[0] += 0.01  # a pose that moves every vertex: stored dense, read back the same
    geometry = replace(geometry, skin=PoseSet(geometry.skin.names, geometry.skin.neutral, deltas))
    path = write_result(result, tmp_path / f"a2f{suffix}", geometry=geometry)
    report = _khronos_report(path)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, \
        report["issues"]["messages"]  # fmt: skip
    gltf = pygltflib.GLTF2().load(str(path))
    data = gltf.binary_blob() if suffix == ".glb" else gltf.get_data_from_buffer_uri(
        gltf.buffers[0].uri)  # fmt: skip
    meshes = {m.name: m for m in gltf.meshes}
    for name, poses, names in (("Face", geometry.skin, result.names),
                               ("Tongue", geometry.tongue, result.tongue_names)):  # fmt: skip
        primitive = meshes[name].primitives[0]
        assert primitive.mode == 0 and meshes[name].extras["targetNames"] == list(names)
        assert gltf.accessors[primitive.attributes.POSITION].count == len(poses.neutral)
        for k in (0, len(names) // 2, len(names) - 1):
            target = _sparse_target(gltf, data, primitive.targets[k]["POSITION"])
            np.testing.assert_allclose(target, poses.delta_for(names[k]), atol=1e-6)
        sparse = [gltf.accessors[t["POSITION"]].sparse is not None for t in primitive.targets]
        assert sum(sparse) >= len(names) - 1 and (name == "Tongue" or not sparse[0])
    nodes = {n.name: i for i, n in enumerate(gltf.nodes)}
    channels = {(c.target.node, c.target.path): gltf.animations[0].samplers[c.sampler]
                for c in gltf.animations[0].channels}  # fmt: skip
    rotation = channels[(nodes["Jaw"], "rotation")]
    quats = np.frombuffer(data, np.float32, result.num_frames * 4,
                          gltf.bufferViews[gltf.accessors[rotation.output].bufferView].byteOffset
                          ).reshape(-1, 4)  # fmt: skip
    x, y, z, w = quats[result.num_frames // 2]
    matrix = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                       [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                       [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])  # fmt: skip
    np.testing.assert_allclose(matrix, result.jaw_transforms[result.num_frames // 2][:3, :3],
                               atol=1e-5)  # fmt: skip
    assert (nodes["Tongue"], "weights") in channels and (nodes["Jaw"], "translation") in channels


def test_cli_exports_the_audio2face_head_and_the_default_model_a_placeholder(
        a2f_take, take, tmp_path: Path) -> None:  # fmt: skip
    """``a2x animate --model A2F -o x.glb`` gives the model's head; the default model has none."""
    pygltflib = pytest.importorskip("pygltflib")
    _, geometry, model_json = a2f_take
    proc = run_cli("animate", str(SAMPLE), "--end", "1", "--model", str(model_json), "-q",
                   "-o", str(tmp_path / "a2f.glb"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    head = pygltflib.GLTF2().load(str(tmp_path / "a2f.glb"))
    position = head.meshes[0].primitives[0].attributes.POSITION
    assert head.accessors[position].count == len(geometry.skin.neutral)
    assert [m.name for m in head.meshes] == ["Face", "Tongue", "JawKeypoints"]
    from a2x_core.models.a2f_geometry import geometry_of

    assert geometry_of(Animator("default").model) is None
    placeholder = pygltflib.GLTF2().load(str(write_result(take, tmp_path / "default.glb")))
    assert [m.name for m in placeholder.meshes] == ["Face"]
    assert placeholder.meshes[0].primitives[0].mode == 4  # the quad


BLENDER_IMPORT_HEAD = """
import bpy, json, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
scene = bpy.context.scene
fps = scene.render.fps / scene.render.fps_base
out = {}
for obj in bpy.data.objects:
    keys = obj.data.shape_keys if obj.type == "MESH" else None
    out[obj.name] = {"verts": len(obj.data.vertices) if obj.type == "MESH" else 0,
                     "keys": [k.name for k in keys.key_blocks][1:] if keys else []}
frame = float(sys.argv[2]) * fps
scene.frame_set(int(frame), subframe=frame - int(frame))
face = bpy.data.objects["Face"]
depsgraph = bpy.context.evaluated_depsgraph_get()
evaluated = face.evaluated_get(depsgraph).to_mesh()
out["face_points"] = [list(v.co) for v in evaluated.vertices]
jaw = bpy.data.objects["Jaw"]
out["jaw_matrix"] = [list(row) for row in jaw.matrix_world]
print("A2X_RESULT " + json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.blender
def test_gltf_audio2face_head_imports_in_blender(a2f_take, tmp_path: Path) -> None:
    """Blender's glTF importer makes the head a point mesh with the 52 ARKit shape keys that
    play the take (a frame's evaluated points = neutral + weights x deltas, in Blender's
    Z-up axes) and a jaw object the take moves."""
    from tests.blender.conftest import bpy_pythons

    pythons = bpy_pythons()
    if not pythons:
        pytest.skip("no Python with the bpy module (A2X_BPY_PYTHONS)")
    result, geometry, _ = a2f_take
    path = write_result(result, tmp_path / "a2f.glb", geometry=geometry)
    script = tmp_path / "import_head.py"
    script.write_text(BLENDER_IMPORT_HEAD)
    frame = result.num_frames // 2
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    y_up_to_z_up = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)
    expected = geometry.skin.neutral + np.einsum("p,pvc->vc", result.weights[frame],
                                                 geometry.skin.deltas)  # fmt: skip
    for version, python in sorted(pythons.items()):
        proc = subprocess.run([python, str(script), str(path), str(frame / float(result.fps))],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("A2X_RESULT "))
        imported = json.loads(line[len("A2X_RESULT "):])
        assert imported["Face"]["keys"] == list(result.names), version
        assert imported["Face"]["verts"] == len(geometry.skin.neutral), version
        assert imported["Tongue"]["keys"] == list(result.tongue_names), version
        points = np.array(imported["face_points"])
        np.testing.assert_allclose(points, expected @ y_up_to_z_up.T, atol=1e-3)
        jaw = np.array(imported["jaw_matrix"])
        rotation = y_up_to_z_up @ result.jaw_transforms[frame][:3, :3] @ y_up_to_z_up.T
        np.testing.assert_allclose(jaw[:3, :3], rotation, atol=1e-3)
