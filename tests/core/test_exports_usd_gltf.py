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
from a2x_core.exporters import write_result
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
