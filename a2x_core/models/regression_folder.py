"""Audio2Face-3D regression model folders: loading and strict validation.

A folder as published on Hugging Face (SDK spec §1.3, §1.5) holds ``model.json``,
``network_info.json``, ``model_config.json``, ``model_data.npz``, ``implicit_emo_db.npz``,
``bs_skin.npz`` + ``bs_skin_config.json``, ``bs_tongue.npz`` + ``bs_tongue_config.json``,
``network.onnx`` and ``trt_info.json``. Every check names the file, the key or array, and what
was expected versus found, so that a damaged download is diagnosed in one line.

The loaders accept what NVIDIA's SDK accepts (docs/architecture.md, "Model folders"): arrays
stored flat or in any shape of the right element count (the SDK reads raw float32 and checks
only the count), JSON integers written as floats (``2.0``; ``2.5`` stays an error), no
``trt_info.json`` (only a TensorRT build reads it), extra keys and arrays. They stay strict where
the output would be wrong: NaN/Inf, values beyond :data:`MAX_MODEL_VALUE`, weights that would
overflow float32, damaged containers.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ModelPackageError, ParameterError

log = logging.getLogger("a2x_core")

_REDOWNLOAD = "download the model folder again (e.g. nvidia/Audio2Face-3D-v2.3-Mark)"

#: ``model_config.json`` keys the SDK reads (spec §1.3) with the range its setters enforce
#: (spec §4, ``include/audio2face/internal/animator.h``): out-of-range or NaN values are
#: rejected, never clamped. ``None`` = no bound (``input_strength`` has no validator).
ANIMATOR_RANGES: dict[str, tuple[float | None, float | None]] = {
    "input_strength": (None, None),
    "lower_face_smoothing": (0.0, 0.1),
    "upper_face_smoothing": (0.0, 0.1),
    "lower_face_strength": (0.0, 2.0),
    "upper_face_strength": (0.0, 2.0),
    "face_mask_level": (0.0, 1.0),
    "face_mask_softness": (0.001, 0.5),
    "skin_strength": (0.0, 2.0),
    "blink_strength": (0.0, 2.0),
    "eyelid_open_offset": (-1.0, 1.0),
    "lip_open_offset": (-0.2, 0.2),
    "tongue_strength": (0.0, 3.0),
    "tongue_height_offset": (-3.0, 3.0),
    "tongue_depth_offset": (-3.0, 3.0),
    "lower_teeth_strength": (0.0, 2.0),
    "lower_teeth_height_offset": (-3.0, 3.0),
    "lower_teeth_depth_offset": (-3.0, 3.0),
    "eyeballs_strength": (0.0, 2.0),
    "saccade_strength": (0.0, 2.0),
    "right_eye_rot_x_offset": (-10.0, 10.0),
    "right_eye_rot_y_offset": (-10.0, 10.0),
    "left_eye_rot_x_offset": (-10.0, 10.0),
    "left_eye_rot_y_offset": (-10.0, 10.0),
    "eye_saccade_seed": (0.0, 4999.0),
}

#: ``bs_*_config.json`` ``blendshape_params`` scalars (spec §1.5) with the solver's validator
#: minimum (``internal/blendshape_solver_base.h``); ``templateBBSize`` is optional (54.7).
SOLVER_RANGES: dict[str, tuple[float, float | None]] = {
    "strengthL1regularization": (0.0, None),
    "strengthL2regularization": (0.0, None),
    "strengthTemporalSmoothing": (0.0, None),
    "strengthSymmetry": (0.0, None),
    "templateBBSize": (1.0, None),
}
DEFAULT_TEMPLATE_BB_SIZE = 54.7

#: Largest |value| a model array may hold. Geometry is in centimetres (Mark's head spans about
#: 55 cm, ``templateBBSize`` 54.7); deltas, jaw keypoints and saccade angles are smaller, implicit
#: emotions are about +-5. 1e6 (10 km) leaves four orders of magnitude of headroom while the
#: solver's squared sums (1e12 per coordinate, summed over 1e5 vertices) stay far inside float32
#: (3.4e38). A damaged file's 1e30 would otherwise load and then fail mid-run (SVD).
MAX_MODEL_VALUE = 1e6

#: |bsWeightMultipliers| / |bsWeightOffsets| above this load (the SDK reads any float) with a
#: warning: ARKit weights are 0..1 and the shipped configs use at most 3 (tongue), so 10+ is
#: almost surely a typo or damage. Values whose sum overflows float32 are refused (Inf output).
ABSURD_WEIGHT_SCALE = 10.0
#: ... and above this they are refused: no rig is driven by weights of 1000 (the output would be
#: nonsense that looks like success), while a deliberate exaggeration (up to x1000) still loads.
MAX_WEIGHT_SCALE = 1000.0

#: Deflate expands data at most ~1032:1; a zip member claiming more is damaged (or a bomb).
_MAX_DEFLATE_RATIO = 1100
#: Bytes read per chunk while loading an .npy member.
_NPZ_CHUNK = 1 << 24
#: Every way zipfile, zlib and NumPy's .npy header parser report a damaged file.
_NPZ_DAMAGE = (
    OSError, ValueError, EOFError, KeyError, IndexError, TypeError, NotImplementedError,
    RuntimeError, MemoryError, SyntaxError, tokenize.TokenError, struct.error, zlib.error,
    zipfile.BadZipFile,
)  # fmt: skip

#: Per-pose arrays of ``blendshape_params``: name -> element kind.
SOLVER_ARRAYS: dict[str, str] = {
    "bsSolveActivePoses": "int",
    "bsSolveCancelPoses": "int",
    "bsSolveSymmetryPoses": "int",
    "bsWeightMultipliers": "float",
    "bsWeightOffsets": "float",
}

#: The 8 arrays of a regression ``model_data.npz`` (spec §1.3): name -> shape in terms of
#: S/T (PCA shapes skin/tongue) and V/VT (vertices skin/tongue).
MODEL_DATA_ARRAYS: dict[str, tuple[str, ...]] = {
    "shapes_matrix_skin": ("S", "V", "3"),
    "shapes_mean_skin": ("V", "3"),
    "lip_open_pose_delta": ("V", "3"),
    "eye_close_pose_delta": ("V", "3"),
    "shapes_matrix_tongue": ("T", "VT", "3"),
    "shapes_mean_tongue": ("VT", "3"),
    "neutral_jaw": ("5", "3"),
    "saccade_rot_matrix": ("N", "2"),
}


# ----------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class NetworkInfo:
    """``network_info.json`` of a regression network (spec §1.3)."""

    actor: str
    version: str
    explicit_emotions: tuple[str, ...]
    default_emotion: np.ndarray  # float32 [E]
    implicit_emotion_len: int
    num_shapes_skin: int
    num_shapes_tongue: int
    num_verts_skin: int
    num_verts_tongue: int
    result_jaw_size: int
    result_eyes_size: int
    buffer_len: int
    buffer_ofs: int
    samplerate: int

    @property
    def emotion_size(self) -> int:
        return self.implicit_emotion_len + len(self.explicit_emotions)

    @property
    def result_size(self) -> int:
        """``S + T + jaw + eyes`` (301 for Mark), the network's ``result`` width."""
        return (
            self.num_shapes_skin + self.num_shapes_tongue + self.result_jaw_size
            + self.result_eyes_size
        )  # fmt: skip


