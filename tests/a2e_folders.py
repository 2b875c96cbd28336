"""Generate Audio2Emotion v2.2 model folders for tests (SDK spec §1.6, §2).

The folder has the published file names and keys (``model.json``, ``network_info.json``,
``model_config.json``, ``trt_info.json``, ``network.onnx``; ``networkPath`` names
``network.trt``, which only a TensorRT build creates). The classifier is tiny and known in
closed form: ``input_values`` [B, T] (T dynamic) -> ``output`` [B, 6] with::

    logits = mean(x) * weights[0] + mean(x * x) * weights[1] + bias
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.a2f_folders import FolderVariant, save_opset14, write_json

A2E_EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad")

#: The shipped post_processing_config (spec §1.6).
A2E_CONFIG: dict[str, Any] = {
    "output_emotion_length": 10, "emotion_contrast": 1.0, "max_emotions": 6,
    "live_blend_coef": 0.7, "enable_preferred_emotion": False, "preferred_emotion_strength": 0.5,
    "transition_smoothing": 0.5, "fixed_dt": 0.033, "emotion_strength": 0.6,
    "preferred_emotion": [0.0] * 10,
    "emotion_correspondence": {
        "angry": 1, "disgust": 3, "fear": 4, "happy": 6, "neutral": -1, "sad": 9,
    },
}  # fmt: skip


@dataclass
class GeneratedEmotionModel:
    model_json: Path
    weights: np.ndarray  # float32 [2, 6]
    bias: np.ndarray  # float32 [6]
    config: dict[str, Any]

    @property
    def folder(self) -> Path:
        return self.model_json.parent

    def network(self, windows: np.ndarray) -> np.ndarray:
        """The classifier in float64: ``[n, T] -> [n, 6]``."""
        x = windows.astype(np.float64)
        feats = np.stack([x.mean(axis=1), (x * x).mean(axis=1)], axis=1)
        return feats @ self.weights.astype(np.float64) + self.bias.astype(np.float64)


def write_classifier(path: Path, weights: np.ndarray, bias: np.ndarray) -> None:
    """The closed-form classifier as ONNX (opset 14, dynamic batch and samples)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["input_values"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["input_values", "input_values"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["energy"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["mean", "energy"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "weights"], ["mixed"]),
        helper.make_node("Add", ["mixed", "bias"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "a2e_classifier_test",
        [helper.make_tensor_value_info("input_values", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "weights"),
            numpy_helper.from_array(bias.astype(np.float32), "bias"),
        ],
    )
    save_opset14(graph, path)


def make_emotion_folder(
    root: Path,
    *,
    weights: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    config: dict[str, Any] | None = None,
    emotions: tuple[str, ...] = A2E_EMOTIONS,
    variant: FolderVariant | None = None,
) -> GeneratedEmotionModel:
    """Write an A2E folder under ``root``; ``config`` overrides post_processing_config keys;
    ``variant`` rewrites it into that SDK-accepted form (same content)."""
    root.mkdir(parents=True, exist_ok=True)
    if weights is None:
        weights = np.array(
            [[4.0, -3.0, 1.0, 6.0, 0.5, -2.0], [20.0, 5.0, -10.0, 2.0, 0.0, 8.0]], np.float32
        )
    if bias is None:
        bias = np.array([0.1, -0.2, 0.3, 0.0, 0.8, -0.1], np.float32)
    post = {**A2E_CONFIG, **(config or {})}
    files = {
        "model.json": {
            "networkInfoPath": "network_info.json", "networkPath": "network.trt",
            "modelConfigPath": "model_config.json",
        },
        "network_info.json": {"audio_params": {"samplerate": 16000}, "emotions": list(emotions)},
        "model_config.json": {"post_processing_config": post},
        "trt_info.json": {"trt_build_param": {"shapes": ["--minShapes=input_values:1x30000"]}},
    }  # fmt: skip
    for name, data in files.items():
        write_json(root / name, data)
    write_classifier(root / "network.onnx", np.asarray(weights), np.asarray(bias))
    if variant is not None:
        variant.apply(root)
    return GeneratedEmotionModel(root / "model.json", np.asarray(weights), np.asarray(bias), post)


def reference_post_processing(
    logits: np.ndarray, cfg: dict[str, Any], dt: float, preferred: np.ndarray | None = None
) -> np.ndarray:
    """Spec §5 steps 1-8 written out plainly in float64; ``preferred`` ([frames, 10]) replaces
    the config's preferred emotion frame by frame (the SDK's preferred-emotion accumulator)."""
    corr = [cfg["emotion_correspondence"][e] for e in A2E_EMOTIONS]
    out_prev = np.zeros(10)
    prev5 = np.zeros(10)
    prev7 = np.zeros(10)
    rows = []
    for frame, row in enumerate(logits.astype(np.float64)):
        first = frame == 0
        z = cfg["emotion_contrast"] * row
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        for i, j in enumerate(corr):
            if j == -1:
                p[i] = 0.0
        if cfg["max_emotions"] < 6:
            kept: list[int] = []
            for _ in range(cfg["max_emotions"]):  # largest first, lowest index on ties
                best = max((i for i in range(6) if i not in kept), key=lambda i: (p[i], -i))
                kept.append(best)
            p = np.array([p[i] if i in kept else 0.0 for i in range(6)])
        a = np.zeros(10) if first else out_prev.copy()
        for i, j in enumerate(corr):
            if j != -1:
                a[j] = p[i]
        c = cfg["live_blend_coef"]
        a = (1 - c) * a + c * (np.zeros(10) if first else prev5)
        prev5 = a.copy()
        if cfg["enable_preferred_emotion"]:
            s = cfg["preferred_emotion_strength"]
            target = cfg["preferred_emotion"] if preferred is None else preferred[frame]
            a = (1 - s) * a + s * np.asarray(target, dtype=np.float64)
        if not first:
            w = min(dt / max(cfg["transition_smoothing"], 1e-3), 1.0)
            a = w * a + (1 - w) * prev7
        prev7 = a.copy()
        a = a * cfg["emotion_strength"]
        out_prev = a.copy()
        rows.append(a)
    return np.array(rows)
