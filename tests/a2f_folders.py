"""Generate complete Audio2Face-3D regression model folders for tests (SDK spec §1.3, §1.5, §2).

Every file of a published folder is written with the exact keys, array names and dtypes
(``'S'`` string arrays, int32 index arrays, float32 data), small meshes, and a small ONNX network
built with ``onnx.helper`` with the real tensor names: ``input`` [B, 1, 8320],
``emotion`` [B, 1, 26] -> ``result`` [B, 1, S + T + 15 + 4], float32, opset 14, dynamic batch.

The network is affine so that tests know its output in closed form::

    result = input @ audio_weights + emotion @ emotion_weights + bias

:class:`FolderVariant` rewrites a generated folder (of any kind) into one of the forms NVIDIA's
SDK also accepts (``../shared/docs/sdk_audit.md`` §1): arrays flat or reshaped, JSON integers as
floats, no ``trt_info.json``, extra keys and arrays, a longer diffusion ``blendshapePaths``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from a2x_core.models.emotion_input import A2F_EMOTIONS
from a2x_core.names import ARKIT_52, TONGUE_16

BUFFER_LEN = 8320
BUFFER_OFS = 4160
IMPLICIT = 16

#: Mark's model_config.json values (SDK spec §1.3), with a shot of the generated emotion DB.
MARK_CONFIG: dict[str, Any] = {
    "input_strength": 1.3, "lower_face_smoothing": 0.0023, "upper_face_smoothing": 0.001,
    "lower_face_strength": 1.4, "upper_face_strength": 1.0, "face_mask_level": 0.6,
    "face_mask_softness": 0.0085, "skin_strength": 1.1, "blink_strength": 1.0,
    "eyelid_open_offset": 0.06, "lip_open_offset": -0.03, "tongue_strength": 1.5,
    "tongue_height_offset": 0.2, "tongue_depth_offset": 0.13, "lower_teeth_strength": 1.3,
    "lower_teeth_height_offset": -0.1, "lower_teeth_depth_offset": 0.0, "eyeballs_strength": 1.0,
    "saccade_strength": 0.9, "right_eye_rot_x_offset": 0.0, "right_eye_rot_y_offset": -2.0,
    "left_eye_rot_x_offset": 0.0, "left_eye_rot_y_offset": 2.0, "eye_saccade_seed": 0,
    "source_shot": "cp1_neutral", "source_frame": 2,
}  # fmt: skip

#: Emotion database shots: name -> (start, size).
SHOTS = {"cp1_neutral": (0, 5), "cp2_joy": (5, 3), "muted_cp1_neutral_220": (8, 1)}


def _skin_solver_config(num_poses: int) -> dict[str, Any]:
    """Like Mark's skin config (spec §1.5): a few inactive poses, symmetry pairs."""
    active = [1] * num_poses
    for i in (1, 2, 3, 4, 51):
        if i < num_poses:
            active[i] = 0
    symmetry = [-1] * num_poses
    for pair_id, (i, j) in enumerate(((0, 7), (5, 12), (23, 24), (25, 26))):
        if j < num_poses:
            symmetry[i] = symmetry[j] = pair_id
    return {
        "strengthL1regularization": 0.5, "strengthL2regularization": 0.5,
        "strengthTemporalSmoothing": 0.3, "strengthSymmetry": 100.0,
        "templateBBSize": None, "numPoses": num_poses, "bsSolveActivePoses": active,
        "bsSolveCancelPoses": [-1] * num_poses, "bsSolveSymmetryPoses": symmetry,
        "bsWeightMultipliers": [1.0] * num_poses, "bsWeightOffsets": [0.0] * num_poses,
    }  # fmt: skip


def _tongue_solver_config(num_poses: int) -> dict[str, Any]:
    """Like Mark's tongue config (spec §1.5)."""
    multipliers = [1.0] * num_poses
    for i, m in ((0, 2.0), (4, 3.0), (13, 2.0)):
        if i < num_poses:
            multipliers[i] = m
    return {
        "strengthL1regularization": 1.0, "strengthL2regularization": 3.5,
        "strengthTemporalSmoothing": 5.0, "strengthSymmetry": 100.0,
        "templateBBSize": None, "numPoses": num_poses,
        "bsSolveActivePoses": [1] * num_poses, "bsSolveCancelPoses": [-1] * num_poses,
        "bsSolveSymmetryPoses": [-1] * num_poses, "bsWeightMultipliers": multipliers,
        "bsWeightOffsets": [0.0] * num_poses,
    }  # fmt: skip


