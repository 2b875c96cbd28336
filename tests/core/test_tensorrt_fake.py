"""``TensorRTEngine`` driven end to end through stand-ins for ``tensorrt`` and
``cuda.bindings.runtime`` that follow their documented calling conventions (tuple returns,
name-based I/O, stream capture). "Device" memory is host memory and the network is the generated
folder's affine map, so this checks the engine's own logic (plan cache, profile, buffers, copies,
batch changes, CUDA-graph replay and fallback), not TensorRT itself."""

from __future__ import annotations

import ctypes
import enum
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2x_core.backends import regression_io
from a2x_core.backends import tensorrt as trt
from tests.a2f_folders import BUFFER_LEN, GeneratedModel, make_regression_folder


class _Err(enum.IntEnum):
    cudaSuccess = 0


OK = (_Err.cudaSuccess,)


class FakeCuda(types.ModuleType):
    """``cuda.bindings.runtime``: host buffers stand in for device memory."""

    cudaError_t = _Err
    cudaStreamNonBlocking = 1
    cudaMemcpyKind = enum.IntEnum("cudaMemcpyKind", "cudaMemcpyHostToDevice cudaMemcpyDeviceToHost")
    cudaStreamCaptureMode = enum.IntEnum(
        "cudaStreamCaptureMode", "cudaStreamCaptureModeThreadLocal"
    )
    cudaDeviceAttr = enum.IntEnum(
        "cudaDeviceAttr", "cudaDevAttrComputeCapabilityMajor cudaDevAttrComputeCapabilityMinor"
    )

    def __init__(self) -> None:
        super().__init__("cuda.bindings.runtime")
        self.memory: dict[int, Any] = {}
        self.capturing: list | None = None
        self.launches = 0

    def _alloc(self, n: int) -> tuple:
        buf = ctypes.create_string_buffer(n)
        self.memory[ctypes.addressof(buf)] = buf
        return (*OK, ctypes.addressof(buf))

    cudaMalloc = cudaMallocHost = _alloc

    def cudaFree(self, ptr: int) -> tuple:
        del self.memory[ptr]
        return OK

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: Any, stream: int) -> tuple:
        assert self.capturing is None and dst in self.memory and src in self.memory
        ctypes.memmove(dst, src, n)
        return OK

    def cudaSetDevice(self, device: int) -> tuple:
        return OK

    def cudaGetDeviceCount(self) -> tuple:
        return (*OK, 1)

    def cudaDeviceGetAttribute(self, attr: Any, device: int) -> tuple:
        return (*OK, 9 if attr.name.endswith("Major") else 0)

    def cudaGetDeviceProperties(self, device: int) -> tuple:
        return (*OK, types.SimpleNamespace(name=b"Fake GPU\0\0\0"))

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple:
        return (*OK, 77)

    def cudaStreamSynchronize(self, stream: int) -> tuple:
        return OK

    cudaStreamDestroy = cudaGraphDestroy = cudaGraphExecDestroy = cudaStreamSynchronize

    def cudaStreamBeginCapture(self, stream: int, mode: Any) -> tuple:
        self.capturing = []
        return OK

    def cudaStreamEndCapture(self, stream: int) -> tuple:
        graph, self.capturing = self.capturing, None
        return (*OK, graph)

    def cudaGraphInstantiate(self, graph: list, flags: int) -> tuple:
        return (*OK, list(graph))

    def cudaGraphLaunch(self, graph_exec: list, stream: int) -> tuple:
        self.launches += 1
        for op in graph_exec:
            op()
        return OK


