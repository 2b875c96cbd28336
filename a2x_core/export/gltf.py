"""glTF 2.0 export (``-o take.gltf`` / ``take.glb``): morph-target weight animation.

Web viewers (three.js, Babylon), game engines and Blender read a face take from glTF as the
animated ``weights`` of a mesh whose morph targets are named in ``mesh.extras.targetNames``
(the convention all of them follow). The result holds curves, not a head: the mesh is a small
placeholder with the 52 ARKit targets (each nudges one vertex), so that the file is complete
and valid and its animation can be retargeted by name onto any ARKit rig. ``.gltf`` embeds its
buffer as a data URI (one self-contained file); ``.glb`` is the binary container.

glTF has no ratified audio extension, so the clip's path and the take's provenance go into
``asset.extras`` (``a2x.audio``, ``a2x.startSeconds``, ``a2x.fps``...).

With an Audio2Face model's own head (:mod:`a2x_core.models.a2f_geometry`), the "Face" mesh is that head's
skin instead of the placeholder: its vertices as a ``POINTS`` primitive (the model folder has
no faces) whose 52 morph targets are the model's own ARKit poses, stored as sparse accessors
(only the vertices a pose moves: a pose moves a part of the face); a "Tongue" mesh with the 16
tongue poses and the tongue weights' animation; and a "Jaw" node carrying the jaw's five
keypoints, animated by the take's jaw transforms (translation + rotation). A viewer plays the
weights: the file stays the size of the poses, not of frames x vertices.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..models.a2f_geometry import FaceGeometry, PoseSet, rotation_quaternions
from ..result import AnimationResult
from ..version import __version__

GLTF_SUFFIXES = (".gltf", ".glb")

# glTF enums (spec section 5): component types, buffer view targets, primitive modes.
_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_POINTS, _TRIANGLES = 0, 4

#: The placeholder: a unit quad facing +Z (two triangles).
_QUAD = np.array([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]], np.float32)
_QUAD_INDICES = np.array([0, 1, 2, 0, 2, 3], dtype=np.uint16)


def _import_gltf():
    try:
        import pygltflib
    except ImportError:
        raise OutputError("pygltflib is needed for glTF exports", hint="pip install 'a2x[gltf]'") from None
    return pygltflib


class _Blob:
    """The one buffer: each array appended 4-byte aligned, with its view and accessor."""

    def __init__(self, gltf) -> None:
        self.gltf = gltf
        self.data = bytearray()

    def add(self, array: np.ndarray, accessor_type: str, component: int, target: int | None,
            with_bounds: bool) -> int:  # fmt: skip
        lib = _import_gltf()
        while len(self.data) % 4:
            self.data.append(0)
        raw = np.ascontiguousarray(array).tobytes()
        self.gltf.bufferViews.append(lib.BufferView(buffer=0, byteOffset=len(self.data),
                                                    byteLength=len(raw), target=target))  # fmt: skip
        self.data.extend(raw)
        rows = array.reshape(array.shape[0], -1)
        accessor = lib.Accessor(bufferView=len(self.gltf.bufferViews) - 1, componentType=component,
                                count=int(array.shape[0]), type=accessor_type)  # fmt: skip
        if with_bounds:
            accessor.min = [float(v) for v in rows.min(axis=0)]
            accessor.max = [float(v) for v in rows.max(axis=0)]
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1

    def view(self, array: np.ndarray) -> int:
        """A plain buffer view of ``array`` (4-byte aligned; no target: sparse parts use it)."""
        lib = _import_gltf()
        while len(self.data) % 4:
            self.data.append(0)
        raw = np.ascontiguousarray(array).tobytes()
        self.gltf.bufferViews.append(lib.BufferView(buffer=0, byteOffset=len(self.data),
                                                    byteLength=len(raw)))  # fmt: skip
        self.data.extend(raw)
        return len(self.gltf.bufferViews) - 1

    def add_sparse_target(self, delta: np.ndarray, moving: np.ndarray) -> int:
        """A VEC3 morph-target accessor holding ``delta`` ``[V, 3]`` only at ``moving``
        (glTF sparse accessor without a base view: every other vertex is 0). A pose that
        moves most vertices is stored dense: an index costs a third of an offset."""
        lib = _import_gltf()
        if len(moving) > 0.75 * len(delta):
            return self.add(np.asarray(delta, dtype=np.float32), "VEC3", _FLOAT, _ARRAY_BUFFER,
                            with_bounds=True)  # fmt: skip
        values = np.ascontiguousarray(delta[moving], dtype=np.float32)
        low = np.minimum(values.min(axis=0), 0.0) if len(values) else np.zeros(3)
        high = np.maximum(values.max(axis=0), 0.0) if len(values) else np.zeros(3)
        accessor = lib.Accessor(componentType=_FLOAT, count=int(len(delta)), type="VEC3",
                                min=[float(v) for v in low], max=[float(v) for v in high])  # fmt: skip
        accessor.byteOffset = None  # no base view: pygltflib's default 0 would need one
        if len(moving):
            accessor.sparse = lib.Sparse(
                count=int(len(moving)),
                indices=lib.AccessorSparseIndices(bufferView=self.view(moving.astype(np.uint32)),
                                                  componentType=_UNSIGNED_INT),
                values=lib.AccessorSparseValues(bufferView=self.view(values)),
            )  # fmt: skip
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1


def _points_mesh(blob: _Blob, name: str, poses: PoseSet, names: list[str]):
    """A POINTS mesh of the pose set's neutral with one sparse morph target per name (a name
    the set lacks gets an all-zero target, so that targets and the animation's weights keep
    the same order)."""
    lib = _import_gltf()
    position = blob.add(poses.neutral.astype(np.float32), "VEC3", _FLOAT, _ARRAY_BUFFER,
                        with_bounds=True)  # fmt: skip
    targets = []
    for target in names:
        delta = poses.delta_for(target)
        if delta is None:
            delta = np.zeros_like(poses.neutral)
        targets.append({"POSITION": blob.add_sparse_target(delta, poses.moving(delta))})
    primitive = lib.Primitive(attributes=lib.Attributes(POSITION=position), mode=_POINTS,
                              targets=targets)  # fmt: skip
    return lib.Mesh(name=name, primitives=[primitive], weights=[0.0] * len(names),
                    extras={"targetNames": list(names)})  # fmt: skip


def _placeholder_targets(count: int) -> np.ndarray:
    """``[count, 4, 3]`` displacements: target ``k`` moves vertex ``k % 4`` a little along +Z,
    by an amount unique to ``k``, so that no two targets are the same."""
    targets = np.zeros((count, len(_QUAD), 3), dtype=np.float32)
    for k in range(count):
        targets[k, k % len(_QUAD), 2] = 0.05 + 0.25 * k / max(1, count)
    return targets


def build_gltf(result: AnimationResult, *, binary: bool, geometry: FaceGeometry | None = None):
    """A ``pygltflib.GLTF2`` holding the take (buffer embedded as a data URI unless ``binary``);
    ``geometry``: the Audio2Face model's head instead of the placeholder."""
    lib = _import_gltf()
    names = list(result.names)
    weights = np.clip(np.asarray(result.weights, dtype=np.float32), 0.0, 1.0)
    gltf = lib.GLTF2(asset=lib.Asset(version="2.0", generator=f"a2x {__version__}"))
    gltf.asset.extras = {"a2x": {
        "audio": result.audio_path, "startSeconds": float(result.start_s),
        "durationSeconds": float(result.duration_s),
        "fps": f"{result.fps.numerator}/{result.fps.denominator}",
        "model": result.model, "modelVersion": result.model_version,
    }}  # fmt: skip
    blob = _Blob(gltf)
    if geometry is None:
        position = blob.add(_QUAD, "VEC3", _FLOAT, _ARRAY_BUFFER, with_bounds=True)
        indices = blob.add(_QUAD_INDICES, "SCALAR", _UNSIGNED_SHORT, _ELEMENT_ARRAY_BUFFER,
                           with_bounds=False)  # fmt: skip
        targets = [{"POSITION": blob.add(t, "VEC3", _FLOAT, _ARRAY_BUFFER, with_bounds=True)}
                   for t in _placeholder_targets(len(names))]  # fmt: skip
        primitive = lib.Primitive(attributes=lib.Attributes(POSITION=position), indices=indices,
                                  mode=_TRIANGLES, targets=targets)  # fmt: skip
        gltf.meshes.append(lib.Mesh(name="Face", primitives=[primitive],
                                    weights=[0.0] * len(names), extras={"targetNames": names}))  # fmt: skip
    else:
        gltf.meshes.append(_points_mesh(blob, "Face", geometry.skin, names))
    gltf.nodes.append(lib.Node(name="Face", mesh=0))
    gltf.scenes.append(lib.Scene(name="Take", nodes=[0]))
    gltf.scene = 0
    step = result.fps.denominator / result.fps.numerator
    times = (np.arange(result.num_frames, dtype=np.float64) * step).astype(np.float32)
    time_accessor = blob.add(times, "SCALAR", _FLOAT, None, with_bounds=True)
    animation = lib.Animation(name="Take", samplers=[], channels=[])
    gltf.animations.append(animation)

    def animate(node: int, path: str, values: np.ndarray, accessor_type: str = "SCALAR") -> None:
        # LINEAR: one keyframe's outputs (for weights: the targets' weights in target order)
        output = blob.add(np.ascontiguousarray(values, dtype=np.float32), accessor_type, _FLOAT,
                          None, with_bounds=False)  # fmt: skip
        animation.samplers.append(lib.AnimationSampler(input=time_accessor, output=output,
                                                       interpolation="LINEAR"))  # fmt: skip
        animation.channels.append(lib.AnimationChannel(
            sampler=len(animation.samplers) - 1,
            target=lib.AnimationChannelTarget(node=node, path=path)))  # fmt: skip

    animate(0, "weights", weights.reshape(-1))
    if geometry is not None:
        _head_parts(gltf, blob, result, geometry, animate)
    while len(blob.data) % 4:
        blob.data.append(0)
    data = bytes(blob.data)
    if binary:
        gltf.buffers.append(lib.Buffer(byteLength=len(data)))
        gltf.set_binary_blob(data)
    else:
        uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")
        gltf.buffers.append(lib.Buffer(byteLength=len(data), uri=uri))
    return gltf


