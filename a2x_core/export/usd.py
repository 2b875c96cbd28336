"""USD export (``-o take.usda`` / ``take.usdc``): a UsdSkel blend-shape animation.

Omniverse and USD pipelines read ARKit curves as a ``SkelAnimation``: ``blendShapes`` names
the 52 shapes and ``blendShapeWeights`` holds one time sample per frame. The stage runs at the
result's rate (``timeCodesPerSecond`` = ``framesPerSecond`` = fps, time code ``i`` = frame ``i``)
and carries the clip as a ``SpatialAudio`` prim, so a USD player plays the sound in sync. When
the result holds Audio2Face outputs they come along: the 16 tongue weights as a second
SkelAnimation, the jaw and eye motion as time-sampled transforms, and the per-frame skin and
tongue vertices (``--geometry``) as time-sampled points. With the model's own head
(:mod:`a2x_core.models.a2f_geometry`: written by ``a2x animate`` for an Audio2Face model), the skin and
tongue are point clouds bound to the skeletons with their poses as sparse ``BlendShape``
prims, so the weights play on the Audio2Face head itself, and the jaw's keypoints ride on the
jaw's transform.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..models.a2f_geometry import FaceGeometry, PoseSet
from ..result import AnimationResult

USD_SUFFIXES = (".usda", ".usdc", ".usd")


def _import_pxr():
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdMedia, UsdSkel, Vt
    except ImportError:
        raise OutputError("usd-core is needed for USD exports", hint="pip install 'a2x[usd]'") from None
    return Gf, Sdf, Usd, UsdGeom, UsdMedia, UsdSkel, Vt


def build_stage(result: AnimationResult, *, audio_asset: str | None = None,
                geometry: FaceGeometry | None = None):  # fmt: skip
    """An in-memory stage holding the take (see the module's description); ``geometry``: the
    Audio2Face model's head, bound to the take's animations."""
    Gf, Sdf, Usd, UsdGeom, UsdMedia, UsdSkel, Vt = _import_pxr()
    stage = Usd.Stage.CreateInMemory()
    fps = float(result.fps)
    frames = result.num_frames
    stage.SetTimeCodesPerSecond(fps)
    stage.SetFramesPerSecond(fps)
    stage.SetStartTimeCode(0)
    stage.SetEndTimeCode(max(0, frames - 1))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 0.01)
    root = UsdSkel.Root.Define(stage, "/Take")
    stage.SetDefaultPrim(root.GetPrim())
    root.GetPrim().SetCustomDataByKey("a2x:model", result.model)
    root.GetPrim().SetCustomDataByKey("a2x:modelVersion", result.model_version)
    root.GetPrim().SetCustomDataByKey("a2x:startSeconds", float(result.start_s))

    skeleton = UsdSkel.Skeleton.Define(stage, "/Take/Skeleton")
    skeleton.CreateJointsAttr(Vt.TokenArray(["root"]))
    identity = Gf.Matrix4d(1.0)
    skeleton.CreateBindTransformsAttr(Vt.Matrix4dArray([identity]))
    skeleton.CreateRestTransformsAttr(Vt.Matrix4dArray([identity]))
    animation = UsdSkel.Animation.Define(stage, "/Take/Skeleton/Face")
    _joint_rest(animation, Vt, Gf)
    _blend_shape_track(animation, result.names, result.weights, Vt)
    UsdSkel.BindingAPI.Apply(skeleton.GetPrim()).CreateAnimationSourceRel().SetTargets(
        [animation.GetPath()])
    UsdSkel.BindingAPI.Apply(root.GetPrim()).CreateSkeletonRel().SetTargets([skeleton.GetPath()])

    if result.tongue_weights is not None and result.tongue_names:
        tongue = UsdSkel.Animation.Define(stage, "/Take/Skeleton/Tongue")
        _joint_rest(tongue, Vt, Gf)
        _blend_shape_track(tongue, result.tongue_names, result.tongue_weights, Vt)
    if result.jaw_transforms is not None:
        jaw = UsdGeom.Xform.Define(stage, "/Take/Jaw")
        op = jaw.AddTransformOp()
        for i, matrix in enumerate(np.asarray(result.jaw_transforms, dtype=np.float64)):
            # a2x stores row-major matrices acting on column vectors; USD's act on row vectors
            op.Set(Gf.Matrix4d(matrix.T.tolist()), Usd.TimeCode(i))
    if result.eye_rotations is not None:
        eyes = np.asarray(result.eye_rotations, dtype=np.float64)
        for name, columns in (("RightEye", slice(0, 3)), ("LeftEye", slice(3, 6))):
            op = UsdGeom.Xform.Define(stage, f"/Take/{name}").AddRotateXYZOp()
            for i, angles in enumerate(eyes[:, columns]):
                op.Set(Gf.Vec3f(*angles.tolist()), Usd.TimeCode(i))
    for key, name in (("skin_geometry", "SkinPoints"), ("tongue_geometry", "TonguePoints")):
        if key in result.arrays:
            points = UsdGeom.Points.Define(stage, f"/Take/{name}")
            attr = points.CreatePointsAttr()
            for i, frame in enumerate(np.asarray(result.arrays[key], dtype=np.float32)):
                attr.Set(Vt.Vec3fArray.FromNumpy(frame.reshape(-1, 3)), Usd.TimeCode(i))

    if geometry is not None:
        _head(stage, result, geometry)

    asset = audio_asset if audio_asset is not None else result.audio_path
    if asset:
        sound = UsdMedia.SpatialAudio.Define(stage, "/Take/Audio")
        sound.CreateFilePathAttr(Sdf.AssetPath(asset))
        sound.CreateAuralModeAttr(UsdMedia.Tokens.nonSpatial)
        sound.CreatePlaybackModeAttr(UsdMedia.Tokens.onceFromStartToEnd)
        sound.CreateStartTimeAttr(Sdf.TimeCode(0))
        sound.CreateEndTimeAttr(Sdf.TimeCode(result.duration_s * fps))
        sound.CreateMediaOffsetAttr(float(result.start_s))
    return stage


def _head(stage, result: AnimationResult, geometry: FaceGeometry) -> None:
    """/Take/Skin (and /Take/Tongue): the model's vertices with its poses as blend shapes,
    driven by the Face (Tongue) animation; /Take/Jaw/Keypoints under the jaw's transform."""
    Gf, Sdf, Usd, UsdGeom, UsdMedia, UsdSkel, Vt = _import_pxr()
    _skinned_points(stage, "/Take/Skin", geometry.skin, result.names, "/Take/Skeleton")
    if geometry.tongue is not None and result.tongue_weights is not None and result.tongue_names:
        # a skeleton has one animation: the tongue's poses play through a second one
        skeleton = UsdSkel.Skeleton.Define(stage, "/Take/TongueSkeleton")
        skeleton.CreateJointsAttr(Vt.TokenArray(["root"]))
        identity = Gf.Matrix4d(1.0)
        skeleton.CreateBindTransformsAttr(Vt.Matrix4dArray([identity]))
        skeleton.CreateRestTransformsAttr(Vt.Matrix4dArray([identity]))
        UsdSkel.BindingAPI.Apply(skeleton.GetPrim()).CreateAnimationSourceRel().SetTargets(
            [Sdf.Path("/Take/Skeleton/Tongue")])
        _skinned_points(stage, "/Take/Tongue", geometry.tongue, result.tongue_names,
                        "/Take/TongueSkeleton")  # fmt: skip
    if geometry.jaw_keypoints is not None and result.jaw_transforms is not None:
        keypoints = UsdGeom.Points.Define(stage, "/Take/Jaw/Keypoints")
        _point_cloud(keypoints, geometry.jaw_keypoints, Vt, Gf, UsdGeom)


def _point_cloud(points, positions: np.ndarray, Vt, Gf, UsdGeom) -> None:
    """Rest positions, a constant point size (a few millimetres) and the extent."""
    positions = np.asarray(positions, dtype=np.float32)
    points.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(positions))
    width = 0.002 * float(np.ptp(positions, axis=0).max() or 1.0) + 0.05
    points.CreateWidthsAttr(Vt.FloatArray([width]))
    points.SetWidthsInterpolation(UsdGeom.Tokens.constant)
    low, high = positions.min(axis=0) - width / 2, positions.max(axis=0) + width / 2
    points.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*low.tolist()), Gf.Vec3f(*high.tolist())]))


