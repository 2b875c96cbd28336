"""The inference-engine seam: what every backend (ONNX Runtime, TensorRT, PyTorch) provides,
and the expected tensors of the Audio2Face-3D regression and diffusion networks.

An engine is created for one network file with the tensors the model expects; it checks its own
bindings against them (names, ranks, fixed extents, dtypes), as the SDK checks a TensorRT engine's
bindings (spec §1.2, §2), and then maps named float32 inputs to named outputs for a batch.
What an engine can do beyond that (device tensors, a growable batch, CUDA graphs) it declares in
:class:`EngineCapabilities`, so that the models read facts instead of probing attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: ``shape`` uses None for a dynamic extent (the batch), which sits at
    ``batch_axis`` (0, except the diffusion GRU state ``[steps, layers, B, latent]``)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    batch_axis: int = 0

    def describe(self) -> str:
        dims = ", ".join("B" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


def regression_io(
    buffer_len: int, emotion_size: int, result_size: int
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and output of a regression network (spec §2, A.2.1), from ``network_info.json``:
    ``input`` [B, 1, buffer_len], ``emotion`` [B, 1, 16 + E], ``result`` [B, 1, S + T + 19]."""
    inputs = (
        TensorSpec("emotion", (None, 1, emotion_size)),
        TensorSpec("input", (None, 1, buffer_len)),
    )
    outputs = (TensorSpec("result", (None, 1, result_size)),)
    return inputs, outputs


