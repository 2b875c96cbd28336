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

from tests.a2f_folders import save_opset14, write_json

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
) -> GeneratedEmotionModel:
    """Write an A2E folder under ``root``; ``config`` overrides post_processing_config keys."""
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
    return GeneratedEmotionModel(root / "model.json", np.asarray(weights), np.asarray(bias), post)