def _skinned_points(stage, path: str, poses: PoseSet, names, skeleton: str) -> None:
    """A point cloud of the pose set's neutral, rigidly bound to ``skeleton``'s one joint, with
    a sparse ``BlendShape`` (offsets of the vertices it moves) per name in ``names`` that the
    set holds, in the order the animation's ``blendShapes`` names them."""
    Gf, Sdf, Usd, UsdGeom, UsdMedia, UsdSkel, Vt = _import_pxr()
    from pxr import Tf

    points = UsdGeom.Points.Define(stage, path)
    _point_cloud(points, poses.neutral, Vt, Gf, UsdGeom)
    binding = UsdSkel.BindingAPI.Apply(points.GetPrim())
    binding.CreateSkeletonRel().SetTargets([Sdf.Path(skeleton)])
    binding.CreateJointIndicesPrimvar(True, 1).Set(Vt.IntArray([0]))
    binding.CreateJointWeightsPrimvar(True, 1).Set(Vt.FloatArray([1.0]))
    binding.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))
    shapes, targets = [], []
    for name in names:
        delta = poses.delta_for(name)
        if delta is None:
            continue
        shape = UsdSkel.BlendShape.Define(stage, f"{path}/{Tf.MakeValidIdentifier(name)}")
        moving = poses.moving(delta)
        shape.CreateOffsetsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(delta[moving])))
        shape.CreatePointIndicesAttr(Vt.IntArray.FromNumpy(moving))
        shapes.append(name)
        targets.append(shape.GetPath())
    binding.CreateBlendShapesAttr(Vt.TokenArray(shapes))
    binding.CreateBlendShapeTargetsRel().SetTargets(targets)


