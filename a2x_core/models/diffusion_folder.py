"""Audio2Face-3D v3.0 diffusion model folders: loading and strict validation (spec §1.4, A.2).

One network serves several identities (Claire, James, Mark): ``model.json`` lists one
``model_config_<actor>.json``, one ``model_data_<actor>.npz`` and one set of blendshape files per
identity, in the order of ``network_info.json`` ``params.identities``. Every check names the file,
the key or array, and what was expected versus found, as the regression loader does, and accepts
the same SDK-tolerated variants (flat arrays, integral floats, no ``trt_info.json``, extra keys
and arrays), plus a ``blendshapePaths`` list longer than the identities (the SDK reads it by
index and never counts it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ModelPackageError
from .regression_folder import (
    BlendshapeSet,
    _array,
    _blendshape_set,
    _count,
    _finite,
    _key,
    _load_npz,
    _read_json,
    _resolve,
    existing_onnx,
    float32_values,
    validate_animator_config,
)

log = logging.getLogger("a2x_core")

_REDOWNLOAD = "download the model folder again (nvidia/Audio2Face-3D-v3.0)"

#: Largest ``audio_params.padding_left``, in windows (``buffer_len``). v3.0 pads one
#: window; every window of padding adds ``buffer_len / stride`` network runs to each clip, and
#: an unbounded value (1e20) turns one clip into an endless loop (reliability_fuzz M7).
MAX_PADDING_WINDOWS = 10

#: The 6 arrays of a diffusion ``model_data_<actor>.npz`` (spec §1.4): name -> shape in terms
#: of V/VT (skin/tongue vertices) and N (saccade rows).
DIFFUSION_DATA_ARRAYS: dict[str, tuple[str, ...]] = {
    "neutral_skin": ("V", "3"),
    "neutral_tongue": ("VT", "3"),
    "neutral_jaw": ("5", "3"),
    "lip_open_pose_delta": ("V", "3"),
    "eye_close_pose_delta": ("V", "3"),
    "saccade_rot_matrix": ("N", "2"),
}


@dataclass(frozen=True)
class DiffusionNetworkInfo:
    """``network_info.json`` of a diffusion network (spec §1.4)."""

    actor: str
    version: str
    emotions: tuple[str, ...]
    default_emotion: np.ndarray  # float32 [E]
    identities: tuple[str, ...]
    skin_size: int  # 3 * skin vertices
    tongue_size: int  # 3 * tongue vertices
    jaw_size: int
    eyes_size: int
    num_diffusion_steps: int
    num_gru_layers: int
    gru_latent_dim: int
    left_truncate: int
    right_truncate: int
    center_frames: int
    buffer_len: int
    padding_left: int
    padding_right: int  # parsed, unused by the SDK's executor (spec §1.4)
    samplerate: int

    @property
    def frames(self) -> int:
        """Frames the network generates per window (60 = 15 + 30 + 15)."""
        return self.left_truncate + self.center_frames + self.right_truncate

    @property
    def output_size(self) -> int:
        """Per-frame width of ``prediction``: skin + tongue + jaw + eyes (88831 for v3.0)."""
        return self.skin_size + self.tongue_size + self.jaw_size + self.eyes_size

    @property
    def fps(self) -> Fraction:
        """The network's own frame rate: ``frames`` per ``buffer_len`` samples (60 for v3.0)."""
        return Fraction(self.frames * self.samplerate, self.buffer_len)

    @property
    def stride(self) -> int:
        """Samples between windows: the centre frames' span (8000 = 0.5 s)."""
        return self.center_frames * self.buffer_len // self.frames

    @property
    def leading_frames(self) -> int:
        """Generated centre frames before frame 0 (45 for v3.0): their targets are negative.

        Window ``w``'s centre frame ``k`` is generated frame ``g = w * center + k`` with target
        ``floor(g * buffer_len / frames) - padding_left + left * buffer_len / frames``
        (spec §3), so frame ``f = g - leading_frames`` lands exactly on the network-fps grid.
        """
        return (self.padding_left * self.frames) // self.buffer_len - self.left_truncate


