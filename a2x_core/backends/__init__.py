"""Inference engines behind one interface (:class:`~.base.InferenceEngine`).

``create_engine("auto" | "onnxruntime" | ...)`` returns an engine for a network file, checked
against the tensors the model expects. Heavy dependencies load inside the backend modules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EngineError
from .base import (
    EngineCapabilities,
    InferenceEngine,
    TensorSpec,
    check_bindings,
    diffusion_io,
    regression_io,
)

log = logging.getLogger("a2x_core")

__all__ = [
    "EngineCapabilities", "EngineSettings",
    "InferenceEngine", "TensorSpec", "check_bindings", "create_engine", "diffusion_io", "regression_io",
]

#: Backends this version can create (each loads its heavy dependency only when chosen).
AVAILABLE = ("onnxruntime", "tensorrt", "torch")


@dataclass(frozen=True)
class EngineSettings:
    """Which engine runs a model's networks, where and how (``--engine``, ``--threads``,
    ``--device``, ``--precision``); one object for every model kind."""

    backend: str = "auto"
    threads: int | None = None
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        from ..options import check_engine_settings  # options imports nothing of backends

        threads = check_engine_settings(self.backend, self.threads, self.device, self.precision)
        object.__setattr__(self, "threads", threads)

    @classmethod
    def of(cls, options: Any) -> EngineSettings:
        """The engine fields of an ``InferenceOptions``."""
        return cls(options.backend, options.threads, options.device, options.precision)

    def create(
        self, onnx_path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
    ) -> InferenceEngine:
        """:func:`create_engine` with these settings."""
        return create_engine(self.backend, onnx_path, inputs, outputs, threads=self.threads,
                             device=self.device, precision=self.precision)  # fmt: skip


def create_engine(
    backend: str,
    onnx_path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    threads: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
) -> InferenceEngine:
    """An engine for ``onnx_path`` whose bindings match ``inputs``/``outputs``.

    Args:
        backend: "auto" (the best available: TensorRT when it imports and sees a GPU, then
            PyTorch on CUDA, else ONNX Runtime on the CPU), "onnxruntime", "tensorrt" or "torch".
        onnx_path: the ``network.onnx`` of the model folder.
        threads: CPU threads for inference (None = the backend's default, all cores).
        device: for "torch": "auto" (CUDA when available), "cuda", "cuda:N" or "cpu"; for
            "tensorrt": "auto"/"cuda" (GPU 0) or "cuda:N".
        precision: "fp32" (default, exact against ONNX Runtime) or a GPU option ("tf32",
            "bf16", "fp16" for torch; "tf32", "fp16" for TensorRT). ONNX Runtime is fp32 only.

    Raises:
        EngineError: unknown or unavailable backend, or a network that does not match.
    """
    if backend == "tensorrt" or (backend == "auto" and _tensorrt_gpu()):
        engine_trt = _create_tensorrt(backend, onnx_path, inputs, outputs, device, precision)
        if engine_trt is not None:
            return engine_trt
    if backend == "torch" or (backend == "auto" and _torch_cuda()):
        from .torch_engine import TorchEngine

        engine = TorchEngine(
            onnx_path, tuple(inputs), tuple(outputs), device=device, threads=threads,
            precision=precision,
        )  # fmt: skip
        if backend == "auto":
            log.info("backend auto: using PyTorch on %s for %s", engine.device, onnx_path)
        return engine
    if backend in ("auto", "onnxruntime"):
        from .onnxruntime import OnnxRuntimeEngine

        if precision not in OnnxRuntimeEngine.capabilities.precisions:
            raise EngineError(
                f"ONNX Runtime (CPU) runs fp32 only, not {precision}",
                hint="drop --precision, or use --engine torch/tensorrt on a GPU",
            )

        engine = OnnxRuntimeEngine(onnx_path, tuple(inputs), tuple(outputs), threads=threads)
        if backend == "auto":
            log.info("backend auto: using ONNX Runtime (CPU) for %s", onnx_path)
        return engine
    raise EngineError(
        f"unknown backend {backend!r}", hint=f"use one of: auto, {', '.join(AVAILABLE)}"
    )


def _torch_cuda() -> bool:
    """Whether PyTorch is installed and sees a CUDA device (imports torch only when present)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    from .torch_engine import cuda_available

    return cuda_available()


def _tensorrt_gpu() -> bool:
    """Whether TensorRT and cuda-python import and a CUDA GPU is visible."""
    from .tensorrt import tensorrt_available

    return tensorrt_available()


def _create_tensorrt(
    backend: str,
    onnx_path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    device: str = "auto",
    precision: str = "fp32",
) -> InferenceEngine | None:
    """A TensorRT engine (plan built and cached on first use); under "auto" a failure logs a
    warning and returns None so that the next backend is tried."""
    from .tensorrt import TensorRTEngine

    try:
        gpu = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        engine = TensorRTEngine(
            onnx_path, tuple(inputs), tuple(outputs), precision=precision, device=gpu
        )
    except EngineError as error:
        if backend != "auto":
            raise
        log.warning("backend auto: TensorRT unavailable (%s); trying the next backend", error)
        return None
    if backend == "auto":
        log.info("backend auto: using TensorRT for %s", onnx_path)
    return engine