#: Key and array name the ``extras`` variant adds everywhere (no loader reads it).
EXTRA_NAME = "unused_by_sdk"


@dataclass(frozen=True)
class FolderVariant:
    """A content-identical rewrite of a generated folder that the SDK's parsers accept.

    Attributes:
        array_layout: ``"canonical"``; ``"flat"``: every ``model_data*.npz`` array 1-D;
            ``"rows"``: each reshaped to ``[first axis, rest]`` (PCA bases ``[S, 3V]``).
        float_ints: every JSON integer written as a float (``2`` -> ``2.0``), trt_info.json
            excepted (it is the TensorRT builder's, not the SDK parser's).
        trt_info: keep ``trt_info.json``.
        extras: an unknown key in every JSON object (an A2E ``emotion_correspondence`` thus
            names an extra emotion) and an unknown array in every ``.npz``.
        extra_blendshape_paths: diffusion only: repeat the last ``blendshapePaths`` entry so
            that the list is this much longer than the identities.
    """

    array_layout: str = "canonical"
    float_ints: bool = False
    trt_info: bool = True
    extras: bool = False
    extra_blendshape_paths: int = 0

    def apply(self, folder: Path) -> None:
        """Rewrite ``folder`` in place."""
        if self.array_layout not in ("canonical", "flat", "rows"):
            raise ValueError(f"unknown array_layout {self.array_layout!r}")
        if self.extra_blendshape_paths:
            model_json = folder / "model.json"
            data = json.loads(model_json.read_text(encoding="utf-8"))
            data["blendshapePaths"] += [data["blendshapePaths"][-1]] * self.extra_blendshape_paths
            write_json(model_json, data)
        for path in sorted(folder.glob("*.json")):
            if path.name == "trt_info.json":
                if not self.trt_info:
                    path.unlink()
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            if self.float_ints:
                data = _floats_for_ints(data)
            if self.extras:
                data = _with_extra_keys(data)
            write_json(path, data)
        for path in sorted(folder.glob("*.npz")):
            with np.load(path) as npz:
                arrays = {name: npz[name] for name in npz.files}
            if path.name.startswith("model_data") and self.array_layout != "canonical":
                for name, array in arrays.items():
                    flat = self.array_layout == "flat" or array.ndim < 2
                    arrays[name] = array.reshape(-1) if flat else array.reshape(len(array), -1)
            if self.extras:
                arrays[EXTRA_NAME] = np.arange(4, dtype=np.float32)
            np.savez(path, **arrays)


