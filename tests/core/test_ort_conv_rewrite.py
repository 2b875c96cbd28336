"""ONNX Runtime engine: 1-D convolutions run as 2-D ones of height 1 (issue 12 point 5, the
2-core CPU's per-frame compute). The rewrite must give the file's own results (float rounding
only), leave alone what it cannot rewrite safely, and be switchable off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2x_core.backends import TensorSpec, create_engine
from a2x_core.backends import onnxruntime as ort_backend
from a2x_core.backends.onnxruntime import OnnxRuntimeEngine, conv1d_as_2d

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

LENGTH = 97
INPUTS = (TensorSpec("x", (None, 4, LENGTH)),)


def _network(path: Path, opset: int) -> tuple[Path, tuple[TensorSpec, ...]]:
    """Four 1-D convs covering the attributes (stride, asymmetric pads, dilation, groups, with
    and without bias) and one weight shared by two convs (which must stay 1-D), then a sum."""
    rng = np.random.default_rng(opset)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    inits = [weight("w1", (8, 4, 5)), weight("b1", (8,)), weight("w2", (8, 2, 3)),
             weight("w3", (6, 8, 4)), weight("shared", (6, 6, 3))]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2], pads=[3, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=4, dilations=[2], pads=[2, 2]),
        helper.make_node("Conv", ["c2", "w3"], ["c3"], kernel_shape=[4], strides=[3]),
        helper.make_node("Conv", ["c3", "shared"], ["c4"], pads=[1, 1]),
        helper.make_node("Conv", ["c4", "shared"], ["y"], pads=[1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, LENGTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 6, None])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.save(model, path)
    return path, (TensorSpec("y", (None, 6, None)),)


@pytest.mark.parametrize("opset", [11, 14])
def test_rewritten_convs_give_the_files_results(tmp_path: Path, opset: int) -> None:
    """Every rewritable conv runs as 2-D (the shared weight's two convs stay 1-D), and the
    outputs equal the unmodified file's within float rounding, batch 1 and batch 5."""
    path, outputs = _network(tmp_path / "convs.onnx", opset)
    rewritten = OnnxRuntimeEngine(path, INPUTS, outputs, threads=1)
    plain = OnnxRuntimeEngine(path, INPUTS, outputs, threads=1, conv_2d=False)
    assert rewritten.convs_as_2d == 3
    assert plain.convs_as_2d == 0
    assert rewritten.describe()["convs_1d_as_2d"] == 3
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        feeds = {"x": rng.normal(0, 1, (batch, 4, LENGTH)).astype(np.float32)}
        got, want = rewritten.run(feeds)["y"], plain.run(feeds)["y"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert onnx.load(str(path)).graph.node[0].op_type == "Conv"  # the file itself untouched
    assert len(onnx.load(str(path)).graph.initializer[0].dims) == 3


def test_the_rewrite_itself_keeps_values_and_names(tmp_path: Path) -> None:
    """``conv1d_as_2d`` on the proto: the weights keep their values (only a height of 1 added),
    the graph's outputs keep their names, and the result passes ONNX's checker."""
    path, _ = _network(tmp_path / "convs.onnx", 14)
    model = onnx.load(str(path))
    before = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert conv1d_as_2d(model) == 3
    onnx.checker.check_model(model)
    after = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(after["w1"][:, :, 0, :], before["w1"])
    np.testing.assert_array_equal(after["shared"], before["shared"])
    assert [o.name for o in model.graph.output] == ["y"]


def test_module_switch_and_create_engine_default(tmp_path: Path, monkeypatch) -> None:
    """``create_engine`` rewrites by default; :data:`CONV1D_AS_2D` off runs the file as is."""
    path, outputs = _network(tmp_path / "convs.onnx", 14)
    assert create_engine("onnxruntime", path, INPUTS, outputs, threads=1).convs_as_2d == 3
    monkeypatch.setattr(ort_backend, "CONV1D_AS_2D", False)
    assert create_engine("onnxruntime", path, INPUTS, outputs, threads=1).convs_as_2d == 0


# ------------------------------------------------------------------------------ int8 (explicit)


def test_int8_engine_is_quantised_and_close(tmp_path: Path) -> None:
    """``int8_calibration``: the session runs quantised kernels (outputs move, within a few %
    of their range on calibration-like input) and says so; without feeds: a typed error."""
    from a2x_core.errors import EngineError

    path, outputs = _network(tmp_path / "convs.onnx", 14)
    rng = np.random.default_rng(5)
    calibration = [{"x": rng.normal(0, 1, (1, 4, LENGTH)).astype(np.float32)} for _ in range(8)]
    plain = OnnxRuntimeEngine(path, INPUTS, outputs, threads=1)
    int8 = OnnxRuntimeEngine(path, INPUTS, outputs, threads=1, int8_calibration=calibration)
    assert int8.describe()["precision"] == "int8" and plain.describe()["precision"] == "fp32"
    feeds = {"x": rng.normal(0, 1, (3, 4, LENGTH)).astype(np.float32)}
    got, want = int8.run(feeds)["y"], plain.run(feeds)["y"]
    error = np.abs(got - want).max() / np.abs(want).max()
    assert 0 < error < 0.05
    with pytest.raises(EngineError, match="calibration"):
        OnnxRuntimeEngine(path, INPUTS, outputs, threads=1, int8_calibration=[])


def test_regression_model_int8_on_speech(tmp_path: Path) -> None:
    """``RegressionModel.quantize_int8``: calibrated on real speech, the model's frames stay
    close to fp32's; too little speech is a ParameterError naming the fix."""
    from a2x_core.audio.decode import Audio, decode_audio
    from a2x_core.errors import ParameterError
    from a2x_core.models.registry import load_model
    from a2x_core.options import InferenceOptions
    from tests.a2f_folders import make_regression_folder
    from tests.conftest import SAMPLE

    folder = make_regression_folder(tmp_path / "model")
    model = load_model(folder.model_json, backend="onnxruntime", threads=1)
    speech = Audio(decode_audio(SAMPLE).samples[: 4 * 16000])
    options = InferenceOptions(fps=30)
    want = model.animate([speech], options)[0].weights
    with pytest.raises(ParameterError, match="shorter than one window"):
        model.quantize_int8(Audio(speech.samples[:1000]))
    model.quantize_int8(speech, options)
    assert model.engine.precision == "int8"
    got = model.animate([speech], options)[0].weights
    assert got.shape == want.shape
    assert 0 < np.abs(got - want).max() < 0.05  # quantised, and close