def _joint_rest(animation, Vt, Gf) -> None:
    """The one joint's constant pose (a SkelAnimation needs its joints' tracks to be complete)."""
    animation.CreateJointsAttr(Vt.TokenArray(["root"]))
    animation.CreateTranslationsAttr(Vt.Vec3fArray([Gf.Vec3f(0, 0, 0)]))
    animation.CreateRotationsAttr(Vt.QuatfArray([Gf.Quatf(1, 0, 0, 0)]))
    animation.CreateScalesAttr(Vt.Vec3hArray([Gf.Vec3h(1, 1, 1)]))


def _blend_shape_track(animation, names, weights: np.ndarray, Vt) -> None:
    from pxr import Usd

    animation.CreateBlendShapesAttr(Vt.TokenArray(list(names)))
    attr = animation.CreateBlendShapeWeightsAttr()
    for i, row in enumerate(np.asarray(weights, dtype=np.float32)):
        attr.Set(Vt.FloatArray.FromNumpy(row), Usd.TimeCode(i))


def write_usd(result: AnimationResult, path: Path, *, suffix: str | None = None,
              geometry: FaceGeometry | None = None) -> None:  # fmt: skip
    """Write the stage into ``path`` as it is (the exporters' staging makes it atomic).

    USD picks its file format from the extension, and a staged temporary file ends in
    ``.tmp``: the layer is exported beside it under the real extension, then moved over it.
    The audio path is written relative to the file's folder when the clip lies under it."""
    kind = (suffix or path.suffix).lower()
    target_folder = path.parent
    audio = result.audio_path
    if audio:
        try:
            audio = os.path.relpath(Path(audio).resolve(), target_folder.resolve())
        except ValueError:  # another drive (Windows)
            audio = str(Path(audio).resolve())
        audio = audio.replace(os.sep, "/")
    stage = build_stage(result, audio_asset=audio, geometry=geometry)
    fmt = "usdc" if kind in (".usdc", ".usd") else "usda"
    side = path.with_name(path.name + (".usdc" if fmt == "usdc" else ".usda"))
    try:
        if not stage.GetRootLayer().Export(str(side), args={"format": fmt} if kind == ".usd" else {}):
            raise OSError(f"USD could not write {side.name}")
        os.replace(side, path)
    finally:
        side.unlink(missing_ok=True)
