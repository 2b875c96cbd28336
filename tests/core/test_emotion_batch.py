"""Audio2Emotion batched (issue 12): several clips' detection in shared network calls, and each
clip's emotions fed to the face model as its own rows (``track_emotions``), so that a run with
an emotion model is one batched ``model.animate``; the results equal the clip-by-clip run.

Real generated A2E, regression and diffusion folders on ONNX Runtime; real audio files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from a2x_core.api import Animator
from a2x_core.audio.decode import decode_audio
from a2x_core.backends import EngineSettings
from a2x_core.errors import ParameterError
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.models.audio2emotion import EmotionModel, emotion_keys
from a2x_core.models.registry import load_model
from a2x_core.models.regression import RegressionModel
from a2x_core.options import InferenceOptions
from tests.a2e_folders import make_emotion_folder
from tests.a2f_folders import make_regression_folder
from tests.conftest import SAMPLE
from tests.diffusion_folders import make_diffusion_folder

RAMP = ((0.0, {"joy": 0.0}), (0.6, {"joy": 1.0, "anger": 0.5}))


@pytest.fixture(scope="module")
def a2e(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_emotion_folder(tmp_path_factory.mktemp("a2e") / "audio2emotion-v2.2")


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> RegressionModel:
    root = tmp_path_factory.mktemp("a2f") / "mark"
    make_regression_folder(root, seed=5)
    model = load_model(root / "model.json", backend="onnxruntime", threads=1)
    assert isinstance(model, RegressionModel)
    return model


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three pieces of real speech of different lengths, as files."""
    folder = tmp_path_factory.mktemp("clips")
    speech, rate = sf.read(str(SAMPLE), dtype="float32")
    paths = []
    for i, (start, seconds) in enumerate(((0.4, 2.3), (3.0, 1.1), (5.0, 3.2))):
        path = folder / f"line{i}.wav"
        sf.write(path, speech[int(start * rate) : int((start + seconds) * rate)], rate)
        paths.append(path)
    return paths


class _CountingEngine:
    """A real engine, counting the windows of each network call (no result changed)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(len(feeds["input_values"]))
        return self._engine.run(feeds)


class _CountingModel:
    """A real face model, recording each ``animate`` call's track count (no result changed)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.calls: list[tuple[int, bool]] = []  # (tracks, with track_emotions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def animate(self, tracks, options, progress=None, cancel=None, **keywords):  # noqa: ANN001, ANN201
        self.calls.append((len(tracks), keywords.get("track_emotions") is not None))
        return self._model.animate(tracks, options, progress, cancel, **keywords)


@pytest.mark.parametrize(("fps", "skip", "window"), [(60, 1, 16000), (30, 30, 60000)])
def test_detect_many_shares_calls_and_equals_detect(
    a2e: Any, clips: list[Path], fps: int, skip: int, window: int
) -> None:
    model = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))
    counting = _CountingEngine(model.engine(window))
    model._engines[window] = counting
    audios = [decode_audio(p) for p in clips]
    singles = [model.detect(a, fps, buffer_length=window, inferences_to_skip=skip) for a in audios]
    alone = list(counting.calls)
    counting.calls.clear()
    together = model.detect_many(audios, fps, buffer_length=window, inferences_to_skip=skip)
    for one, many, audio in zip(singles, together, audios, strict=True):
        assert np.array_equal(one.values, many.values)
        assert np.array_equal(one.logits, many.logits)
        assert np.array_equal(one.targets, many.targets)
        assert many.start_s == audio.start_s
    total = sum(len(t.logits) for t in singles)
    assert sum(counting.calls) == total and max(counting.calls) <= 32
    if total <= 32:  # the SDK cadence: a few windows per clip, every clip in one call
        assert counting.calls == [total] and len(alone) == len(clips)
    else:  # full calls, a clip's tail packed with the next clip's windows
        assert len(counting.calls) <= len(alone) and max(counting.calls) == 32
    assert model.detect_many([], fps) == []


def _one_by_one(animator: Animator, paths: list[Path], opts: InferenceOptions) -> list[Any]:
    """The loop a2x ran before: detect, mix and animate each clip alone, its keys as options."""
    detector = animator.emotion_model
    assert detector is not None
    fps, skip = opts.emotion_schedule()
    results = []
    for path in paths:
        audio = decode_audio(path)
        found = detector.detect(audio, fps, buffer_length=opts.emotion_window,
                                inferences_to_skip=skip)  # fmt: skip
        keys = emotion_keys(detector.mix(found, opts.emotions, opts.emotion_mix))
        (result,) = animator.model.animate([audio], opts.with_changes(emotions=keys))
        results.append(result)
    return results