def _view(ptr: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.ctypeslib.as_array(
        ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (count,)
    ).reshape(shape)


#: A GRU-state-like extra input and output whose batch is axis 2 (as the diffusion networks'
#: ``input_latents`` / ``output_latents``); the fake network doubles it.
LATENTS = (2, 2, None, 4)


def _fake_tensorrt(
    cuda: FakeCuda, model: GeneratedModel, *, capturable: bool = True, latents: bool = False
) -> types.ModuleType:
    """The slice of the TensorRT 10 Python API the engine uses, running ``model``'s network
    (with ``latents``: also ``input_latents`` -> ``output_latents`` = 2 x, batch on axis 2)."""
    mod = types.ModuleType("tensorrt")
    mod.__version__ = "10.99.0.1"
    mod.builds = 0
    mod.bad_loads = 0
    width, emotion = model.bias.size, model.emotion_weights.shape[0]
    fixed = {"input": (None, 1, BUFFER_LEN), "emotion": (None, 1, emotion),
             "result": (None, 1, width)}  # fmt: skip
    if latents:
        fixed.update(input_latents=LATENTS, output_latents=LATENTS)
    names = tuple(fixed)
    inputs = tuple(n for n in names if n not in ("result", "output_latents"))

    def with_batch(name: str, batch: int) -> tuple:
        return tuple(batch if d is None else d for d in fixed[name])
    mod.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    mod.TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    mod.DataType = enum.Enum("DataType", "FLOAT HALF")
    mod.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE TACTIC_SHARED_MEMORY")
    mod.BuilderFlag = enum.Enum("BuilderFlag", "TF32 FP16")

    class Network:
        num_inputs = len(inputs)

        def get_input(self, i: int) -> Any:
            return types.SimpleNamespace(name=inputs[i])

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
            self.shapes[name] = (low, opt, high)

    class Config:
        def __init__(self) -> None:
            self.flags = {"TF32"}
            self.pools: dict[str, int] = {}

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pools[pool.name] = size

        def clear_flag(self, flag: Any) -> None:
            self.flags.discard(flag.name)

        def set_flag(self, flag: Any) -> None:
            self.flags.add(flag.name)

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profile = profile
            return 0

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            assert flags == 0
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            mod.builds += 1
            mod.last_config = config
            high = config.profile.shapes["input"][2][0]
            return f"PLAN {high}".encode()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Any) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            return Path(path).is_file()

    class Context:
        def __init__(self) -> None:
            self.addresses: dict[str, int] = {}
            self.batch = {}

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            batch = shape[fixed[name].index(None)]
            assert tuple(shape) == with_batch(name, batch)
            self.batch[name] = batch
            return True

        def _compute(self, batch: int) -> None:
            audio = _view(self.addresses["input"], (batch, 1, BUFFER_LEN))[:, 0]
            emo = _view(self.addresses["emotion"], (batch, 1, emotion))[:, 0]
            out = _view(self.addresses["result"], (batch, 1, width))
            out[:, 0] = audio @ model.audio_weights + emo @ model.emotion_weights + model.bias
            if latents:
                assert self.batch["input_latents"] == batch
                shape = with_batch("input_latents", batch)
                _view(self.addresses["output_latents"], shape)[:] = 2 * _view(
                    self.addresses["input_latents"], shape)  # fmt: skip

        def execute_async_v3(self, stream: int) -> bool:
            assert stream == 77
            batch = self.batch["input"]
            if cuda.capturing is not None:
                if not capturable:
                    return False
                cuda.capturing.append(lambda: self._compute(batch))
                return True
            self._compute(batch)
            return True

    class Engine:
        num_io_tensors = len(names)
        num_optimization_profiles = 1

        def __init__(self, high: int) -> None:
            self.high = high

        def get_tensor_name(self, i: int) -> str:
            return names[i]

        def get_tensor_mode(self, name: str) -> Any:
            return mod.TensorIOMode.INPUT if name in inputs else mod.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple:
            return with_batch(name, -1)

        def get_tensor_dtype(self, name: str) -> Any:
            return mod.DataType.FLOAT

        def get_tensor_profile_shape(self, name: str, index: int) -> tuple:
            return (with_batch(name, 1), with_batch(name, 1), with_batch(name, self.high))

        def create_execution_context(self) -> Context:
            return Context()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            if mod.bad_loads:
                mod.bad_loads -= 1
                return None
            return Engine(int(plan.split()[1]))

    mod.Builder, mod.OnnxParser, mod.Runtime = Builder, OnnxParser, Runtime
    return mod


@pytest.fixture
def generated(tmp_path: Path) -> GeneratedModel:
    return make_regression_folder(tmp_path / "model")


def _install(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda, fake_trt: types.ModuleType) -> None:
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cuda
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cuda)


def _installed_regression_io(
    monkeypatch: pytest.MonkeyPatch, generated: GeneratedModel, **fake_options: Any
) -> tuple[FakeCuda, types.ModuleType, Path, Any, Any]:
    """The fake TensorRT installed for ``generated``'s network: (cuda, fake module, the
    network.onnx path, its inputs, its outputs)."""
    cuda = FakeCuda()
    fake = _fake_tensorrt(cuda, generated, **fake_options)
    _install(monkeypatch, cuda, fake)
    emotion = generated.emotion_weights.shape[0]
    inputs, outputs = regression_io(BUFFER_LEN, emotion, generated.bias.size)
    return cuda, fake, generated.model_json.with_name("network.onnx"), inputs, outputs


def _feeds(rng: np.random.Generator, batch: int, emotion: int) -> dict[str, np.ndarray]:
    return {
        "input": rng.normal(0, 0.3, (batch, 1, BUFFER_LEN)).astype(np.float32),
        "emotion": rng.uniform(0, 1, (batch, 1, emotion)).astype(np.float32),
    }


