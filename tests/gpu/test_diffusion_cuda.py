"""The diffusion model on CUDA: the torch engine against ONNX Runtime, the stages after the
network on the GPU against the NumPy stages, and the SDK's cuRAND noise through CuPy (skipped
without a GPU; the cuRAND tests also without CuPy)."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from a2x_core.audio.decode import Audio  # noqa: E402
from a2x_core.models.diffusion_noise import CurandNoise  # noqa: E402
from a2x_core.models.registry import load_model  # noqa: E402
from a2x_core.options import InferenceOptions  # noqa: E402
from tests.diffusion_folders import make_diffusion_folder  # noqa: E402

needs_cupy = pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="needs CuPy")


def _tracks() -> list[Audio]:
    rng = np.random.default_rng(3)
    return [Audio((0.2 * rng.standard_normal(n)).astype(np.float32), path="") for n in (24000, 9000)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_diffusion_folder(tmp_path_factory.mktemp("diffusion") / "model").model_json


@pytest.mark.parametrize("constant", [True, False])
def test_torch_cuda_pipeline_matches_onnxruntime(folder: Path, constant: bool) -> None:
    cpu = load_model(folder, backend="onnxruntime")
    gpu = load_model(folder, backend="torch", device="cuda")
    gpu.postprocess = "numpy"  # the engines alone (the GPU stages: the test below)
    options = InferenceOptions(fps=60, geometry=True, parameters={"constant_noise": constant})
    for want, got in zip(cpu.animate(_tracks(), options), gpu.animate(_tracks(), options),
                         strict=True):  # fmt: skip
        np.testing.assert_allclose(got.arrays["skin_geometry"], want.arrays["skin_geometry"], atol=1e-4)
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-4)


@pytest.mark.parametrize("fps", [60, 24])
def test_gpu_stages_match_the_numpy_stages(folder: Path, fps: int) -> None:
    """The same engine's frames through the NumPy stages and through the GPU stages (auto on
    CUDA): tracks ending in different windows, interpolation at 24 fps, CUDA-graph replays."""
    from tests.core.test_diffusion import _compare_device

    model = load_model(folder, backend="torch", device="cuda")
    assert model.postprocess_device() == "cuda"
    rng = np.random.default_rng(4)
    tracks = [Audio((0.2 * rng.standard_normal(n)).astype(np.float32), path="")
              for n in (24000, 7000, 35000)]  # fmt: skip
    options = InferenceOptions(fps=fps, geometry=True)
    model.postprocess = "numpy"
    ref = model.animate(tracks, options)
    model.postprocess = "auto"
    got = model.animate(tracks, options)
    again = model.animate(tracks, options)
    _compare_device(model, ref, got, "cuda", solve_atol=1e-4)
    for a, b in zip(got, again, strict=True):
        np.testing.assert_allclose(b.weights, a.weights, atol=1e-6, rtol=0)


@needs_cupy
def test_curand_windows_are_the_sdk_sequence() -> None:
    shape = (3, 60, 50)
    size = int(np.prod(shape))
    per_window = CurandNoise(shape, seed=0, constant=False)
    import cupy
    from cupy.cuda import curand

    generator = curand.createGenerator(curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)  # default seed
    sequence = cupy.empty(3 * size, dtype=cupy.float32)
    curand.generateNormal(generator, sequence.data.ptr, 3 * size, 0.0, 1.0)
    sequence = cupy.asnumpy(sequence)
    # inference w continues the one generator's sequence (offset w * size), seed 0 = the default
    for w in (2, 0, 1):
        np.testing.assert_array_equal(per_window.window(w).reshape(-1), sequence[w * size : (w + 1) * size])
    constant = CurandNoise(shape, seed=0, constant=True)
    np.testing.assert_array_equal(constant.window(5), constant.window(0))
    np.testing.assert_array_equal(constant.window(0).reshape(-1), sequence[:size])
    other = CurandNoise(shape, seed=1, constant=True).window(0)
    assert np.abs(other - constant.window(0)).max() > 0.1
    big = CurandNoise((3, 60, 2000), seed=0, constant=True).window(0)
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1) < 0.01


@needs_cupy
def test_curand_noise_runs_the_same_on_both_engines(folder: Path) -> None:
    options = InferenceOptions(fps=60, parameters={"noise_generator": "curand"})
    on_gpu = load_model(folder, backend="torch", device="cuda")
    on_gpu.postprocess = "numpy"  # the same BVLS solves as the CPU run
    gpu = on_gpu.animate(_tracks(), options)
    cpu = load_model(folder, backend="onnxruntime").animate(_tracks(), options)
    numpy_options = InferenceOptions(fps=60, parameters={"noise_generator": "numpy"})
    numpy_noise = load_model(folder, backend="onnxruntime").animate(_tracks(), numpy_options)
    for a, b, c in zip(gpu, cpu, numpy_noise, strict=True):
        assert a.parameters["noise_generator"] == "curand"
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-4)
        assert np.abs(b.weights - c.weights).max() > 1e-4  # another generator, other noise


@needs_cupy
def test_default_noise_is_the_sdk_curand_stream_on_a_gpu(folder: Path) -> None:
    """``noise_generator="auto"`` (the default) picks cuRAND where CuPy and a CUDA device are:
    the same frames as ``curand`` asked for by name, other than NumPy's, and recorded."""
    from a2x_core.models.diffusion_noise import curand_available, noise_source, resolve_generator

    assert curand_available() and resolve_generator("auto") == "curand"
    assert isinstance(noise_source("auto", (3, 60, 50), 0, True), CurandNoise)
    model = load_model(folder, backend="onnxruntime")
    default = model.animate(_tracks(), InferenceOptions(fps=60))
    named = model.animate(_tracks(), InferenceOptions(fps=60, parameters={"noise_generator": "curand"}))
    numpy_noise = model.animate(_tracks(), InferenceOptions(fps=60, parameters={"noise_generator": "numpy"}))
    for a, b, c in zip(default, named, numpy_noise, strict=True):
        assert a.parameters["noise_generator"] == "curand" and c.parameters["noise_generator"] == "numpy"
        np.testing.assert_array_equal(a.weights, b.weights)
        assert np.abs(a.weights - c.weights).max() > 1e-4


