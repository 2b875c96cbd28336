"""TensorRT on a real GPU: build a plan of a generated folder's network and compare it with
ONNX Runtime. Runs only where ``tensorrt`` and cuda-python import and a GPU is visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2x_core.backends import regression_io
from a2x_core.backends import tensorrt as trt
from a2x_core.backends.onnxruntime import OnnxRuntimeEngine
from tests.a2f_folders import BUFFER_LEN, make_regression_folder

pytestmark = pytest.mark.skipif(
    not trt.tensorrt_available(), reason="needs TensorRT, cuda-python and a CUDA GPU"
)


def test_plan_matches_onnxruntime_and_is_cached(tmp_path: Path) -> None:
    generated = make_regression_folder(tmp_path / "model")
    onnx = generated.model_json.with_name("network.onnx")
    width = generated.bias.size
    inputs, outputs = regression_io(BUFFER_LEN, generated.emotion_weights.shape[0], width)
    cache = tmp_path / "plans"
    reference = OnnxRuntimeEngine(onnx, inputs, outputs)
    engine = trt.TensorRTEngine(onnx, inputs, outputs, max_batch=4, cache_dir=cache)
    try:
        assert engine.max_batch == 4 and engine.describe()["precision"] == "fp32"
        rng = np.random.default_rng(3)
        for batch in (1, 3, 3, 3, 4, 1):  # repeats replay the CUDA graph of that batch
            feeds = {
                "input": rng.normal(0, 0.3, (batch, 1, BUFFER_LEN)).astype(np.float32),
                "emotion": rng.uniform(0, 1, (batch, 1, inputs[0].shape[2])).astype(np.float32),
            }
            got = engine.run(feeds)["result"]
            want = reference.run(feeds)["result"]
            assert got.shape == want.shape == (batch, 1, width)
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    finally:
        engine.close()
    (record,) = trt.plan_index(cache)
    assert record.max_batch == 4 and record.onnx_sha256 == trt.file_sha256(onnx)
    plan = cache / f"{record.key}.plan"
    built = plan.stat().st_mtime_ns
    again = trt.TensorRTEngine(onnx, inputs, outputs, max_batch=4, cache_dir=cache)
    again.close()
    assert plan.stat().st_mtime_ns == built and len(trt.plan_index(cache)) == 1