def _expected(model: GeneratedModel, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return (feeds["input"][:, 0] @ model.audio_weights + feeds["emotion"][:, 0] @ model.emotion_weights
            + model.bias)[:, None]  # fmt: skip


@pytest.mark.parametrize("capturable", [True, False])
def test_engine_runs_caches_and_replays_graphs(
    monkeypatch: pytest.MonkeyPatch, generated: GeneratedModel, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capturable: bool,
) -> None:  # fmt: skip
    cuda, fake, onnx, inputs, outputs = _installed_regression_io(
        monkeypatch, generated, capturable=capturable
    )
    cache = tmp_path / "plans"
    engine = trt.TensorRTEngine(onnx, inputs, outputs, max_batch=5, cache_dir=cache)
    assert engine.max_batch == 5 and fake.builds == 1
    assert "TF32" not in fake.last_config.flags  # strict FP32 by default
    assert fake.last_config.pools == {"TACTIC_SHARED_MEMORY": 48 * 1024}
    assert fake.last_config.profile.shapes["input"][2] == (5, 1, BUFFER_LEN)
    rng = np.random.default_rng(0)
    with caplog.at_level(logging.WARNING, logger="a2x_core"):
        for batch in (1, 3, 3, 3, 5, 2, 2):
            feeds = _feeds(rng, batch, generated.emotion_weights.shape[0])
            np.testing.assert_allclose(engine.run(feeds)["result"], _expected(generated, feeds),
                                       rtol=1e-5, atol=1e-5)  # fmt: skip
    assert cuda.launches == (3 if capturable else 0)  # 2nd/3rd run at 3, 2nd run at 2
    assert ("CUDA graph capture unavailable" in caplog.text) is not capturable
    assert engine.describe()["device"] == "Fake GPU (sm 9.0)"
    engine.close()
    engine.close()
    assert cuda.memory == {}  # every buffer freed

    again = trt.TensorRTEngine(onnx, inputs, outputs, max_batch=5, cache_dir=cache)
    assert fake.builds == 1 and again.plan_path == engine.plan_path  # cache hit
    again.close()
    fake.bad_loads = 1  # a plan the installed TensorRT cannot load is rebuilt once
    trt.TensorRTEngine(onnx, inputs, outputs, max_batch=5, cache_dir=cache).close()
    assert fake.builds == 2 and len(trt.plan_index(cache)) == 1


def test_engines_build_cli_and_batch_limits(
    monkeypatch: pytest.MonkeyPatch, generated: GeneratedModel, tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    from a2x_core import engines_cli
    from a2x_core.errors import EngineError

    cuda = FakeCuda()
    fake = _fake_tensorrt(cuda, generated)
    _install(monkeypatch, cuda, fake)
    cache = tmp_path / "plans"
    argv = [
        "engines",
        "build",
        str(generated.model_json),
        "--cache",
        str(cache),
        "--max-batch",
        "4",
    ]
    assert engines_cli.main(argv) == 0
    assert engines_cli.main([*argv, "--fp16"]) == 0
    assert "FP16" in fake.last_config.flags and fake.builds == 2
    out = capsys.readouterr().out
    assert "max batch 4" in out and "TensorRT 10.99.0.1" in out and "Fake GPU (sm 9.0)" in out
    assert sorted(r.precision for r in trt.plan_index(cache)) == ["fp16", "fp32"]

    onnx = generated.model_json.with_name("network.onnx")
    emotion = generated.emotion_weights.shape[0]
    inputs, outputs = regression_io(BUFFER_LEN, emotion, generated.bias.size)
    engine = trt.TensorRTEngine(onnx, inputs, outputs, max_batch=4, cache_dir=cache)
    assert fake.builds == 2  # built by the CLI
    with pytest.raises(EngineError, match="exceeds the engine's maximum 4"):
        engine.run(_feeds(np.random.default_rng(1), 5, emotion))
    engine.close()


def test_batch_on_axis_2_and_profile_from_placeholders(
    monkeypatch: pytest.MonkeyPatch, generated: GeneratedModel, tmp_path: Path
) -> None:
    """An input whose batch is axis 2 (the diffusion GRU state): its profile, input shapes and
    output shapes put the batch there, and the engine's max batch reads it there."""
    import json

    from a2x_core.backends.base import TensorSpec

    cuda = FakeCuda()
    fake = _fake_tensorrt(cuda, generated, latents=True)
    _install(monkeypatch, cuda, fake)
    onnx = generated.model_json.with_name("network.onnx")
    info = json.loads(onnx.with_name("trt_info.json").read_text())
    info["trt_build_param"]["latents"] = [
        "--minShapes=input_latents:2x2x1x4", "--optShapes=input_latents:2x2x{OPT_BATCH_SIZE}x4",
        "--maxShapes=input_latents:2x2x{MAX_BATCH_SIZE}x4",
    ]  # fmt: skip
    onnx.with_name("trt_info.json").write_text(json.dumps(info))
    emotion = generated.emotion_weights.shape[0]
    inputs, outputs = regression_io(BUFFER_LEN, emotion, generated.bias.size)
    inputs = (*inputs, TensorSpec("input_latents", LATENTS, batch_axis=2))
    outputs = (*outputs, TensorSpec("output_latents", LATENTS, batch_axis=2))
    engine = trt.TensorRTEngine(onnx, inputs, outputs, max_batch=6, cache_dir=tmp_path / "plans")
    assert engine.max_batch == 6
    assert fake.last_config.profile.shapes["input_latents"] == ((2, 2, 1, 4), (2, 2, 3, 4),
                                                                (2, 2, 6, 4))  # fmt: skip
    rng = np.random.default_rng(2)
    for batch in (1, 4, 4, 6):
        feeds = _feeds(rng, batch, emotion)
        feeds["input_latents"] = rng.normal(0, 1, (2, 2, batch, 4)).astype(np.float32)
        out = engine.run(feeds)
        assert out["output_latents"].shape == (2, 2, batch, 4)
        np.testing.assert_array_equal(out["output_latents"], 2 * feeds["input_latents"])
        np.testing.assert_allclose(out["result"], _expected(generated, feeds), rtol=1e-5,
                                   atol=1e-5)  # fmt: skip
    engine.close()


def test_regression_model_sizes_the_profile_for_its_tracks(
    monkeypatch: pytest.MonkeyPatch, generated: GeneratedModel, tmp_path: Path
) -> None:
    """The pipeline asks the engine for tracks x frames per call rows (a power of two, at most
    ``TRT_MAX_BATCH``): the plan is rebuilt once for it and the results do not change."""
    from a2x_core.audio.decode import Audio
    from a2x_core.models.registry import load_model
    from a2x_core.models.regression import TRT_MAX_BATCH, RegressionModel
    from a2x_core.models.regression_folder import load_regression_package
    from a2x_core.options import InferenceOptions

    cuda, fake, onnx, inputs, outputs = _installed_regression_io(monkeypatch, generated)
    engine = trt.TensorRTEngine(onnx, inputs, outputs, cache_dir=tmp_path / "plans")
    assert engine.max_batch == 8  # trt_info.json's default
    model = RegressionModel(load_regression_package(generated.model_json), engine)
    model.postprocess = "numpy"  # on a CUDA host "auto" picks the device stages (other sizing)
    reference = load_model(generated.model_json, backend="onnxruntime", threads=1)
    rng = np.random.default_rng(4)
    tracks = [Audio((0.3 * rng.standard_normal(n)).astype(np.float32)) for n in (9000, 6000, 3000)]
    got = model.animate(tracks, InferenceOptions())
    assert engine.max_batch == 64 and fake.builds == 2  # 3 tracks x 16 frames -> 64
    for a, b in zip(got, reference.animate(tracks, InferenceOptions()), strict=True):
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-5, rtol=0)
        assert a.parameters["engine"] == "tensorrt" and a.parameters["postprocess"] == "numpy"
    pytest.importorskip("torch")
    model.postprocess = reference.postprocess = "cpu"  # device stages (torch on the CPU)
    got = model.animate(tracks, InferenceOptions())
    assert engine.max_batch == TRT_MAX_BATCH and fake.builds == 3
    for a, b in zip(got, reference.animate(tracks, InferenceOptions()), strict=True):
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-5, rtol=0)
    model.animate(tracks[:1], InferenceOptions())
    assert fake.builds == 3  # never shrinks
    engine.close()