@dataclass(frozen=True)
class ModelData:
    """``model_data.npz``: PCA bases and neutrals, corrective deltas, jaw and saccade data."""

    shapes_matrix_skin: np.ndarray  # [S, V, 3]
    shapes_mean_skin: np.ndarray  # [V, 3], the skin neutral
    lip_open_pose_delta: np.ndarray  # [V, 3]
    eye_close_pose_delta: np.ndarray  # [V, 3]
    shapes_matrix_tongue: np.ndarray  # [T, VT, 3]
    shapes_mean_tongue: np.ndarray  # [VT, 3], the tongue neutral
    neutral_jaw: np.ndarray  # [5, 3]
    saccade_rot_matrix: np.ndarray  # [N, 2], 30 fps


@dataclass(frozen=True)
class EmotionDatabase:
    """``implicit_emo_db.npz``: one 16-d implicit emotion per training frame, grouped by shot."""

    emo_db: np.ndarray  # float32 [frames, implicit_len]
    shots: dict[str, tuple[int, int]]  # name -> (start, size)
    path: Path

    def row(self, shot: str, frame: int, *, config_path: Path | None = None) -> np.ndarray:
        """The implicit emotion of ``(shot, frame)`` (SDK ``EmotionDatabase::GetEmotion``).

        Raises:
            ModelPackageError naming ``config_path`` when given (a bad model_config.json), else
            ParameterError (a bad override): unknown shot, or frame outside the shot.
        """
        error = ParameterError if config_path is None else ModelPackageError
        where = {} if config_path is None else {"path": config_path}
        if shot not in self.shots:
            names = ", ".join(sorted(self.shots)[:20])
            raise error(
                f"source_shot {shot!r} is not in the emotion database",
                hint=f"use one of: {names}{' ...' if len(self.shots) > 20 else ''}",
                **where,
            )
        start, size = self.shots[shot]
        if not 0 <= frame < size:
            raise error(
                f"source_frame {frame} is outside shot {shot!r}", hint=f"use 0..{size - 1}", **where
            )
        return self.emo_db[start + frame].copy()


@dataclass(frozen=True)
class BlendshapeConfig:
    """``bs_*_config.json`` ``blendshape_params`` (spec §1.5); arrays have one entry per pose."""

    l1: float
    l2: float
    temporal: float
    symmetry: float
    template_bb_size: float
    active: np.ndarray  # int32 [P], 0/1
    cancel: np.ndarray  # int32 [P], pair id or -1
    symmetry_ids: np.ndarray  # int32 [P], pair id or -1
    multipliers: np.ndarray  # float32 [P]
    offsets: np.ndarray  # float32 [P]


@dataclass(frozen=True)
class BlendshapeData:
    """``bs_*.npz``: neutral (absolute), one delta per pose, optional solver vertex mask."""

    pose_names: tuple[str, ...]  # without "neutral"
    neutral: np.ndarray  # float32 [3V] xyz-interleaved
    deltas: np.ndarray  # float32 [P, 3V]
    frontal_mask: np.ndarray | None  # int32 vertex indices, or None


@dataclass(frozen=True)
class BlendshapeSet:
    """One solver's files (skin or tongue)."""

    config: BlendshapeConfig
    data: BlendshapeData
    config_path: Path
    data_path: Path


