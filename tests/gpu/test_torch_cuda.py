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
from tests.a2f_folders import make_regression_folder  # noqa: E402


def test_cuda_engine_with_graphs_matches_onnxruntime(tmp_path) -> None:  # noqa: ANN001
    model = make_regression_folder(tmp_path / "model")
    path = model.folder / "network.onnx"
    inputs, outputs = regression_io(8320, model.emotion_weights.shape[0], model.bias.shape[0])
    rng = np.random.default_rng(0)
    feeds = {
        "input": (0.3 * rng.standard_normal((4, 1, 8320))).astype(np.float32),
        "emotion": rng.uniform(0, 1, (4, 1, model.emotion_weights.shape[0])).astype(np.float32),
    }
    ref = OnnxRuntimeEngine(path, inputs, outputs).run(feeds)["result"]
    engine = create_engine("auto", path, inputs, outputs)
    assert engine.name == "torch" and engine.describe()["device"].startswith("cuda")
    for _ in range(3):  # capture, then replays
        np.testing.assert_allclose(engine.run(feeds)["result"], ref, atol=1e-4, rtol=0)
