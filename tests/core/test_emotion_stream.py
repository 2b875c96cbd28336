"""A face stream driven by an Audio2Emotion stream (``EmotionDrivenStream``, the streaming
``--emotion-model``): real speech pushed in random chunks gives ``Animator``'s offline frames
with the same emotion model, on a regression and a diffusion model; frames wait for their
emotion keys; bounded memory; typed refusals."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.audio.decode import decode_audio
from a2x_core.errors import ParameterError
from a2x_core.executor.emotion_stream import EmotionDrivenStream
from a2x_core.models.audio2emotion import EmotionModel
from a2x_core.models.registry import load_model
from a2x_core.options import InferenceOptions
from tests.a2e_folders import make_emotion_folder
from tests.a2f_folders import make_regression_folder
from tests.conftest import SAMPLE
from tests.core.test_stream_regression import _assert_same_frames, _chunk_sizes, _push_in_chunks
from tests.diffusion_folders import make_diffusion_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("emotion_stream")
    return {
        "regression": make_regression_folder(root / "regression", seed=5).model_json,
        "diffusion": make_diffusion_folder(root / "diffusion").model_json,
        "a2e": make_emotion_folder(root / "a2e").model_json,
    }


@pytest.fixture(scope="module")
def speech():
    return decode_audio(SAMPLE, end_s=4.5)


@pytest.mark.parametrize(("kind", "fps", "cadence"), [
    ("regression", Fraction(30), "sdk"), ("regression", Fraction(30000, 1001), "per-frame"),
    ("diffusion", Fraction(24), "sdk"),
])  # fmt: skip
def test_streamed_frames_equal_the_offline_emotion_run(
    folders: dict[str, Path], speech, kind: str, fps: Fraction, cadence: str
) -> None:
    model = load_model(folders[kind], backend="onnxruntime", threads=1)
    emotion_model = EmotionModel.load(folders["a2e"])
    options = InferenceOptions(fps=fps, emotion_cadence=cadence)
    offline = Animator(model, options, emotion_model=emotion_model).animate(speech)
    stream = EmotionDrivenStream(model, emotion_model, options)
    rng = np.random.default_rng(7)
    sizes = _chunk_sizes(rng, len(speech.samples), 32000)
    frames, progress = _push_in_chunks(stream, speech.samples, sizes)
    _assert_same_frames(frames, offline, atol=1e-5)
    # the emotions really drive the face: they vary over the clip
    assert np.ptp(offline.emotions, axis=0).max() > 0.01
    # no frame comes out before its own audio and (one inference per frame) its emotion
    # window have arrived; with skipped inferences a key holds for the frames it covers
    look = stream.lookahead_samples if cadence == "per-frame" else stream.face.lookahead_samples
    for received, count in progress:
        assert count <= max(0, (received - look) * fps // 16000 + 1)
    assert stream.buffered_samples == 0 and stream.closed


def test_memory_stays_bounded_on_a_long_stream(folders: dict[str, Path]) -> None:
    model = load_model(folders["regression"], backend="onnxruntime", threads=1)
    stream = EmotionDrivenStream(model, EmotionModel.load(folders["a2e"]),
                                 InferenceOptions(fps=30))  # fmt: skip
    rng = np.random.default_rng(1)
    held = []
    for _ in range(60):  # one minute of noise in 1 s pushes
        stream.push(rng.normal(0, 0.1, 16000).astype(np.float32))
        held.append((stream.buffered_samples, len(stream._key_times)))
    assert max(h for h, _ in held[30:]) <= max(h for h, _ in held[:30]) + 16000
    assert max(k for _, k in held[30:]) <= max(k for _, k in held[:30]) + 30
    stream.cancel()


def test_refusals_name_the_fix(folders: dict[str, Path]) -> None:
    emotion_model = EmotionModel.load(folders["a2e"])
    with pytest.raises(ParameterError, match="emotion input"):
        EmotionDrivenStream(load_model("default"), emotion_model, InferenceOptions())
    model = load_model(folders["regression"], backend="onnxruntime", threads=1)
    with pytest.raises(ParameterError, match="--emotion"):
        EmotionDrivenStream(model, emotion_model,
                            InferenceOptions(emotions=((0.0, {"joy": 1.0}),)))  # fmt: skip