@dataclass(frozen=True)
class IdentityData:
    """``model_data_<actor>.npz``: neutrals, corrective deltas, jaw keypoints, saccades."""

    neutral_skin: np.ndarray  # [V, 3]
    neutral_tongue: np.ndarray  # [VT, 3]
    neutral_jaw: np.ndarray  # [5, 3]
    lip_open_pose_delta: np.ndarray  # [V, 3]
    eye_close_pose_delta: np.ndarray  # [V, 3]
    saccade_rot_matrix: np.ndarray  # [N, 2], 30 fps


@dataclass(frozen=True)
class Identity:
    """One identity's files: post-processing config, data and blendshape sets."""

    name: str
    index: int  # position in params.identities = the one-hot slot
    config: dict[str, Any]  # validated, without source_shot/source_frame
    config_path: Path
    data: IdentityData
    data_path: Path
    skin: BlendshapeSet
    tongue: BlendshapeSet


@dataclass(frozen=True)
class DiffusionPackage:
    """A validated diffusion model folder."""

    model_json: Path
    network_info: DiffusionNetworkInfo
    network_info_path: Path
    onnx_path: Path
    trt_path: Path
    identities: tuple[Identity, ...]

    @property
    def folder(self) -> Path:
        return self.model_json.parent

    def identity(self, name: str | None) -> Identity:
        """The identity called ``name`` (case-insensitive); None = the first, as listed.

        Raises:
            ModelError: no such identity (the error lists them).
        """
        if name is None:
            return self.identities[0]
        for identity in self.identities:
            if identity.name.casefold() == str(name).strip().casefold():
                return identity
        names = ", ".join(i.name for i in self.identities)
        raise ModelError(
            f"has no identity {name!r}", path=self.model_json, hint=f"use one of: {names}"
        )


def _names(data: Mapping[str, Any], dotted: str, path: Path) -> tuple[str, ...]:
    values = _key(data, dotted, path, list)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ModelPackageError(f"{dotted} must be a non-empty list of names", path=path)
    if len(set(values)) != len(values):
        raise ModelPackageError(f"{dotted} contains duplicates", path=path, hint=_REDOWNLOAD)
    return tuple(values)


def read_diffusion_network_info(path: Path) -> DiffusionNetworkInfo:
    """Parse and validate a diffusion ``network_info.json`` (SDK ``parse_helper.cpp``)."""
    data = _read_json(path)
    kind = _key(data, "id.type", path, str)
    output = _key(data, "id.output", path, str)
    if kind != "diffusion" or output != "geometry":
        raise ModelPackageError(
            f"id.type/id.output are {kind!r}/{output!r}, expected 'diffusion'/'geometry'",
            path=path,
            hint="this loader runs Audio2Face-3D v3.0 diffusion models",
        )
    emotions = _names(data, "params.emotions", path)
    default = _key(data, "params.default_emotion", path, list)
    if len(default) != len(emotions) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in default
    ):
        raise ModelPackageError(
            f"params.default_emotion must hold {len(emotions)} numbers (one per emotion), "
            f"found {default!r}",
            path=path,
            hint=_REDOWNLOAD,
        )
    default_arr = float32_values(default, "params.default_emotion", path)
    _finite(default_arr, "params.default_emotion", path)
    info = DiffusionNetworkInfo(
        actor=str(data.get("id", {}).get("actor", "multi")),
        version=str(data.get("id", {}).get("version", "")),
        emotions=emotions,
        default_emotion=default_arr,
        identities=_names(data, "params.identities", path),
        skin_size=_count(data, "params.skin_size", path),
        tongue_size=_count(data, "params.tongue_size", path),
        jaw_size=_count(data, "params.jaw_size", path),
        eyes_size=_count(data, "params.eyes_size", path),
        num_diffusion_steps=_count(data, "params.num_diffusion_steps", path),
        num_gru_layers=_count(data, "params.num_gru_layers", path),
        gru_latent_dim=_count(data, "params.gru_latent_dim", path),
        left_truncate=_key(data, "params.num_frames_left_truncate", path, int),
        right_truncate=_key(data, "params.num_frames_right_truncate", path, int),
        center_frames=_count(data, "params.num_frames_center", path),
        buffer_len=_count(data, "audio_params.buffer_len", path),
        padding_left=_key(data, "audio_params.padding_left", path, int),
        padding_right=_key(data, "audio_params.padding_right", path, int),
        samplerate=_count(data, "audio_params.samplerate", path),
    )
    _check_layout(info, path)
    return info


