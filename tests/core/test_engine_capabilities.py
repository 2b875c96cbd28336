"""Engine capabilities (issue 12, point 1): every engine class declares what it does beyond
``run()`` on the base class's :class:`EngineCapabilities`, and each declaration holds: the
engine really does (or refuses) what it declares. TensorRT's are checked with its fake in
``test_tensorrt_fake.py``."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest

from a2x_core.backends import regression_io
from a2x_core.backends.base import EngineCapabilities, InferenceEngine
from a2x_core.backends.onnxruntime import OnnxRuntimeEngine
from a2x_core.errors import EngineError
from tests.a2f_folders import BUFFER_LEN, make_regression_folder

#: every backend module of a2x_core (the engine classes defined in them are collected below)
BACKEND_MODULES = ("onnxruntime", "tensorrt", "torch_engine")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple, tuple]:
    model = make_regression_folder(tmp_path_factory.mktemp("caps") / "model")
    inputs, outputs = regression_io(BUFFER_LEN, model.emotion_weights.shape[0], model.bias.size)
    return model.folder / "network.onnx", inputs, outputs


def _feeds(inputs: tuple, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {t.name: rng.normal(0, 0.3, (batch, *t.shape[1:])).astype(np.float32) for t in inputs}


def test_every_engine_class_declares_its_capabilities() -> None:
    """No engine inherits the base class's defaults by accident: each backend's engine class
    sets its own ``capabilities`` (the class-level facts, before any instance exists)."""
    classes = []
    for name in BACKEND_MODULES:
        module = importlib.import_module(f"a2x_core.backends.{name}")
        classes += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if issubclass(cls, InferenceEngine) and cls is not InferenceEngine
                    and cls.__module__ == module.__name__]  # fmt: skip
    assert {cls.name for cls in classes} == {"onnxruntime", "tensorrt", "torch"}
    for cls in classes:
        caps = cls.__dict__.get("capabilities")
        assert isinstance(caps, EngineCapabilities), f"{cls.__name__} declares no capabilities"
        assert "fp32" in caps.precisions
        # device tensors come with run_device; a growable batch with ensure_max_batch
        assert caps.device_tensors == (cls.run_device is not InferenceEngine.run_device)
        assert caps.grows_batch == (cls.ensure_max_batch is not InferenceEngine.ensure_max_batch)


def test_onnxruntime_is_host_arrays_on_the_cpu(network: tuple[Path, tuple, tuple]) -> None:
    path, inputs, outputs = network
    engine = OnnxRuntimeEngine(path, inputs, outputs, threads=1)
    caps = engine.capabilities
    assert caps == OnnxRuntimeEngine.capabilities
    assert (caps.device, caps.on_cuda, caps.device_tensors) == ("cpu", False, False)
    assert caps.precisions == ("fp32",) and not caps.cuda_graphs and not caps.grows_batch
    out = engine.run(_feeds(inputs, 3))
    assert isinstance(out["result"], np.ndarray) and out["result"].shape[0] == 3
    engine.ensure_max_batch(1000)  # nothing to grow: any batch runs
    assert engine.max_batch is None
    with pytest.raises(EngineError, match="host arrays only"):
        engine.run_device([])


def test_torch_on_the_cpu_keeps_tensors_on_the_cpu(network: tuple[Path, tuple, tuple]) -> None:
    """The torch engine declares device tensors on its device, in the file's input order, and
    its run_device gives the same rows as run()."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from a2x_core.backends.torch_engine import PRECISIONS, TorchEngine

    path, inputs, outputs = network
    engine = TorchEngine(path, inputs, outputs, device="cpu")
    caps = engine.capabilities
    assert (caps.device, caps.on_cuda, caps.device_tensors) == ("cpu", False, True)
    assert not caps.cuda_graphs and not caps.grows_batch and caps.precisions == PRECISIONS
    assert sorted(caps.device_inputs) == sorted(t.name for t in inputs)
    assert caps.device_outputs == tuple(t.name for t in outputs)
    feeds = _feeds(inputs, 4)
    host = engine.run(feeds)
    outs = engine.run_device([torch.from_numpy(feeds[n]) for n in caps.device_inputs])
    assert len(outs) == len(caps.device_outputs)
    for name, tensor in zip(caps.device_outputs, outs, strict=True):
        assert isinstance(tensor, torch.Tensor) and tensor.device == torch.device(caps.device)
        np.testing.assert_allclose(tensor.numpy(), host[name], atol=1e-6, rtol=0)


def test_torch_on_cuda_declares_the_gpu(network: tuple[Path, tuple, tuple]) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from a2x_core.backends.torch_engine import TorchEngine

    path, inputs, outputs = network
    engine = TorchEngine(path, inputs, outputs, device="cuda")
    caps = engine.capabilities
    assert caps.on_cuda and caps.device_tensors and caps.cuda_graphs
    feeds = _feeds(inputs, 2)
    outs = engine.run_device([torch.from_numpy(feeds[n]).to(caps.device)
                              for n in caps.device_inputs])  # fmt: skip
    assert all(t.device.type == "cuda" for t in outs)
    eager = TorchEngine(path, inputs, outputs, device="cuda", cuda_graphs=False)
    assert not eager.capabilities.cuda_graphs
