"""ONNX Runtime on the CPU: explicit thread and graph settings, bindings checked on load."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError
from .base import EngineCapabilities, InferenceEngine, TensorSpec, check_bindings

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}

log = logging.getLogger("a2x_core")

#: Run the network's 1-D convolutions as 2-D ones of height 1 (:func:`conv1d_as_2d`). ONNX
#: Runtime's CPU provider runs 1-D convs as im2col + GEMM, while 2-D convs go through its
#: blocked (NCHWc) direct kernels: on the 2-core AVX-512 VM the regression network's wav2vec2
#: front end then costs ~15 % less CPU per frame; outputs differ by float rounding only
#: (<= 1e-7 on the benchmark network; docs/benchmarks.md, "One regression stream on the
#: 2-core CPU"). Needs the ``onnx`` package; without it the file runs as it is.
CONV1D_AS_2D = True

#: Let the intra-op threads spin between the operators of a call instead of sleeping (sessions
#: created afterwards). Off by default: under load, or with post-processing between batches,
#: spinning threads take the CPU from other work. ``a2x live`` turns it on (one stream, one
#: small call per frame): each operator otherwise wakes a sleeping thread, and on the 2-core VM
#: that cost the int8 regression network's call 13.8 -> 9.7 ms p50 per frame at real-time pace
#: (docs/benchmarks.md, "One regression stream ... after the fold").
SPIN_THREADS = False


def spin_threads(enabled: bool = True) -> None:
    """Sessions created from now on spin their threads between operators (see
    :data:`SPIN_THREADS`): for latency-bound single streams on a machine of their own."""
    global SPIN_THREADS
    SPIN_THREADS = bool(enabled)


def _spec(node: object) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)  # type: ignore[attr-defined]
    dtype = _ORT_TYPES.get(node.type, node.type)  # type: ignore[attr-defined]
    return TensorSpec(node.name, shape, dtype)  # type: ignore[attr-defined]


class OnnxRuntimeEngine(InferenceEngine):
    """An ``onnxruntime.InferenceSession`` with the CPU execution provider.

    Threads: ``intra_op_num_threads = threads`` (None = all cores), one inter-op thread and
    sequential execution, so that ``--threads 2`` really uses two cores; no thread spinning
    between calls, so that post-processing between batches gets the CPU (unless
    :func:`spin_threads`: ``a2x live``).
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
        conv_2d: bool | None = None,
        int8_calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
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
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if SPIN_THREADS else "0")  # fmt: skip
        #: whether this session's threads spin between operators (:func:`spin_threads`)
        self.spins = SPIN_THREADS
        #: 1-D convs the session runs as 2-D ones (0: the file as it is)
        self.convs_as_2d = 0
        network: str | bytes = str(self.path)
        if CONV1D_AS_2D if conv_2d is None else conv_2d:
            network, self.convs_as_2d = _rewritten(self.path)
        #: "int8" when the session runs the statically quantised network (:func:`quantize_int8`)
        self.precision = "fp32"
        if int8_calibration is not None:
            network = quantize_int8(network, int8_calibration, self.path)
            self.precision = "int8"
        try:
            self._session = ort.InferenceSession(
                network, sess_options=options, providers=["CPUExecutionProvider"]
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
        return {**super().describe(), "provider": "CPUExecutionProvider", "threads": self.threads,
                "convs_1d_as_2d": self.convs_as_2d, "precision": self.precision,
                "spinning_threads": self.spins}  # fmt: skip


def quantize_int8(
    network: str | bytes, calibration: Sequence[Mapping[str, np.ndarray]], path: Path
) -> bytes:
    """An explicit reduced-precision option (never a default): the network with its Conv and
    MatMul nodes statically quantised to int8 (QDQ; per-channel int8 weights, uint8 activations
    whose ranges come from running ``calibration``, a list of feeds such as windows of real
    speech). ONNX Runtime then runs its int8 kernels (AVX-512 VNNI where the CPU has it): on
    the 2-core VM the regression network costs half the CPU per frame of fp32, and the outputs
    move by ~1 % of their range (docs/benchmarks.md, "One regression stream on the 2-core CPU").

    Raises:
        EngineError: ``onnx`` is missing, no calibration feeds, or quantisation failed.
    """
    import tempfile

    if not calibration:
        raise EngineError("int8 needs calibration feeds (e.g. windows of real speech)", path=path)
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise EngineError("int8 quantisation needs the onnx package", path=path,
                          hint="pip install onnx") from None  # fmt: skip

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([dict(f) for f in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="a2x-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        model = onnx.load_from_string(network) if isinstance(network, bytes) else onnx.load(network)
        onnx.save(model, str(source))
        try:
            quantize_static(str(source), str(target), Feeds(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv", "MatMul"], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
        except Exception as error:  # noqa: BLE001 - the quantiser raises many types
            raise EngineError(f"int8 quantisation failed ({error})", path=path) from None
        return target.read_bytes()


def _rewritten(path: Path) -> tuple[str | bytes, int]:
    """The network with :func:`conv1d_as_2d` applied, as bytes for the session, and the count
    of rewritten convs; the path itself when there is nothing to rewrite or ``onnx`` is
    missing (or cannot read the file: the session's own load then reports it)."""
    try:
        import onnx
    except ImportError:
        log.debug("onnx is not installed: %s runs with its 1-D convs as they are", path)
        return str(path), 0
    try:
        model = onnx.load(str(path))
    except Exception:  # noqa: BLE001 - a broken file: ONNX Runtime's load names the error
        return str(path), 0
    count = conv1d_as_2d(model)
    if not count:
        return str(path), 0
    try:
        return model.SerializeToString(), count
    except ValueError:  # over protobuf's 2 GB: run the file as it is
        return str(path), 0


def conv1d_as_2d(model: Any) -> int:
    """Rewrite, in place, every 1-D ``Conv`` of ``model`` (an ``onnx.ModelProto``) whose weight
    is an initializer used by it alone as ``Unsqueeze(axis 2) -> 2-D Conv -> Squeeze(axis 2)``:
    the same sums over the same taps (a height-1 kernel on a height-1 input), so only the
    kernels' summation order changes. Returns the number of convs rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    axes_name = "a2x_conv_2d_axes"
    nodes, count = [], 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight is None or len(weight.dims) != 3 or uses.get(weight.name) != 1:
            nodes.append(node)
            continue
        out_channels, in_channels, width = weight.dims
        del weight.dims[:]  # same values in the same order: only the shape gains a height
        weight.dims.extend([out_channels, in_channels, 1, width])
        attrs: dict[str, Any] = {}
        for attribute in node.attribute:
            value = helper.get_attribute_value(attribute)
            if attribute.name == "pads":
                value = [0, value[0], 0, value[1]]
            elif attribute.name in ("kernel_shape", "strides", "dilations"):
                value = [1, *value]
            attrs[attribute.name] = value
        high_in, high_out = f"{node.input[0]}/a2x_2d/{count}", f"{node.output[0]}/a2x_2d"
        axes = {"axes": [2]} if opset < 13 else {}
        axes_in = [axes_name] if opset >= 13 else []
        nodes += [
            helper.make_node("Unsqueeze", [node.input[0], *axes_in], [high_in], **axes),
            helper.make_node("Conv", [high_in, *node.input[1:]], [high_out], name=node.name,
                             **attrs),  # fmt: skip
            helper.make_node("Squeeze", [high_out, *axes_in], list(node.output), **axes),
        ]
        count += 1
    if count:
        if opset >= 13:
            graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), axes_name))
        del graph.node[:]
        graph.node.extend(nodes)
    return count
