"""ONNX Runtime on the CPU: explicit thread and graph settings, bindings checked on load."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import EngineError
from .base import EngineCapabilities, InferenceEngine, TensorSpec, check_bindings

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def _spec(node: object) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)  # type: ignore[attr-defined]
    dtype = _ORT_TYPES.get(node.type, node.type)  # type: ignore[attr-defined]
    return TensorSpec(node.name, shape, dtype)  # type: ignore[attr-defined]


class OnnxRuntimeEngine(InferenceEngine):
    """An ``onnxruntime.InferenceSession`` with the CPU execution provider.

    Threads: ``intra_op_num_threads = threads`` (None = all cores), one inter-op thread and
    sequential execution, so that ``--threads 2`` really uses two cores; no thread spinning
    between calls, so that post-processing between batches gets the CPU.
    """

    name = "onnxruntime"
    #: host arrays on the CPU, any batch, fp32 only
    capabilities = EngineCapabilities(device="cpu", precisions=("fp32",))

    def __init__(
        self,
        path: Path,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        *,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineError(
                "onnxruntime is not installed", hint="pip install onnxruntime"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise EngineError(
                "network file missing", path=self.path, hint="download the model folder again"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads) if threads else 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ORT raises its own exception types (Fail, InvalidGraph...)
            raise EngineError(
                f"ONNX Runtime cannot load the network ({error})",
                path=self.path,
                hint="download the model folder again",
            ) from None
        check_bindings([_spec(n) for n in self._session.get_inputs()], inputs, "input", self.path)
        check_bindings(
            [_spec(n) for n in self._session.get_outputs()], outputs, "output", self.path
        )
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self.threads = threads
        self._output_names = [t.name for t in self.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feeds(feeds)
        values = self._session.run(
            self._output_names, {k: feeds[k] for k in (t.name for t in self.inputs)}
        )
        return dict(zip(self._output_names, values, strict=True))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "provider": "CPUExecutionProvider", "threads": self.threads}
