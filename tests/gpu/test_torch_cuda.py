"""The torch engine and the ADMM solve on CUDA (skipped without torch or a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from a2x_core.backends import create_engine, regression_io  # noqa: E402
from a2x_core.backends.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from a2x_core.backends.torch_engine import TorchEngine  # noqa: E402
from tests.a2f_folders import make_regression_folder  # noqa: E402
from tests.torch_networks import (  # noqa: E402
    SMALL_RESULT,
    export_small_benchmark_network,
    random_feeds,
)


def test_cuda_engine_with_graphs_matches_onnxruntime(tmp_path) -> None:  # noqa: ANN001
    model = make_regression_folder(tmp_path / "model")
    path = model.folder / "network.onnx"
    inputs, outputs = regression_io(8320, model.emotion_weights.shape[0], model.bias.shape[0])
    feeds = random_feeds(4, model.emotion_weights.shape[0], seed=0)
    ref = OnnxRuntimeEngine(path, inputs, outputs).run(feeds)["result"]
    engine = create_engine("auto", path, inputs, outputs)
    assert engine.name == "torch" and engine.describe()["device"].startswith("cuda")
    for _ in range(3):  # capture, then replays
        np.testing.assert_allclose(engine.run(feeds)["result"], ref, atol=1e-4, rtol=0)


def test_cuda_fused_graph_matches_unfused(tmp_path) -> None:  # noqa: ANN001
    """The fused patterns on CUDA (fp32, TF32 off) against node-by-node execution."""
    path = export_small_benchmark_network(tmp_path / "network.onnx")
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = random_feeds(3, 26, seed=1)
    plain = TorchEngine(path, inputs, outputs, device="cuda", fuse=False, cuda_graphs=False)
    fused = TorchEngine(path, inputs, outputs, device="cuda")
    ref = plain.run(feeds)["result"]
    for _ in range(3):  # eager + capture, then replays through the pinned host buffers
        np.testing.assert_allclose(fused.run(feeds)["result"], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("precision", "bound"), [("bf16", 2e-2), ("fp16", 4e-3)])
def test_cuda_half_precision_error_is_bounded(tmp_path, precision: str, bound: float) -> None:  # noqa: ANN001
    """bf16 / fp16 end to end on CUDA (CUDA graphs): bounded error against fp32, replays equal."""
    path = export_small_benchmark_network(tmp_path / "network.onnx")
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = random_feeds(8, 26, seed=2)
    ref = TorchEngine(path, inputs, outputs, device="cuda").run(feeds)["result"]
    low = TorchEngine(path, inputs, outputs, device="cuda", precision=precision)
    first = low.run(feeds)["result"]
    assert first.dtype == np.float32
    assert 0 < np.abs(first - ref).max() < bound
    for _ in range(2):  # replays of the captured graph give the same result
        np.testing.assert_allclose(low.run(feeds)["result"], first, atol=1e-6, rtol=0)


def test_cuda_grouped_gemm_matches_cudnn_conv(tmp_path) -> None:  # noqa: ANN001
    """The positional conv as one GEMM (default) against cuDNN's grouped conv, fp32 on CUDA."""
    path = export_small_benchmark_network(tmp_path / "network.onnx")
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = random_feeds(5, 26, seed=3)
    cudnn = TorchEngine(path, inputs, outputs, device="cuda", grouped_gemm=False)
    gemm = TorchEngine(path, inputs, outputs, device="cuda")
    ref = cudnn.run(feeds)["result"]
    for _ in range(3):
        np.testing.assert_allclose(gemm.run(feeds)["result"], ref, atol=1e-5, rtol=0)
    # the expanded (Toeplitz) weight is cached only on the GEMM path (the cache also holds the
    # channels-last conv weights of both)
    assert any(k[0] == "toeplitz" for k in gemm.graph._gemm_weights)
    assert not any(k[0] == "toeplitz" for k in cudnn.graph._gemm_weights)


def test_cuda_channels_last_convs_match_nchw(tmp_path) -> None:  # noqa: ANN001
    """The convs on channels-last activations (the CUDA default except in fp32) against the NCHW
    path, fp32 (TF32 off) with CUDA-graph replays, and fp16 within its bound of fp32."""
    path = export_small_benchmark_network(tmp_path / "network.onnx")
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = random_feeds(6, 26, seed=4)
    nchw = TorchEngine(path, inputs, outputs, device="cuda")
    last = TorchEngine(path, inputs, outputs, device="cuda", channels_last=True)
    assert last.describe()["channels_last"] is True and nchw.describe()["channels_last"] is False
    ref = nchw.run(feeds)["result"]
    for _ in range(3):
        np.testing.assert_allclose(last.run(feeds)["result"], ref, atol=1e-5, rtol=0)
    half = TorchEngine(path, inputs, outputs, device="cuda", precision="fp16")
    assert half.describe()["channels_last"] is True
    first = half.run(feeds)["result"]
    assert 0 < np.abs(first - ref).max() < 4e-3
    for _ in range(2):
        np.testing.assert_allclose(half.run(feeds)["result"], first, atol=1e-6, rtol=0)