def diffusion_io(
    *,
    window: int,
    frames: int,
    center_frames: int,
    emotions: int,
    identities: int,
    steps: int,
    gru_layers: int,
    latent: int,
    output_size: int,
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a v3.0 diffusion network (spec §2, A.2.1), sorted by name:
    ``emotion`` [B, 30, E], ``identity`` [B, I], ``input_latents`` [steps, layers, B, latent],
    ``noise`` [B, steps + 1, 60, D], ``window`` [B, 16000] -> ``output_latents`` (as the input
    latents) and ``prediction`` [B, 60, D]."""
    latents = (steps, gru_layers, None, latent)
    inputs = (
        TensorSpec("emotion", (None, center_frames, emotions)),
        TensorSpec("identity", (None, identities)),
        TensorSpec("input_latents", latents, batch_axis=2),
        TensorSpec("noise", (None, steps + 1, frames, output_size)),
        TensorSpec("window", (None, window)),
    )
    outputs = (
        TensorSpec("output_latents", latents, batch_axis=2),
        TensorSpec("prediction", (None, frames, output_size)),
    )
    return inputs, outputs


def check_bindings(
    found: Sequence[TensorSpec], expected: Sequence[TensorSpec], role: str, path: Path
) -> None:
    """Raise :class:`EngineError` unless ``found`` matches ``expected`` by name (sorted, as the
    SDK sorts bindings), rank, fixed extents and dtype. A dynamic extent matches anything."""
    have = {t.name: t for t in found}
    want = {t.name: t for t in expected}
    if sorted(have) != sorted(want):
        raise EngineError(
            f"network {role}s are {sorted(have)}, expected {sorted(want)}",
            path=path,
            hint="this file is not the network model.json describes; download the folder again",
        )
    for name, spec in want.items():
        got = have[name]
        same_rank = len(got.shape) == len(spec.shape)
        dims_ok = same_rank and all(
            w is None or g is None or w == g for w, g in zip(spec.shape, got.shape, strict=True)
        )
        if not dims_ok or got.dtype != spec.dtype:
            raise EngineError(
                f"network {role} {got.describe()} does not match network_info.json: expected "
                f"{spec.describe()}",
                path=path,
                hint="network.onnx and network_info.json come from different models",
            )


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine does beyond :meth:`InferenceEngine.run` (host arrays in and out), declared
    so that a model picks its fast path from facts rather than from ``getattr`` probes.

    The batch facts stay where they were: :attr:`InferenceEngine.max_batch` (the largest batch
    one call takes now) and each :class:`TensorSpec`'s ``batch_axis``.

    Attributes:
        device: where the network runs: "cpu", "cuda" (the current CUDA device) or "cuda:N".
        device_tensors: :meth:`InferenceEngine.run_device` takes and returns torch tensors on
            ``device``, so inputs and outputs can stay there between stages.
        device_inputs, device_outputs: the order of :meth:`~InferenceEngine.run_device`'s input
            and output tensors by name (the network file's); empty without device tensors.
        grows_batch: :meth:`InferenceEngine.ensure_max_batch` can raise ``max_batch`` (TensorRT
            builds its profile for a batch; the other engines take any batch).
        cuda_graphs: calls replay captured CUDA graphs (whose outputs the next call overwrites).
        precisions: the ``--precision`` values this engine accepts.
    """

    device: str = "cpu"
    device_tensors: bool = False
    device_inputs: tuple[str, ...] = ()
    device_outputs: tuple[str, ...] = ()
    grows_batch: bool = False
    cuda_graphs: bool = False
    precisions: tuple[str, ...] = ("fp32",)

    @property
    def on_cuda(self) -> bool:
        """Whether the network runs on a CUDA device."""
        return self.device.split(":")[0] == "cuda"


class InferenceEngine(ABC):
    """A loaded network that runs batches.

    Attributes:
        name: backend name ("onnxruntime", "tensorrt", ...).
        path: the network file it runs.
        inputs, outputs: the tensors it was checked against.
        max_batch: the largest batch one :meth:`run` accepts (None = unlimited); callers split.
        capabilities: what it does beyond :meth:`run`; every engine class declares its own
            (the class value), and an instance whose facts depend on its settings (device, CUDA
            graphs) sets its own in ``__init__``.
    """

    name: str = ""
    path: Path
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    max_batch: int | None = None
    capabilities: EngineCapabilities = EngineCapabilities()

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: float32 arrays by input name -> float32 arrays by output name."""

    def run_device(self, tensors: Sequence[Any]) -> list[Any]:
        """One batch of torch tensors on ``capabilities.device``, in ``capabilities
        .device_inputs`` order -> outputs in ``device_outputs`` order, with no host copies.
        Only engines that declare ``device_tensors`` provide it."""
        raise EngineError(
            f"the {self.name} engine takes host arrays only (no device tensors)",
            path=self.path,
            hint="check engine.capabilities.device_tensors before calling run_device",
        )

    def ensure_max_batch(self, batch: int) -> None:
        """Make one :meth:`run` hold ``batch`` rows. Only an engine that declares
        ``grows_batch`` has a build-time limit to raise; for the others this does nothing."""
        return None

    def close(self) -> None:
        """Release the engine's resources (sessions, device memory); default: nothing to do."""
        return None

    def describe(self) -> dict[str, object]:
        """Facts for ``a2x info``."""
        return {
            "backend": self.name,
            "network": str(self.path),
            "inputs": [t.describe() for t in self.inputs],
            "outputs": [t.describe() for t in self.outputs],
            "max_batch": self.max_batch,
        }

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> int:
        """The batch size of ``feeds``, after checking names, shapes and dtypes."""
        batch = None
        for spec in self.inputs:
            if spec.name not in feeds:
                raise EngineError(f"input {spec.name!r} was not given", path=self.path)
            array = feeds[spec.name]
            if (
                array.dtype != np.float32
                or array.ndim != len(spec.shape)
                or any(
                    w is not None and w != g for w, g in zip(spec.shape, array.shape, strict=True)
                )
            ):
                raise EngineError(
                    f"input {spec.name} got {array.dtype} {list(array.shape)}, expected "
                    f"{spec.describe()}",
                    path=self.path,
                )
            if batch is None:
                batch = array.shape[spec.batch_axis]
            elif array.shape[spec.batch_axis] != batch:
                raise EngineError("inputs disagree on the batch size", path=self.path)
        if self.max_batch is not None and batch is not None and batch > self.max_batch:
            raise EngineError(
                f"batch {batch} exceeds the engine's maximum {self.max_batch}", path=self.path
            )
        return int(batch or 0)
