"""glTF 2.0 export (``-o take.gltf`` / ``take.glb``): morph-target weight animation.

Web viewers (three.js, Babylon), game engines and Blender read a face take from glTF as the
animated ``weights`` of a mesh whose morph targets are named in ``mesh.extras.targetNames``
(the convention all of them follow). The result holds curves, not a head: the mesh is a small
placeholder with the 52 ARKit targets (each nudges one vertex), so that the file is complete
and valid and its animation can be retargeted by name onto any ARKit rig. ``.gltf`` embeds its
buffer as a data URI (one self-contained file); ``.glb`` is the binary container.

glTF has no ratified audio extension, so the clip's path and the take's provenance go into
``asset.extras`` (``a2x.audio``, ``a2x.startSeconds``, ``a2x.fps``...).
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from .errors import OutputError
from .result import AnimationResult
from .version import __version__

GLTF_SUFFIXES = (".gltf", ".glb")

# glTF enums (spec section 5): component types, buffer view targets, primitive modes.
_FLOAT, _UNSIGNED_SHORT = 5126, 5123
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES = 4

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


def _placeholder_targets(count: int) -> np.ndarray:
    """``[count, 4, 3]`` displacements: target ``k`` moves vertex ``k % 4`` a little along +Z,
    by an amount unique to ``k``, so that no two targets are the same."""
    targets = np.zeros((count, len(_QUAD), 3), dtype=np.float32)
    for k in range(count):
        targets[k, k % len(_QUAD), 2] = 0.05 + 0.25 * k / max(1, count)
    return targets


def build_gltf(result: AnimationResult, *, binary: bool):
    """A ``pygltflib.GLTF2`` holding the take (buffer embedded as a data URI unless ``binary``)."""
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
    position = blob.add(_QUAD, "VEC3", _FLOAT, _ARRAY_BUFFER, with_bounds=True)
    indices = blob.add(_QUAD_INDICES, "SCALAR", _UNSIGNED_SHORT, _ELEMENT_ARRAY_BUFFER, with_bounds=False)
    targets = [{"POSITION": blob.add(t, "VEC3", _FLOAT, _ARRAY_BUFFER, with_bounds=True)}
               for t in _placeholder_targets(len(names))]  # fmt: skip
    primitive = lib.Primitive(attributes=lib.Attributes(POSITION=position), indices=indices,
                              mode=_TRIANGLES, targets=targets)  # fmt: skip
    gltf.meshes.append(lib.Mesh(name="Face", primitives=[primitive], weights=[0.0] * len(names),
                                extras={"targetNames": names}))  # fmt: skip
    gltf.nodes.append(lib.Node(name="Face", mesh=0))
    gltf.scenes.append(lib.Scene(name="Take", nodes=[0]))
    gltf.scene = 0
    step = result.fps.denominator / result.fps.numerator
    times = (np.arange(result.num_frames, dtype=np.float64) * step).astype(np.float32)
    time_accessor = blob.add(times, "SCALAR", _FLOAT, None, with_bounds=True)
    # LINEAR weights: one keyframe's outputs are the targets' weights in target order.
    weight_accessor = blob.add(weights.reshape(-1), "SCALAR", _FLOAT, None, with_bounds=False)
    gltf.animations.append(lib.Animation(
        name="Take",
        samplers=[lib.AnimationSampler(input=time_accessor, output=weight_accessor,
                                       interpolation="LINEAR")],
        channels=[lib.AnimationChannel(sampler=0, target=lib.AnimationChannelTarget(
            node=0, path="weights"))],
    ))  # fmt: skip
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


def write_gltf(result: AnimationResult, path: Path, *, binary: bool) -> None:
    """Write the take into ``path`` as it is (the exporters' staging makes it atomic)."""
    if result.num_frames < 1:
        raise OutputError("the result has no frames to export", path=path)
    gltf = build_gltf(result, binary=binary)
    if binary:
        gltf.save_binary(str(path))
    else:
        gltf.save_json(str(path))