def _head_parts(gltf, blob: _Blob, result: AnimationResult, geometry: FaceGeometry,
                animate) -> None:  # fmt: skip
    """The tongue (its poses and weights) and the jaw (keypoints on an animated node)."""
    lib = _import_gltf()
    scene = gltf.scenes[0]
    if geometry.tongue is not None and result.tongue_weights is not None and result.tongue_names:
        names = list(result.tongue_names)
        gltf.meshes.append(_points_mesh(blob, "Tongue", geometry.tongue, names))
        gltf.nodes.append(lib.Node(name="Tongue", mesh=len(gltf.meshes) - 1))
        scene.nodes.append(len(gltf.nodes) - 1)
        tongue = np.clip(np.asarray(result.tongue_weights, dtype=np.float32), 0.0, 1.0)
        animate(len(gltf.nodes) - 1, "weights", tongue.reshape(-1))
    if geometry.jaw_keypoints is not None and result.jaw_transforms is not None:
        position = blob.add(geometry.jaw_keypoints.astype(np.float32), "VEC3", _FLOAT,
                            _ARRAY_BUFFER, with_bounds=True)  # fmt: skip
        gltf.meshes.append(lib.Mesh(name="JawKeypoints", primitives=[lib.Primitive(
            attributes=lib.Attributes(POSITION=position), mode=_POINTS)]))  # fmt: skip
        gltf.nodes.append(lib.Node(name="Jaw", mesh=len(gltf.meshes) - 1))
        scene.nodes.append(len(gltf.nodes) - 1)
        jaw = np.asarray(result.jaw_transforms, dtype=np.float64)  # row-major, M[:3, 3] = move
        animate(len(gltf.nodes) - 1, "translation", jaw[:, :3, 3], "VEC3")
        animate(len(gltf.nodes) - 1, "rotation", rotation_quaternions(jaw[:, :3, :3]), "VEC4")


def write_gltf(result: AnimationResult, path: Path, *, binary: bool,
               geometry: FaceGeometry | None = None) -> None:  # fmt: skip
    """Write the take into ``path`` as it is (the exporters' staging makes it atomic)."""
    if result.num_frames < 1:
        raise OutputError("the result has no frames to export", path=path)
    gltf = build_gltf(result, binary=binary, geometry=geometry)
    if binary:
        gltf.save_binary(str(path))
    else:
        gltf.save_json(str(path))