def _floats_for_ints(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _floats_for_ints(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_floats_for_ints(value) for value in data]
    if isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    return data


def _with_extra_keys(data: Any) -> Any:
    if isinstance(data, dict):
        out = {key: _with_extra_keys(value) for key, value in data.items()}
        out[EXTRA_NAME] = 1
        return out
    if isinstance(data, list):
        return [_with_extra_keys(value) for value in data]
    return data


@dataclass
class GeneratedModel:
    """A generated folder and every array in it (for independent reference computations)."""

    model_json: Path
    model_data: dict[str, np.ndarray]
    emo_db: np.ndarray
    skin_bs: dict[str, np.ndarray]
    tongue_bs: dict[str, np.ndarray]
    skin_config: dict[str, Any]
    tongue_config: dict[str, Any]
    model_config: dict[str, Any]
    audio_weights: np.ndarray  # [8320, R]
    emotion_weights: np.ndarray  # [26, R]
    bias: np.ndarray  # [R]
    num_shapes_skin: int
    num_shapes_tongue: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.model_json.parent

    def network(self, audio: np.ndarray, emotion: np.ndarray) -> np.ndarray:
        """The network's output in float64: ``[n, 8320], [n, 26] -> [n, R]``."""
        return (
            audio.astype(np.float64) @ self.audio_weights.astype(np.float64)
            + emotion.astype(np.float64) @ self.emotion_weights.astype(np.float64)
            + self.bias.astype(np.float64)
        )


def _mesh(rng: np.random.Generator, num_verts: int, height: float) -> np.ndarray:
    verts = rng.uniform(-1.0, 1.0, size=(num_verts, 3)).astype(np.float32)
    verts[:, 0] *= height * 0.4
    verts[:, 1] = np.linspace(0.0, height, num_verts, dtype=np.float32)  # face mask splits on Y
    verts[:, 2] *= height * 0.3
    return verts


def _sparse_deltas(
    rng: np.random.Generator, num_poses: int, num_verts: int, scale: float
) -> np.ndarray:
    """Pose deltas that each move a random third of the vertices (well conditioned)."""
    deltas = rng.normal(0.0, scale, size=(num_poses, num_verts, 3)).astype(np.float32)
    keep = rng.random((num_poses, num_verts, 1)) < 0.35
    return (deltas * keep).astype(np.float32)


def write_onnx(path: Path, audio_weights: np.ndarray, emotion_weights: np.ndarray, bias: np.ndarray,
               *, input_names: tuple[str, str] = ("input", "emotion"), output_name: str = "result",
               emotion_size: int | None = None) -> None:  # fmt: skip
    """The affine test network as an ONNX file (opset 14, dynamic batch ``batch_size``)."""
    from onnx import TensorProto, helper, numpy_helper

    width = audio_weights.shape[1]
    emo = emotion_size or emotion_weights.shape[0]
    audio_name, emotion_name = input_names
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [audio_name, "audio_weights"], ["from_audio"]),
            helper.make_node("MatMul", [emotion_name, "emotion_weights"], ["from_emotion"]),
            helper.make_node("Add", ["from_audio", "from_emotion"], ["summed"]),
            helper.make_node("Add", ["summed", "bias"], [output_name]),
        ],
        "a2f_regression_test",
        [
            helper.make_tensor_value_info(
                audio_name, TensorProto.FLOAT, ["batch_size", 1, BUFFER_LEN]
            ),
            helper.make_tensor_value_info(emotion_name, TensorProto.FLOAT, ["batch_size", 1, emo]),
        ],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch_size", 1, width])],
        initializer=[
            numpy_helper.from_array(audio_weights.astype(np.float32), "audio_weights"),
            numpy_helper.from_array(emotion_weights.astype(np.float32), "emotion_weights"),
            numpy_helper.from_array(bias.astype(np.float32), "bias"),
        ],
    )
    save_opset14(graph, path)


