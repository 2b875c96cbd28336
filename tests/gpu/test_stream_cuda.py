"""Streams on the CUDA path (torch engine on the GPU, the stages after the network batched there
in one growable DevicePipeline) equal the CUDA offline run (skipped without torch or a GPU)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from a2x_core.audio.decode import Audio  # noqa: E402
from a2x_core.models.registry import load_model  # noqa: E402
from a2x_core.models.regression import RegressionModel  # noqa: E402
from a2x_core.options import InferenceOptions  # noqa: E402
from tests.a2f_folders import make_regression_folder  # noqa: E402
from tests.core.test_stream_regression import (  # noqa: E402
    KEYS,
    _assert_same_frames,
    _chunk_sizes,
    _push_in_chunks,
    speech,  # noqa: F401  (fixture)
)


@pytest.fixture(scope="module")
def gpu_model(tmp_path_factory: pytest.TempPathFactory) -> RegressionModel:
    folder = make_regression_folder(tmp_path_factory.mktemp("cuda_stream") / "model", seed=7)
    model = load_model(folder.model_json, backend="torch", device="cuda")
    assert isinstance(model, RegressionModel) and model.postprocess_device() == "cuda"
    return model


@pytest.mark.parametrize(
    "fps", [Fraction(24), Fraction(30), Fraction(60), Fraction(30000, 1001)], ids=str
)
def test_cuda_stream_in_random_chunks_equals_the_cuda_offline_run(
    gpu_model: RegressionModel, speech: np.ndarray, fps: Fraction  # noqa: F811
) -> None:
    options = InferenceOptions(fps=fps, emotions=KEYS)
    offline = gpu_model.animate([Audio(speech)], options)[0]
    assert offline.parameters["postprocess"] == "cuda"
    sizes = _chunk_sizes(np.random.default_rng(int(fps * 7)), len(speech), 32000)
    frames, _ = _push_in_chunks(gpu_model.open_stream(options), speech, sizes)
    _assert_same_frames(frames, offline, atol=1e-5)


def test_many_cuda_streams_share_one_executor(
    gpu_model: RegressionModel, speech: np.ndarray  # noqa: F811
) -> None:
    """64 streams at staggered offsets on one executor: one network call and one device chain
    step per group per tick; each equals its own offline run."""
    options = InferenceOptions(fps=60)
    clips = [np.roll(speech, 997 * k)[: 16000 + 250 * k] for k in range(64)]
    offline = gpu_model.animate([Audio(c) for c in clips], options)
    executor = gpu_model.stream_executor()
    streams = [gpu_model.open_stream(options, executor=executor) for _ in clips]
    got: list[list] = [[] for _ in clips]
    at = 0
    while any(not s.closed for s in streams):
        for k, s in enumerate(streams):
            if not s.closed:
                s.feed(clips[k][at : at + 320])
        executor.run_ready()
        at += 320
        for k, s in enumerate(streams):
            if s.closed:
                continue
            got[k] += s.pull()
            if at >= len(clips[k]):
                got[k] += s.close()
    for frames, want in zip(got, offline, strict=True):
        _assert_same_frames(frames, want, atol=1e-5)