@dataclass(frozen=True)
class RegressionPackage:
    """A validated regression model folder."""

    model_json: Path
    network_info: NetworkInfo
    network_info_path: Path
    onnx_path: Path
    trt_path: Path
    config: dict[str, Any]  # model_config.json "config" (validated)
    config_path: Path
    model_data: ModelData
    model_data_path: Path
    emotion_db: EmotionDatabase
    skin: BlendshapeSet
    tongue: BlendshapeSet

    @property
    def folder(self) -> Path:
        return self.model_json.parent


# ----------------------------------------------------------------------------- small helpers


def read_json_file(path: Path, hint: str = _REDOWNLOAD) -> Any:
    """A model folder's JSON file, any damage as a typed error: unreadable, not UTF-8, not JSON,
    or nested too deeply for Python's parser (RecursionError, reliability_fuzz M1).

    Raises:
        ModelPackageError naming ``path``.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelPackageError(f"is not valid JSON ({error})", path=path, hint=hint) from None
    except RecursionError:
        raise ModelPackageError(
            "is not valid JSON (nested too deeply to parse)", path=path, hint=hint
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelPackageError("missing", path=path, hint=_REDOWNLOAD)
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise ModelPackageError("must hold a JSON object", path=path, hint=_REDOWNLOAD)
    return data


def json_integer(value: Any) -> int | None:
    """``value`` as an int if it is one: a JSON integer, or a float with an integral value
    (``2.0``; the SDK's ``get<size_t>``/``get<int>`` convert those). None for anything else
    (``2.5``, NaN, strings, booleans)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _key(data: Mapping[str, Any], dotted: str, path: Path, kind: type | tuple[type, ...]) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``, checked to exist and to be of ``kind``."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ModelPackageError(f"key {dotted!r} is missing", path=path, hint=_REDOWNLOAD)
        node = node[part]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass in Python; JSON true/false is never a valid number here
    if isinstance(node, bool) and bool not in kinds:
        raise ModelPackageError(f"key {dotted!r} is a boolean", path=path, hint=_REDOWNLOAD)
    if int in kinds and float not in kinds and isinstance(node, float):
        whole = json_integer(node)  # 2.0 is read as 2 by the SDK; 2.5 is not an integer
        if whole is None:
            raise ModelPackageError(
                f"key {dotted!r} must be an integer, found {node!r}", path=path, hint=_REDOWNLOAD
            )
        node = whole
    if not isinstance(node, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ModelPackageError(
            f"key {dotted!r} must be {names}, found {type(node).__name__} {node!r}",
            path=path,
            hint=_REDOWNLOAD,
        )
    return node


def _count(data: Mapping[str, Any], dotted: str, path: Path) -> int:
    value = _key(data, dotted, path, int)
    if value <= 0:
        raise ModelPackageError(f"key {dotted!r} must be > 0, found {value}", path=path)
    return int(value)


def _resolve(folder: Path, value: str) -> Path:
    """Relative paths resolve against the model.json folder; absolute paths stay (spec §1.3)."""
    path = Path(value)
    return path if path.is_absolute() else folder / path


def check_range(name: str, value: Any, low: float | None, high: float | None) -> str | None:
    """Why ``value`` is rejected by an SDK range validator, or None if it is accepted.

    The SDK compares float32 values (``Validator<float>::check``), NaN first.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} must be a number, found {value!r}"
    try:
        with np.errstate(over="ignore"):
            v = np.float32(value)
        as_float = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        return f"{name} is an integer beyond the float32 range"
    if math.isnan(as_float) or np.isnan(v):
        return f"{name} is NaN"
    if not np.isfinite(v):
        return f"{name}={value} is not finite"
    if low is not None and v < np.float32(low):
        return f"{name}={value} is below its minimum {low}"
    if high is not None and v > np.float32(high):
        return f"{name}={value} is above its maximum {high}"
    return None


def range_text(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return "any finite number"
    if high is None:
        return f">= {low}"
    return f"[{low}, {high}]"


def check_pairs(ids: np.ndarray) -> str | None:
    """Pair groups need exactly two members (SDK ``ValidatePairs``); why not, or None."""
    values, counts = np.unique(ids[ids != -1], return_counts=True)
    bad = [(int(v), int(c)) for v, c in zip(values, counts, strict=True) if c != 2]
    if bad:
        text = ", ".join(f"id {v} has {c}" for v, c in bad[:5])
        return f"pair ids need exactly 2 poses each ({text})"
    return None


@dataclass(frozen=True)
class _NotAnArray:
    """A zip member of an .npz that is not an .npy array (ignored unless a loader needs it)."""

    reason: str


def _load_npz(path: Path) -> dict[str, Any]:
    """Every member of an ``.npz``: name -> array (or :class:`_NotAnArray`).

    Damage of any kind is a typed error (reliability_fuzz M3): an empty or truncated file, a
    damaged zip directory, an ``.npy`` header claiming more data than the file holds (checked
    before anything is allocated), object arrays.
    """
    if not path.is_file():
        raise ModelPackageError("missing", path=path, hint=_REDOWNLOAD)
    if path.suffix != ".npz":  # the SDK checks the extension (spec §1.5)
        raise ModelPackageError("must be a .npz file", path=path, hint="name it *.npz")
    try:
        return _read_npz_members(path)
    except _NPZ_DAMAGE as error:
        detail = str(error) or type(error).__name__
        raise ModelPackageError(
            f"is not a readable .npz ({detail})", path=path, hint=_REDOWNLOAD
        ) from None


def _read_npz_members(path: Path) -> dict[str, Any]:
    disk_size = path.stat().st_size
    arrays: dict[str, Any] = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if member.is_dir():
                continue
            name = member.filename.removesuffix(".npy")
            stored = member.compress_type == zipfile.ZIP_STORED
            limit = member.compress_size * (1 if stored else _MAX_DEFLATE_RATIO)
            if member.compress_size > disk_size or member.file_size > limit:
                raise ModelPackageError(
                    f"is not a readable .npz (member {member.filename!r} claims "
                    f"{member.file_size} bytes, more than the file can hold: a damaged zip)",
                    path=path,
                    hint=_REDOWNLOAD,
                )
            with archive.open(member) as stream:
                arrays[name] = _read_npy(stream, member.file_size, name, path)
    return arrays


def _read_npy(stream: Any, member_size: int, name: str, path: Path) -> Any:
    """One ``.npy`` member; the header's shape is checked against the member's size first."""
    try:
        version = np.lib.format.read_magic(stream)
    except ValueError as error:
        return _NotAnArray(f"not an .npy array ({error})")
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(stream)
    if dtype.hasobject:
        raise ModelPackageError(
            f"array {name!r} holds Python objects (pickled), which model files never do",
            path=path,
            hint=_REDOWNLOAD,
        )
    nbytes = math.prod(shape) * dtype.itemsize
    available = member_size - stream.tell()
    if nbytes > available:
        raise ModelPackageError(
            f"array {name!r}: its header claims shape {list(shape)} ({nbytes} bytes), but the "
            f"file holds {max(available, 0)} bytes for it (damaged or truncated)",
            path=path,
            hint=_REDOWNLOAD,
        )
    buffer = np.empty(nbytes, dtype=np.uint8)
    view, done = memoryview(buffer), 0
    while done < nbytes:
        chunk = stream.read(min(_NPZ_CHUNK, nbytes - done))
        if not chunk:
            raise ModelPackageError(
                f"array {name!r} is truncated ({done} of {nbytes} bytes)",
                path=path,
                hint=_REDOWNLOAD,
            )
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    array = buffer.view(dtype)
    if fortran:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _member(arrays: Mapping[str, Any], name: str, path: Path) -> np.ndarray:
    """``arrays[name]``, checked to exist and to be an array."""
    if name not in arrays:
        raise ModelPackageError(f"array {name!r} is missing", path=path, hint=_REDOWNLOAD)
    array = arrays[name]
    if isinstance(array, _NotAnArray):
        raise ModelPackageError(f"array {name!r} is {array.reason}", path=path, hint=_REDOWNLOAD)
    return array


def _array(
    arrays: Mapping[str, Any],
    name: str,
    path: Path,
    dtype: type,
    shape: tuple[int | None, ...] | None = None,
    *,
    any_layout: bool = False,
) -> np.ndarray:
    """``arrays[name]`` with an exact dtype (the SDK reinterprets raw bytes, spec §8.13) and
    shape (None = any extent).

    ``any_layout``: as the SDK, which reads the array as flat float32 and checks only the
    element count, accept any shape holding the right number of values (``[S, 3V]``, flat ...)
    and return it reshaped to ``shape`` (at most one None extent, inferred).
    """
    array = _member(arrays, name, path)
    if array.dtype != np.dtype(dtype):
        raise ModelPackageError(
            f"array {name!r} has dtype {array.dtype}, expected {np.dtype(dtype)}",
            path=path,
            hint=_REDOWNLOAD,
        )
    if shape is None:
        return array
    ok = len(shape) == array.ndim and all(
        want is None or want == got for want, got in zip(shape, array.shape, strict=False)
    )
    if ok:
        return array
    want_text = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    message = f"array {name!r} has shape {list(array.shape)}, expected {want_text}"
    if any_layout:
        known = math.prod(s for s in shape if s is not None)
        if None in shape:
            if array.size and array.size % known == 0:
                return array.reshape(tuple(-1 if s is None else s for s in shape))
            message += (
                f" (any layout of a non-empty multiple of {known} values; found {array.size})"
            )
        else:
            if array.size == known:
                return array.reshape(shape)
            message += f" (any layout of {known} values; found {array.size})"
    raise ModelPackageError(message, path=path, hint=_REDOWNLOAD)


def _finite(array: np.ndarray, name: str, path: Path) -> None:
    """No NaN/Inf, and nothing beyond :data:`MAX_MODEL_VALUE` (reliability_fuzz M5)."""
    if not np.all(np.isfinite(array)):
        raise ModelPackageError(f"array {name!r} contains NaN or infinite values", path=path)
    if array.size and max(-float(array.min()), float(array.max())) > MAX_MODEL_VALUE:
        flat = array.reshape(-1)  # min/max first: no |array| temporary for valid (large) data
        worst = int(np.argmax(np.abs(flat)))
        raise ModelPackageError(
            f"array {name!r} holds {float(flat[worst]):.6g} (element {worst}); "
            f"model values beyond +-{MAX_MODEL_VALUE:g} are damage, not data",
            path=path,
            hint=_REDOWNLOAD,
        )


def _strings(arrays: Mapping[str, np.ndarray], name: str, path: Path) -> tuple[str, ...]:
    """A fixed-width bytes ('S') array as str (NUL-trimmed, spec §1.7); 'U' is accepted too."""
    array = _member(arrays, name, path)
    if array.dtype.kind not in "SU" or array.ndim != 1:
        raise ModelPackageError(
            f"array {name!r} must be a 1-D string array ('S'), found {array.dtype} "
            f"{list(array.shape)}",
            path=path,
            hint=_REDOWNLOAD,
        )
    if array.dtype.kind == "S":
        names = []
        for i, item in enumerate(array.tolist()):
            try:
                names.append(item.decode("utf-8"))
            except UnicodeDecodeError:  # reliability_fuzz M4
                raise ModelPackageError(
                    f"array {name!r} entry {i} ({item[:40]!r}) is not UTF-8 text",
                    path=path,
                    hint=_REDOWNLOAD,
                ) from None
        return tuple(names)
    return tuple(str(item) for item in array.tolist())


# ----------------------------------------------------------------------------- per-file loaders


def read_network_info(path: Path) -> NetworkInfo:
    """Parse and validate ``network_info.json`` (SDK ``parse_helper.cpp`` regression branch)."""
    data = _read_json(path)
    kind = _key(data, "id.type", path, str)
    output = _key(data, "id.output", path, str)
    if kind != "regression" or output != "geometry":
        raise ModelPackageError(
            f"id.type/id.output are {kind!r}/{output!r}, expected 'regression'/'geometry'",
            path=path,
            hint="this loader runs Audio2Face-3D v2.x regression models",
        )
    emotions = _key(data, "params.explicit_emotions", path, list)
    default = _key(data, "params.default_emotion", path, list)
    if not all(isinstance(e, str) for e in emotions) or not emotions:
        raise ModelPackageError("params.explicit_emotions must be a list of names", path=path)
    if len(default) != len(emotions):
        raise ModelPackageError(
            f"params.default_emotion has {len(default)} values, expected {len(emotions)} "
            "(one per explicit emotion)",
            path=path,
            hint=_REDOWNLOAD,
        )
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in default):
        raise ModelPackageError("params.default_emotion must hold numbers", path=path)
    default_arr = float32_values(default, "params.default_emotion", path)
    _finite(default_arr, "params.default_emotion", path)
    info = NetworkInfo(
        actor=_key(data, "id.actor", path, str),
        version=str(data.get("id", {}).get("version", "")),
        explicit_emotions=tuple(emotions),
        default_emotion=default_arr,
        implicit_emotion_len=_count(data, "params.implicit_emotion_len", path),
        num_shapes_skin=_count(data, "params.num_shapes_skin", path),
        num_shapes_tongue=_count(data, "params.num_shapes_tongue", path),
        num_verts_skin=_count(data, "params.num_verts_skin", path),
        num_verts_tongue=_count(data, "params.num_verts_tongue", path),
        result_jaw_size=_count(data, "params.result_jaw_size", path),
        result_eyes_size=_count(data, "params.result_eyes_size", path),
        buffer_len=_count(data, "audio_params.buffer_len", path),
        buffer_ofs=_key(data, "audio_params.buffer_ofs", path, int),
        samplerate=_count(data, "audio_params.samplerate", path),
    )
    if info.samplerate != 16000:
        raise ModelPackageError(
            f"audio_params.samplerate is {info.samplerate}, expected 16000", path=path
        )
    if not 0 <= info.buffer_ofs <= info.buffer_len:
        raise ModelPackageError(
            f"audio_params.buffer_ofs {info.buffer_ofs} is outside "
            f"[0, buffer_len {info.buffer_len}]",
            path=path,
        )
    # The post-processing reads 5 jaw keypoints and 2x2 eye angles (spec §4 steps 6-7).
    if info.result_jaw_size != 15 or info.result_eyes_size != 4:
        raise ModelPackageError(
            f"params.result_jaw_size/result_eyes_size are {info.result_jaw_size}/"
            f"{info.result_eyes_size}, expected 15/4",
            path=path,
        )
    return info


def validate_animator_config(
    config: Mapping[str, Any],
    path: Path | None = None,
    *,
    error: type = ModelPackageError,
    implicit_emotion: bool = True,
) -> dict[str, Any]:
    """Check every ``model_config.json`` key against :data:`ANIMATOR_RANGES`; returns a copy.

    ``implicit_emotion``: also require the regression keys ``source_shot``/``source_frame``
    (diffusion configs have no implicit-emotion row, spec §1.4).
    """
    where = {"path": path} if path is not None else {}
    prefix = "config." if path is not None else ""
    out: dict[str, Any] = {}
    for name, (low, high) in ANIMATOR_RANGES.items():
        if name not in config:
            raise error(f"key {prefix + name!r} is missing", hint=_REDOWNLOAD, **where)
        why = check_range(prefix + name, config[name], low, high)
        if why:
            raise error(why, hint=f"use a value in {range_text(low, high)}", **where)
        out[name] = float(config[name]) if name != "eye_saccade_seed" else config[name]
    if not implicit_emotion:
        return out
    shot, frame = config.get("source_shot"), config.get("source_frame")
    if not isinstance(shot, str):
        raise error(f"key {prefix}source_shot must be a string, found {shot!r}", **where)
    whole = json_integer(frame)  # the SDK reads it with get<size_t>: 2.0 is frame 2
    if whole is None or whole < 0:
        raise error(f"key {prefix}source_frame must be an integer >= 0, found {frame!r}", **where)
    out["source_shot"], out["source_frame"] = shot, whole
    return out


def read_model_config(path: Path) -> dict[str, Any]:
    """``model_config.json`` ``config`` object, range-checked (spec §1.3, §4)."""
    data = _read_json(path)
    config = _key(data, "config", path, dict)
    return validate_animator_config(config, path)


def read_model_data(path: Path, info: NetworkInfo) -> ModelData:
    """``model_data.npz``: float32 arrays of the sizes ``network_info.json`` implies, in the
    canonical shapes or any layout of the same element count (as the SDK reads them)."""
    arrays = _load_npz(path)
    sizes = {
        "S": info.num_shapes_skin, "T": info.num_shapes_tongue, "V": info.num_verts_skin,
        "VT": info.num_verts_tongue, "5": 5, "3": 3, "2": 2, "N": None,
    }  # fmt: skip
    loaded = {}
    for name, dims in MODEL_DATA_ARRAYS.items():
        shape = tuple(sizes[d] for d in dims)
        array = _array(arrays, name, path, np.float32, shape, any_layout=True)
        _finite(array, name, path)
        loaded[name] = array
    if loaded["saccade_rot_matrix"].shape[0] < 1:
        raise ModelPackageError("array 'saccade_rot_matrix' has no rows", path=path)
    extra = sorted(set(arrays) - set(MODEL_DATA_ARRAYS))
    if extra:  # TF's network_data.npz carries neutral_skin etc.; the SDK never reads them
        log.info("%s: ignoring arrays the SDK does not read: %s", path, ", ".join(extra))
    return ModelData(**loaded)


def read_emotion_database(path: Path, info: NetworkInfo) -> EmotionDatabase:
    """``implicit_emo_db.npz`` (SDK ``EmotionDatabase::InitFromNpz``)."""
    arrays = _load_npz(path)
    emo_db = _array(arrays, "emo_db", path, np.float32, (None, info.implicit_emotion_len))
    _finite(emo_db, "emo_db", path)
    names = _strings(arrays, "emo_spec_names", path)
    starts = _array(arrays, "emo_spec_start", path, np.int32, (len(names),))
    sizes = _array(arrays, "emo_spec_size", path, np.int32, (len(names),))
    shots: dict[str, tuple[int, int]] = {}
    for name, start, size in zip(names, starts.tolist(), sizes.tolist(), strict=True):
        if start < 0 or size < 0 or start + size > emo_db.shape[0]:
            raise ModelPackageError(
                f"shot {name!r} covers rows {start}..{start + size - 1}, outside emo_db "
                f"({emo_db.shape[0]} rows)",
                path=path,
            )
        shots[name] = (int(start), int(size))
    return EmotionDatabase(emo_db, shots, path)


def read_blendshape_config(path: Path, num_poses: int) -> BlendshapeConfig:
    """``bs_*_config.json`` (SDK ``BlendshapeSolverConfigOwner::Init`` plus the setters' checks)."""
    data = _read_json(path)
    params = _key(data, "blendshape_params", path, dict)
    scalars: dict[str, float] = {}
    for name, (low, high) in SOLVER_RANGES.items():
        if name == "templateBBSize" and name not in params:
            scalars[name] = DEFAULT_TEMPLATE_BB_SIZE
            continue
        if name not in params:
            raise ModelPackageError(f"key 'blendshape_params.{name}' is missing", path=path)
        why = check_range(f"blendshape_params.{name}", params[name], low, high)
        if why:
            raise ModelPackageError(why, path=path, hint=f"use a value {range_text(low, high)}")
        scalars[name] = float(params[name])
    declared = _key(params, "numPoses", path, int)
    if declared != num_poses:
        raise ModelPackageError(
            f"blendshape_params.numPoses is {declared}, but the .npz has {num_poses} poses "
            "besides neutral",
            path=path,
            hint=_REDOWNLOAD,
        )
    arrays = {}
    for name, kind in SOLVER_ARRAYS.items():
        arrays[name] = solver_array(params.get(name), name, num_poses, kind, path=path)
    check_solver_arrays(arrays, path=path)
    return BlendshapeConfig(
        l1=scalars["strengthL1regularization"],
        l2=scalars["strengthL2regularization"],
        temporal=scalars["strengthTemporalSmoothing"],
        symmetry=scalars["strengthSymmetry"],
        template_bb_size=scalars["templateBBSize"],
        active=arrays["bsSolveActivePoses"],
        cancel=arrays["bsSolveCancelPoses"],
        symmetry_ids=arrays["bsSolveSymmetryPoses"],
        multipliers=arrays["bsWeightMultipliers"],
        offsets=arrays["bsWeightOffsets"],
    )


def solver_array(
    values: Any, name: str, num_poses: int, kind: str, *, path: Path | None = None
) -> np.ndarray:
    """One per-pose array, checked for length and element type."""
    error = ModelPackageError if path is not None else ParameterError
    where = {"path": path} if path is not None else {}
    label = f"blendshape_params.{name}" if path is not None else name
    if not isinstance(values, list | tuple | np.ndarray):
        raise error(f"{label} must be a list of {num_poses} values, found {values!r}", **where)
    if len(values) != num_poses:
        raise error(f"{label} has {len(values)} values, expected {num_poses} (numPoses)", **where)
    items = [v.item() if isinstance(v, np.generic) else v for v in values]
    if kind == "int":
        ints = [json_integer(v) for v in items]  # the SDK's get<vector<int>> reads 1.0 as 1
        bad = next((i for i, v in enumerate(ints) if v is None), None)
        if bad is not None:
            raise error(f"{label} must hold integers, found {items[bad]!r} at {bad}", **where)
        info = np.iinfo(np.int32)
        bad = next((i for i, v in enumerate(ints) if not info.min <= v <= info.max), None)
        if bad is not None:  # reliability_fuzz M2
            raise error(
                f"{label}[{bad}] is {ints[bad]}, outside the 32-bit integer range the SDK reads",
                hint="use 0/1 for active poses and small pair ids (-1 = none)",
                **where,
            )
        return np.asarray(ints, dtype=np.int32)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        raise error(f"{label} must hold numbers", **where)
    array = float32_values(items, label, path, error=error)
    if not np.all(np.isfinite(array)):
        raise error(f"{label} contains NaN or infinite values", **where)
    return array


def float32_values(
    values: Any, label: str, path: Path | None, *, error: type = ModelPackageError
) -> np.ndarray:
    """Numbers as float32; ones beyond float32's range (1e39, 10**400) are an ``error``."""
    where = {"path": path} if path is not None else {}
    try:
        with np.errstate(over="ignore"):  # 1e39 -> inf, reported by the caller's finite check
            return np.asarray(values, dtype=np.float32)
    except (OverflowError, ValueError, TypeError):
        raise error(f"{label} holds a number beyond the float32 range", **where) from None


def check_weight_scale(
    multipliers: np.ndarray,
    offsets: np.ndarray,
    pose_names: tuple[str, ...],
    label: str,
    path: Path | None = None,
    *,
    error: type = ModelPackageError,
) -> None:
    """``bsWeightMultipliers``/``bsWeightOffsets`` as the SDK takes them (any float), but:
    refused when ``weight * multiplier + offset`` (weight in [0, 1]) could leave
    +-:data:`MAX_WEIGHT_SCALE` (or overflow float32), and warned about, once, when a value
    exceeds :data:`ABSURD_WEIGHT_SCALE` (reliability_fuzz M6).
    """
    where = {"path": path} if path is not None else {}
    with np.errstate(over="ignore"):
        reach = np.abs(multipliers.astype(np.float32)) + np.abs(offsets.astype(np.float32))
    too_far = ~np.isfinite(reach) | (reach > MAX_WEIGHT_SCALE)
    if np.any(too_far):
        i = int(np.flatnonzero(too_far)[0])
        raise error(
            f"{label}bsWeightMultipliers/bsWeightOffsets of pose {pose_names[i]!r} "
            f"({multipliers[i]:g}, {offsets[i]:g}) scale its weight beyond +-{MAX_WEIGHT_SCALE:g}",
            hint=f"use values within +-{ABSURD_WEIGHT_SCALE:g} (ARKit weights are 0..1)",
            **where,
        )
    for key, values in (("bsWeightMultipliers", multipliers), ("bsWeightOffsets", offsets)):
        absurd = np.flatnonzero(np.abs(values) > ABSURD_WEIGHT_SCALE)
        if absurd.size:
            poses = ", ".join(f"{pose_names[i]}={values[i]:g}" for i in absurd[:5])
            more = f" (+{absurd.size - 5} more)" if absurd.size > 5 else ""
            source = f"{path}: " if path is not None else ""
            log.warning(
                "%s%s%s has |value| > %g for %s%s: ARKit weights are 0..1, so these poses will "
                "be scaled far outside it",
                source, label, key, ABSURD_WEIGHT_SCALE, poses, more,
            )  # fmt: skip


def check_solver_arrays(arrays: Mapping[str, np.ndarray], *, path: Path | None = None) -> None:
    """At least one active pose; cancel and symmetry ids form pairs (SDK setters, spec §8.14)."""
    error = ModelPackageError if path is not None else ParameterError
    where = {"path": path} if path is not None else {}
    if not np.any(arrays["bsSolveActivePoses"] != 0):
        raise error("bsSolveActivePoses: at least one pose must be active", **where)
    for name in ("bsSolveCancelPoses", "bsSolveSymmetryPoses"):
        why = check_pairs(arrays[name])
        if why:
            raise error(
                f"{name}: {why}", hint="give each id to exactly two poses, -1 to none", **where
            )


def read_blendshape_data(path: Path) -> BlendshapeData:
    """``bs_*.npz`` (SDK ``BlendshapeSolverDataOwner::Init``)."""
    arrays = _load_npz(path)
    names = _strings(arrays, "poseNames", path)
    if not names:
        raise ModelPackageError("array 'poseNames' is empty", path=path, hint=_REDOWNLOAD)
    if names[0] != "neutral":
        raise ModelPackageError(
            f"poseNames[0] is {names[0]!r}, expected 'neutral'", path=path, hint=_REDOWNLOAD
        )
    if len(set(names)) != len(names):
        raise ModelPackageError("poseNames contains duplicates", path=path, hint=_REDOWNLOAD)
    neutral = _array(arrays, "neutral", path, np.float32)
    if neutral.size == 0 or neutral.size % 3:
        raise ModelPackageError(
            f"array 'neutral' has {neutral.size} values, expected a non-empty multiple of 3 (xyz)",
            path=path,
        )
    _finite(neutral, "neutral", path)
    deltas = np.empty((len(names) - 1, neutral.size), dtype=np.float32)
    for i, name in enumerate(names[1:]):
        delta = _array(arrays, name, path, np.float32)
        if delta.size != neutral.size:  # "each the same byte size as neutral"
            raise ModelPackageError(
                f"array {name!r} has {delta.size} values, expected {neutral.size} (as 'neutral')",
                path=path,
            )
        _finite(delta, name, path)
        deltas[i] = delta.reshape(-1)
    mask = None
    if "frontalMask" in arrays:
        mask = _array(arrays, "frontalMask", path, np.int32)
        mask = mask.reshape(-1)
        num_verts = neutral.size // 3
        if mask.size == 0 or mask.min() < 0 or mask.max() >= num_verts:
            raise ModelPackageError(
                f"array 'frontalMask' must hold vertex indices in [0, {num_verts - 1}]", path=path
            )
    return BlendshapeData(tuple(names[1:]), neutral.reshape(-1), deltas, mask)


def _blendshape_set(model_json: Path, data: Mapping[str, Any], part: str) -> BlendshapeSet:
    config_rel = _key(data, f"blendshapePaths.{part}.config", model_json, str)
    data_rel = _key(data, f"blendshapePaths.{part}.data", model_json, str)
    config_path = _resolve(model_json.parent, config_rel)
    data_path = _resolve(model_json.parent, data_rel)
    bs_data = read_blendshape_data(data_path)
    bs_config = read_blendshape_config(config_path, len(bs_data.pose_names))
    check_weight_scale(
        bs_config.multipliers, bs_config.offsets, bs_data.pose_names, "blendshape_params.",
        config_path,
    )  # fmt: skip
    return BlendshapeSet(bs_config, bs_data, config_path, data_path)


def onnx_beside(network_path: Path) -> Path:
    """``network.trt`` exists only after a TensorRT build; every other engine runs the
    ``network.onnx`` beside it (spec §1.1, A.2.3)."""
    if network_path.suffix == ".onnx":
        return network_path
    return network_path.with_name("network.onnx") if network_path.suffix == ".trt" else network_path


def existing_onnx(network_path: Path) -> Path:
    """:func:`onnx_beside`, checked to exist (the error says why a .trt name points at it)."""
    onnx_path = onnx_beside(network_path)
    if not onnx_path.is_file():
        raise ModelPackageError(
            f"missing (model.json names {network_path.name}; engines other than TensorRT run the "
            "network.onnx beside it)",
            path=onnx_path,
            hint=_REDOWNLOAD,
        )
    return onnx_path


def load_regression_package(model_json: str | Path) -> RegressionPackage:
    """Read and validate a whole regression model folder.

    Raises:
        ModelError: model.json unreadable or not a regression model.
        ModelPackageError: a file is missing or has the wrong keys, shapes, dtypes or values.
    """
    model_json = Path(model_json)
    data = _read_json(model_json)
    folder = model_json.parent
    paths = {
        key: _resolve(folder, _key(data, key, model_json, str))
        for key in (
            "networkInfoPath", "networkPath", "emotionDatabasePath", "modelConfigPath",
            "modelDataPath",
        )
    }  # fmt: skip
    if (
        "blendshapePaths" not in data
        or not isinstance(data["blendshapePaths"], dict)
        or not all(part in data["blendshapePaths"] for part in ("skin", "tongue"))
    ):
        raise ModelError(
            "has no blendshapePaths.skin/tongue entries; a2x needs the blendshape files to output "
            "ARKit weights",
            path=model_json,
            hint="use the full Hugging Face folder, which ships bs_skin/bs_tongue files",
        )
    info = read_network_info(paths["networkInfoPath"])
    trt_path = paths["networkPath"]
    onnx_path = existing_onnx(trt_path)
    # trt_info.json is not read here: only a TensorRT build needs it (backends/tensorrt.py), as
    # in the SDK, whose runtime never opens it.
    config = read_model_config(paths["modelConfigPath"])
    model_data = read_model_data(paths["modelDataPath"], info)
    emotion_db = read_emotion_database(paths["emotionDatabasePath"], info)
    # The SDK fetches the implicit row once at executor creation: a bad shot/frame fails loading.
    emotion_db.row(
        config["source_shot"], config["source_frame"], config_path=paths["modelConfigPath"]
    )
    skin = _blendshape_set(model_json, data, "skin")
    tongue = _blendshape_set(model_json, data, "tongue")
    for part, bs, verts in (
        ("skin", skin, info.num_verts_skin),
        ("tongue", tongue, info.num_verts_tongue),
    ):
        if bs.data.neutral.size != verts * 3:
            raise ModelPackageError(
                f"array 'neutral' has {bs.data.neutral.size // 3} vertices, but network_info.json "
                f"params.num_verts_{part} is {verts}",
                path=bs.data_path,
                hint=_REDOWNLOAD,
            )
    return RegressionPackage(
        model_json=model_json,
        network_info=info,
        network_info_path=paths["networkInfoPath"],
        onnx_path=onnx_path,
        trt_path=trt_path,
        config=config,
        config_path=paths["modelConfigPath"],
        model_data=model_data,
        model_data_path=paths["modelDataPath"],
        emotion_db=emotion_db,
        skin=skin,
        tongue=tongue,
    )