@pytest.mark.parametrize("mix", ["blend", "override"])
def test_an_emotion_run_is_one_batched_animate_equal_to_clip_by_clip(
    a2e: Any, regression: RegressionModel, clips: list[Path], mix: str
) -> None:
    detector = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))
    counting = _CountingModel(regression)
    options = InferenceOptions(fps=30, emotions=RAMP, emotion_mix=mix, backend="onnxruntime",
                               threads=1)  # fmt: skip
    animator = Animator(counting, options, emotion_model=detector)  # type: ignore[arg-type]
    batch = animator.animate_many(clips)
    assert counting.calls == [(3, True)]  # one call, every clip, each with its own rows
    counting.calls.clear()
    for got, want in zip(batch, _one_by_one(animator, clips, options), strict=True):
        for name in ("weights", "tongue_weights", "jaw_transforms", "eye_rotations", "emotions"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
        assert got.options == options  # the caller's options, not per-frame keys
        assert got.detected_emotions is not None and got.detected_emotions.shape == (
            got.num_frames, 10)  # fmt: skip
    assert np.abs(batch[0].emotions[-1] - batch[2].emotions[-1]).max() > 1e-3  # own emotions


def test_track_emotions_replace_the_options_keys_per_track(
    regression: RegressionModel, clips: list[Path]
) -> None:
    audios = [decode_audio(p) for p in clips]
    options = InferenceOptions(fps=24, emotions=((0.0, {"grief": 0.4}),))
    keys = [RAMP, (), ((0.2, {"anger": 1.0}), (1.0, {"fear": 0.5}))]
    batch = regression.animate(audios, options, track_emotions=keys)
    for audio, track_keys, got in zip(audios, keys, batch, strict=True):
        (alone,) = regression.animate([audio], options.with_changes(emotions=track_keys))
        assert np.array_equal(got.weights, alone.weights)
        assert np.array_equal(got.emotions, alone.emotions)
    assert not batch[1].emotions.any()  # () = no keys: the model's default emotion (zeros)
    assert np.array_equal(regression.animate(audios[:1], options, track_emotions=None)[0].emotions,
                          regression.animate(audios[:1], options)[0].emotions)  # fmt: skip


@pytest.mark.parametrize(
    ("track_emotions", "message"),
    [
        ([RAMP], "has 1 entries for 2 tracks"),
        ("joy", "must be a sequence of emotion keys per track"),
        ([RAMP, [(0.0,)]], r"track_emotions\[1\] has the key"),
        ([RAMP, {"joy": 1.0}], r"track_emotions\[1\] must be a sequence"),
        ([RAMP, ((0.0, {"glee": 1.0}),)], "glee"),
    ],
)
def test_bad_track_emotions_are_refused(
    regression: RegressionModel, clips: list[Path], track_emotions: Any, message: str
) -> None:
    audios = [decode_audio(p) for p in clips[:2]]
    with pytest.raises(ParameterError, match=message):
        regression.animate(audios, InferenceOptions(), track_emotions=track_emotions)


def test_the_default_model_refuses_emotion_rows(clips: list[Path]) -> None:
    audio = decode_audio(clips[1])
    with pytest.raises(ParameterError, match="takes no emotion input"):
        DefaultLipSyncModel().animate([audio], InferenceOptions(), track_emotions=[RAMP])


def test_a_diffusion_run_with_an_emotion_model_equals_clip_by_clip(
    tmp_path: Path, a2e: Any, clips: list[Path]
) -> None:
    """Diffusion too: one batched ``animate`` with ``track_emotions``."""
    generated = make_diffusion_folder(tmp_path / "diffusion")
    detector = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))
    options = InferenceOptions(fps=30, emotions=RAMP, backend="onnxruntime", threads=1)
    animator = Animator(generated.model_json, options, emotion_model=detector)
    batch = animator.animate_many(clips[:2])
    for got, want in zip(batch, _one_by_one(animator, clips[:2], options), strict=True):
        assert np.array_equal(got.weights, want.weights)
        assert np.array_equal(got.emotions, want.emotions)