def test_declared_capabilities_hold(
    monkeypatch: pytest.MonkeyPatch, generated: GeneratedModel, tmp_path: Path
) -> None:
    """TensorRT declares host arrays on its GPU and a profile that grows (issue 12): run_device
    is refused, ensure_max_batch raises max_batch, and the rebuilt engine keeps its facts."""
    from a2x_core.errors import EngineError

    cuda, fake, onnx, inputs, outputs = _installed_regression_io(monkeypatch, generated)
    engine = trt.TensorRTEngine(onnx, inputs, outputs, max_batch=4, cache_dir=tmp_path / "plans",
                                cuda_graphs=False)  # fmt: skip
    caps = engine.capabilities
    assert (caps.device, caps.on_cuda, caps.device_tensors) == ("cuda:0", True, False)
    assert caps.grows_batch and not caps.cuda_graphs and caps.precisions == trt.PRECISIONS
    assert trt.TensorRTEngine.capabilities.cuda_graphs  # the class default: graphs on
    with pytest.raises(EngineError, match="host arrays only"):
        engine.run_device([])
    engine.ensure_max_batch(12)
    assert engine.max_batch == 12 and engine.capabilities == caps
    feeds = _feeds(np.random.default_rng(5), 12, generated.emotion_weights.shape[0])
    np.testing.assert_allclose(engine.run(feeds)["result"], _expected(generated, feeds),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    engine.close()