def _check_layout(info: DiffusionNetworkInfo, path: Path) -> None:
    """The sizes the post-processing and the windowing rely on (spec §3, §4)."""
    problems = []
    if info.samplerate != 16000:
        problems.append(f"audio_params.samplerate is {info.samplerate}, expected 16000")
    if info.skin_size % 3 or info.tongue_size % 3:
        problems.append(
            f"params.skin_size {info.skin_size} and tongue_size {info.tongue_size} must be "
            "multiples of 3 (xyz per vertex)"
        )
    if info.jaw_size != 15 or info.eyes_size != 4:
        problems.append(f"params.jaw_size/eyes_size are {info.jaw_size}/{info.eyes_size}, expected 15/4")
    if min(info.left_truncate, info.right_truncate, info.padding_left, info.padding_right) < 0:
        problems.append("truncation and padding counts must be >= 0")
    most = MAX_PADDING_WINDOWS * info.buffer_len  # padding_right is never used: no bound
    if info.padding_left > most:
        raise ModelPackageError(
            f"audio_params.padding_left is {info.padding_left}, more than {MAX_PADDING_WINDOWS} "
            f"windows ({most} samples): each clip would run that many extra windows",
            path=path,
            hint=f"use at most {most} (v3.0 pads one window, {info.buffer_len})",
        )
    # Windows must advance by whole samples and the kept frames must land on the fps grid.
    frames, buffer_len = info.frames, info.buffer_len
    if (info.center_frames * buffer_len) % frames or (info.left_truncate * buffer_len) % frames:
        problems.append(
            f"{info.center_frames} centre / {info.left_truncate} leading frames of {frames} do "
            f"not span whole samples of a {buffer_len}-sample window"
        )
    elif (info.padding_left * frames) % buffer_len or info.leading_frames < 0:
        problems.append(
            f"audio_params.padding_left {info.padding_left} is not a whole number of frames "
            f"at {frames} frames per {buffer_len} samples"
        )
    if problems:
        raise ModelPackageError("; ".join(problems), path=path, hint=_REDOWNLOAD)


