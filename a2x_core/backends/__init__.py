"""Inference engines behind one interface (:class:`~.base.InferenceEngine`).

``create_engine("auto" | "onnxruntime" | ...)`` returns an engine for a network file, checked
against the tensors the model expects. Heavy dependencies load inside the backend modules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import EngineError
from .base import InferenceEngine, TensorSpec, check_bindings, regression_io

log = logging.getLogger("a2x_core")

__all__ = ["InferenceEngine", "TensorSpec", "check_bindings", "create_engine", "regression_io"]

#: Backends this version can create; TensorRT and PyTorch-CUDA plug in here later.
AVAILABLE = ("onnxruntime",)


def create_engine(
    backend: str,
    onnx_path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    threads: int | None = None,
) -> InferenceEngine:
    """An engine for ``onnx_path`` whose bindings match ``inputs``/``outputs``.

    Args:
        backend: "auto" (the best available: today ONNX Runtime on the CPU), or a name.
        onnx_path: the ``network.onnx`` of the model folder.
        threads: CPU threads for inference (None = ONNX Runtime's default, all cores).

    Raises:
        EngineError: unknown or unavailable backend, or a network that does not match.
    """
    if backend in ("auto", "onnxruntime"):
        from .onnxruntime import OnnxRuntimeEngine

        engine = OnnxRuntimeEngine(onnx_path, tuple(inputs), tuple(outputs), threads=threads)
        if backend == "auto":
            log.info("backend auto: using ONNX Runtime (CPU) for %s", onnx_path)
        return engine
    if backend in ("tensorrt", "torch"):
        raise EngineError(
            f"backend {backend!r} is not available in this version of a2x",
            hint=f"use --backend onnxruntime (available: {', '.join(AVAILABLE)})",
        )
    raise EngineError(
        f"unknown backend {backend!r}", hint=f"use one of: auto, {', '.join(AVAILABLE)}"
    )