@pytest.mark.parametrize(
    ("fps", "stages"), [(60, "numpy"), (24, "numpy"), (60, "cuda"), (24, "cuda"), (30, "cuda"),
                        (Fraction(30000, 1001), "cuda")],  # fmt: skip
)
def test_streams_on_the_cuda_torch_engine_equal_the_offline_run(
    folder: Path, fps: int | Fraction, stages: str
) -> None:
    """Two streams on one executor, the network on CUDA and the stages after it with NumPy or
    on CUDA (one growable DevicePipeline), one joining a window later with per-window noise:
    each equals its offline run with the same stages."""
    from a2x_core.models.diffusion import DiffusionModel

    model = load_model(folder, backend="torch", device="cuda")
    assert isinstance(model, DiffusionModel)
    model.postprocess = stages
    options = [InferenceOptions(fps=fps, parameters={"constant_noise": False, "noise_generator": "numpy"}),
               InferenceOptions(fps=fps, seed=4, parameters={"noise_generator": "numpy"})]  # fmt: skip
    clips = _tracks()
    offline = [model.animate([clip], o)[0] for clip, o in zip(clips, options, strict=True)]
    executor = model.stream_executor()
    first = model.open_stream(options[0], executor=executor)
    got = [first.push(clips[0].samples[:9000]), []]
    second = model.open_stream(options[1], executor=executor)
    rest = clips[0].samples[9000:]
    for at in range(0, max(len(rest), len(clips[1].samples)), 3000):
        second.feed(clips[1].samples[at : at + 3000])
        got[0] += first.push(rest[at : at + 3000])
        got[1] += second.pull()
    got[0] += first.close()
    got[1] += second.close()
    for frames, want in zip(got, offline, strict=True):
        assert [f.index for f in frames] == list(range(want.num_frames))
        np.testing.assert_allclose(np.stack([f.weights for f in frames]), want.weights, atol=1e-5)
        np.testing.assert_allclose(np.stack([f.jaw_transform for f in frames]), want.jaw_transforms,
                                   atol=1e-5)  # fmt: skip