def read_identity_data(path: Path, info: DiffusionNetworkInfo) -> IdentityData:
    """``model_data_<actor>.npz``: float32 arrays in the canonical shapes (spec §1.4) or any
    layout of the same element count (the SDK reads them flat, ``parse_helper.cpp:534-562``)."""
    arrays = _load_npz(path)
    sizes = {"V": info.skin_size // 3, "VT": info.tongue_size // 3, "5": 5, "3": 3, "2": 2, "N": None}
    loaded = {}
    for name, dims in DIFFUSION_DATA_ARRAYS.items():
        shape = tuple(sizes[d] for d in dims)
        array = _array(arrays, name, path, np.float32, shape, any_layout=True)
        _finite(array, name, path)
        loaded[name] = array
    if loaded["saccade_rot_matrix"].shape[0] < 1:
        raise ModelPackageError("array 'saccade_rot_matrix' has no rows", path=path)
    extra = sorted(set(arrays) - set(DIFFUSION_DATA_ARRAYS))
    if extra:
        log.info("%s: ignoring arrays the SDK does not read: %s", path, ", ".join(extra))
    return IdentityData(**loaded)


def _path_list(
    data: Mapping[str, Any], key: str, model_json: Path, count: int, *, extra_ok: bool = False
) -> list[Any]:
    """One entry per identity. ``extra_ok``: entries beyond the identities are ignored (the
    SDK's blendshape owner reads the list by index and never counts it)."""
    values = _key(data, key, model_json, list)
    if len(values) < count or (len(values) > count and not extra_ok):
        raise ModelPackageError(
            f"key {key!r} lists {len(values)} entries, but network_info.json names {count} "
            "identities (one entry each, in the same order)",
            path=model_json,
            hint=_REDOWNLOAD,
        )
    if len(values) > count:
        log.info(
            "%s: %s lists %d entries for %d identities; ignoring the last %d",
            model_json, key, len(values), count, len(values) - count,
        )  # fmt: skip
    return values[:count]


def load_diffusion_package(model_json: str | Path) -> DiffusionPackage:
    """Read and validate a whole diffusion model folder.

    Raises:
        ModelError: model.json lacks the blendshape files a2x needs for ARKit output.
        ModelPackageError: a file is missing or has the wrong keys, shapes, dtypes or values.
    """
    model_json = Path(model_json)
    data = _read_json(model_json)
    folder = model_json.parent
    info_path = _resolve(folder, _key(data, "networkInfoPath", model_json, str))
    trt_path = _resolve(folder, _key(data, "networkPath", model_json, str))
    info = read_diffusion_network_info(info_path)
    count = len(info.identities)
    configs = _path_list(data, "modelConfigPaths", model_json, count)
    datas = _path_list(data, "modelDataPaths", model_json, count)
    if "blendshapePaths" not in data:
        raise ModelError(
            "has no blendshapePaths; a2x needs each identity's bs_skin/bs_tongue files to output "
            "ARKit weights",
            path=model_json,
            hint="use the full Hugging Face folder, which ships them",
        )
    shapes = _path_list(data, "blendshapePaths", model_json, count, extra_ok=True)
    onnx_path = existing_onnx(trt_path)
    # trt_info.json is read only by a TensorRT build (backends/tensorrt.py), as in the SDK.
    identities = []
    for index, name in enumerate(info.identities):
        for key, value in (("modelConfigPaths", configs[index]), ("modelDataPaths", datas[index])):
            if not isinstance(value, str):
                raise ModelPackageError(
                    f"{key}[{index}] must be a path string, found {value!r}", path=model_json
                )
        entry = shapes[index]
        if not isinstance(entry, dict) or not all(part in entry for part in ("skin", "tongue")):
            raise ModelError(
                f"blendshapePaths[{index}] ({name}) needs skin and tongue entries",
                path=model_json,
                hint="use the full Hugging Face folder, which ships bs_skin/bs_tongue files",
            )
        config_path = _resolve(folder, configs[index])
        config = validate_animator_config(
            _key(_read_json(config_path), "config", config_path, dict),
            config_path,
            implicit_emotion=False,
        )
        data_path = _resolve(folder, datas[index])
        identity_data = read_identity_data(data_path, info)
        sets = {part: _blendshape_set(model_json, {"blendshapePaths": entry}, part)
                for part in ("skin", "tongue")}  # fmt: skip
        for part, size in (("skin", info.skin_size), ("tongue", info.tongue_size)):
            if sets[part].data.neutral.size != size:
                raise ModelPackageError(
                    f"array 'neutral' has {sets[part].data.neutral.size // 3} vertices, but "
                    f"network_info.json params.{part}_size is {size} ({size // 3} vertices)",
                    path=sets[part].data_path,
                    hint=_REDOWNLOAD,
                )
        identities.append(
            Identity(name, index, config, config_path, identity_data, data_path,
                     sets["skin"], sets["tongue"])
        )  # fmt: skip
    return DiffusionPackage(
        model_json=model_json,
        network_info=info,
        network_info_path=info_path,
        onnx_path=onnx_path,
        trt_path=trt_path,
        identities=tuple(identities),
    )