def save_opset14(graph: Any, path: Path) -> None:
    """Save an ONNX graph as the published networks are: opset 14, IR 8, checked."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def write_blendshape_files(
    root: Path,
    rng: np.random.Generator,
    skin_neutral: np.ndarray,
    tongue_neutral: np.ndarray,
    skin_deltas: np.ndarray,
    tongue_deltas: np.ndarray,
    *,
    skin_pose_names: tuple[str, ...] = ARKIT_52,
    tongue_pose_names: tuple[str, ...] = TONGUE_16,
    frontal_mask: bool = True,
    frontal_fraction: float = 0.7,
    skin_config: dict[str, Any] | None = None,
    tongue_config: dict[str, Any] | None = None,
    suffix: str = "",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """``bs_skin{suffix}.npz``, ``bs_tongue{suffix}.npz`` and their ``bs_*_config{suffix}.json``
    (spec §1.5): 'S' pose names with neutral first, one delta per pose, int32 frontal mask."""
    skin_bs = {
        "poseNames": np.array(("neutral", *skin_pose_names), dtype="S"),
        "neutral": skin_neutral,
    }
    skin_bs.update({name: skin_deltas[i] for i, name in enumerate(skin_pose_names)})
    num_verts_skin = len(skin_neutral)
    if frontal_mask:
        skin_bs["frontalMask"] = np.sort(
            rng.choice(num_verts_skin, size=int(num_verts_skin * frontal_fraction), replace=False)
        ).astype(np.int32)
    skin_bs["rig_version"] = np.array("test-1.0")
    np.savez(root / f"bs_skin{suffix}.npz", **skin_bs)
    tongue_bs = {
        "poseNames": np.array(("neutral", *tongue_pose_names), dtype="S"),
        "neutral": tongue_neutral,
    }
    tongue_bs.update({name: tongue_deltas[i] for i, name in enumerate(tongue_pose_names)})
    np.savez(root / f"bs_tongue{suffix}.npz", **tongue_bs)

    def bb(mesh: np.ndarray) -> float:
        return float(np.linalg.norm(mesh.max(axis=0) - mesh.min(axis=0))) * 0.97

    skin_cfg = {**_skin_solver_config(len(skin_pose_names)), "templateBBSize": bb(skin_neutral)}
    skin_cfg.update(skin_config or {})
    tongue_cfg = {
        **_tongue_solver_config(len(tongue_pose_names)),
        "templateBBSize": bb(tongue_neutral),
    }
    tongue_cfg.update(tongue_config or {})
    write_json(root / f"bs_skin_config{suffix}.json", {"blendshape_params": skin_cfg})
    write_json(root / f"bs_tongue_config{suffix}.json", {"blendshape_params": tongue_cfg})
    return skin_bs, tongue_bs, skin_cfg, tongue_cfg


def make_regression_folder(
    root: Path,
    *,
    seed: int = 0,
    num_verts_skin: int = 90,
    num_verts_tongue: int = 30,
    num_shapes_skin: int = 6,
    num_shapes_tongue: int = 4,
    skin_pose_names: tuple[str, ...] = ARKIT_52,
    tongue_pose_names: tuple[str, ...] = TONGUE_16,
    frontal_mask: bool = True,
    frontal_fraction: float = 0.7,
    model_config: dict[str, Any] | None = None,
    skin_config: dict[str, Any] | None = None,
    tongue_config: dict[str, Any] | None = None,
    skin_basis: np.ndarray | None = None,
    tongue_basis: np.ndarray | None = None,
    audio_weights: np.ndarray | None = None,
    emotion_weights: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    zero_correctives: bool = False,
    variant: FolderVariant | None = None,
) -> GeneratedModel:
    """Write a complete regression model folder under ``root``; returns its description.

    Args:
        skin_basis / tongue_basis: PCA bases ``[S, V, 3]`` / ``[T, VT, 3]`` (default random).
        audio_weights / emotion_weights / bias: the affine network (default small random).
        model_config, skin_config, tongue_config: key overrides of the generated configs.
        zero_correctives: lip-open/eye-close deltas of zero (for closed-form runs).
        variant: rewrite the folder into this SDK-accepted form (same content).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    s_count, t_count = num_shapes_skin, num_shapes_tongue
    width = s_count + t_count + 15 + 4
    emotion_size = IMPLICIT + len(A2F_EMOTIONS)

    skin_neutral = _mesh(rng, num_verts_skin, 20.0)
    tongue_neutral = _mesh(rng, num_verts_tongue, 4.0)
    skin_deltas = _sparse_deltas(rng, len(skin_pose_names), num_verts_skin, 0.5)
    tongue_deltas = _sparse_deltas(rng, len(tongue_pose_names), num_verts_tongue, 0.2)
    if skin_basis is None:
        skin_basis = rng.normal(0.0, 0.3, size=(s_count, num_verts_skin, 3)).astype(np.float32)
    if tongue_basis is None:
        tongue_basis = rng.normal(0.0, 0.1, size=(t_count, num_verts_tongue, 3)).astype(np.float32)
    correctives = (
        np.zeros
        if zero_correctives
        else (lambda shape, dtype: rng.normal(0.0, 0.2, size=shape).astype(dtype))
    )
    model_data = {
        "shapes_matrix_skin": np.asarray(skin_basis, np.float32),
        "shapes_mean_skin": skin_neutral,
        "lip_open_pose_delta": correctives((num_verts_skin, 3), np.float32),
        "eye_close_pose_delta": correctives((num_verts_skin, 3), np.float32),
        "shapes_matrix_tongue": np.asarray(tongue_basis, np.float32),
        "shapes_mean_tongue": tongue_neutral,
        "neutral_jaw": (rng.normal(0.0, 3.0, size=(5, 3)) + [0.0, 2.0, 4.0]).astype(np.float32),
        "saccade_rot_matrix": rng.normal(0.0, 1.5, size=(5000, 2)).astype(np.float32),
    }
    np.savez(root / "model_data.npz", **model_data)

    emo_db = rng.normal(0.0, 0.5, size=(9, IMPLICIT)).astype(np.float32)
    np.savez(
        root / "implicit_emo_db.npz",
        emo_db=emo_db,
        emo_spec_names=np.array(list(SHOTS), dtype="S"),
        emo_spec_start=np.array([v[0] for v in SHOTS.values()], dtype=np.int32),
        emo_spec_size=np.array([v[1] for v in SHOTS.values()], dtype=np.int32),
    )

    skin_bs, tongue_bs, skin_cfg, tongue_cfg = write_blendshape_files(
        root, rng, skin_neutral, tongue_neutral, skin_deltas, tongue_deltas,
        skin_pose_names=skin_pose_names, tongue_pose_names=tongue_pose_names,
        frontal_mask=frontal_mask, frontal_fraction=frontal_fraction,
        skin_config=skin_config, tongue_config=tongue_config,
    )  # fmt: skip

    config = {**MARK_CONFIG, **(model_config or {})}
    write_json(root / "model_config.json", {"config": config})
    write_json(
        root / "network_info.json",
        {
            "id": {
                "type": "regression",
                "actor": "testactor",
                "version": "2.3",
                "output": "geometry",
            },
            "params": {
                "implicit_emotion_len": IMPLICIT,
                "explicit_emotions": list(A2F_EMOTIONS),
                "default_emotion": [0.0] * len(A2F_EMOTIONS),
                "identities": ["testactor"],
                "num_shapes_skin": s_count,
                "num_verts_skin": num_verts_skin,
                "num_shapes_tongue": t_count,
                "num_verts_tongue": num_verts_tongue,
                "result_jaw_size": 15,
                "result_eyes_size": 4,
            },
            "audio_params": {
                "buffer_len": BUFFER_LEN,
                "buffer_ofs": BUFFER_OFS,
                "samplerate": 16000,
            },
        },
    )
    write_json(
        root / "trt_info.json",
        {
            "trt_build_param": {
                "cuda_in_graphics": ["--memPoolSize=tacticSharedMem:0.046875"],
                "batch": [
                    f"--minShapes=input:1x1x{BUFFER_LEN},emotion:1x1x{emotion_size}",
                    f"--maxShapes=input:{{MAX_BATCH_SIZE}}x1x{BUFFER_LEN},emotion:{{MAX_BATCH_SIZE}}x1x{emotion_size}",
                    f"--optShapes=input:{{OPT_BATCH_SIZE}}x1x{BUFFER_LEN},emotion:{{OPT_BATCH_SIZE}}x1x{emotion_size}",
                ],
            },
            "defaults": {"MAX_BATCH_SIZE": 8, "OPT_BATCH_SIZE": 3},
        },
    )
    write_json(
        root / "model.json",
        {
            "networkInfoPath": "network_info.json",
            "networkPath": "network.trt",
            "emotionDatabasePath": "implicit_emo_db.npz",
            "modelConfigPath": "model_config.json",
            "modelDataPath": "model_data.npz",
            "blendshapePaths": {
                "skin": {"config": "bs_skin_config.json", "data": "bs_skin.npz"},
                "tongue": {"config": "bs_tongue_config.json", "data": "bs_tongue.npz"},
            },
        },
    )
    if audio_weights is None:
        audio_weights = (rng.normal(0.0, 1.0, size=(BUFFER_LEN, width)) * 0.02).astype(np.float32)
    if emotion_weights is None:
        emotion_weights = rng.normal(0.0, 0.3, size=(emotion_size, width)).astype(np.float32)
    if bias is None:
        bias = rng.normal(0.0, 0.2, size=width).astype(np.float32)
    write_onnx(root / "network.onnx", audio_weights, emotion_weights, bias)
    if variant is not None:
        variant.apply(root)
    return GeneratedModel(
        model_json=root / "model.json",
        model_data=model_data,
        emo_db=emo_db,
        skin_bs=skin_bs,
        tongue_bs=tongue_bs,
        skin_config=skin_cfg,
        tongue_config=tongue_cfg,
        model_config=config,
        audio_weights=np.asarray(audio_weights, np.float32),
        emotion_weights=np.asarray(emotion_weights, np.float32),
        bias=np.asarray(bias, np.float32),
        num_shapes_skin=s_count,
        num_shapes_tongue=t_count,
    )
