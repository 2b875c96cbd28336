"""Audio2Emotion v2.2 (spec §1.6, §2, §3, §5): loading, windows, post-processing, A2F wiring.

The generated classifier is closed-form (``tests/a2e_folders.py``); every post-processing step
is checked against ``_reference`` (``tests/a2e_folders.py``), an independent float64
transcription of spec §5.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from a2x_core.audio.decode import audio_from_array, decode_audio
from a2x_core.backends import EngineSettings
from a2x_core.errors import ModelError, ModelPackageError, ParameterError
from a2x_core.models.audio2emotion import (
    EmotionModel,
    EmotionPostProcessor,
    emotion_keys,
    validate_post_processing,
)
from a2x_core.models.emotion_input import A2F_EMOTIONS
from a2x_core.models.regression import RegressionModel
from a2x_core.options import InferenceOptions
from tests.a2e_folders import A2E_CONFIG, A2E_EMOTIONS, make_emotion_folder
from tests.a2e_folders import reference_post_processing as _reference
from tests.a2f_folders import make_regression_folder
from tests.conftest import run_cli

CORR = [1, 3, 4, 6, -1, 9]  # angry, disgust, fear, happy, neutral, sad -> A2F index


def _config(**changes: Any) -> Any:
    return validate_post_processing({**A2E_CONFIG, **changes}, A2E_EMOTIONS)


def _run(logits: np.ndarray, dt: float = 1 / 30, **changes: Any) -> tuple[np.ndarray, np.ndarray]:
    cfg = {**A2E_CONFIG, **changes}
    got = EmotionPostProcessor(_config(**changes), dt).run(np.asarray(logits, np.float32))
    return got, _reference(np.asarray(logits, np.float32), cfg, dt)


# ----------------------------------------------------------------------------- post-processing


def test_softmax_contrast_and_neutral_zeroed_first_frame() -> None:
    logits = np.array([[1.0, 0.0, -1.0, 2.0, 5.0, 0.5]])
    got, ref = _run(logits, emotion_contrast=2.0, live_blend_coef=0.0, emotion_strength=1.0)
    e = np.exp(2.0 * (logits[0] - 5.0))
    p = e / e.sum()
    want = np.zeros(10)
    want[[1, 3, 4, 6, 9]] = p[[0, 1, 2, 3, 5]]  # neutral (index 4) is dropped, not renormalised
    np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref[0], want, rtol=1e-12)


def test_max_emotions_keeps_largest_lowest_index_on_ties() -> None:
    logits = np.array([[3.0, 3.0, 1.0, 3.0, 9.0, 2.0]])  # neutral largest, then a 3-way tie
    got, ref = _run(logits, max_emotions=2, live_blend_coef=0.0, emotion_strength=1.0)
    nonzero = np.flatnonzero(got[0])
    assert nonzero.tolist() == [1, 3]  # angry (0) and disgust (1) win the tie over happy (3)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    got3, _ = _run(logits, max_emotions=3, live_blend_coef=0.0, emotion_strength=1.0)
    assert np.flatnonzero(got3[0]).tolist() == [1, 3, 6]


def test_live_blend_with_previous_and_beginning_emotion() -> None:
    logits = np.array([[2.0, 0, 0, 0, 0, 0], [0, 0, 0, 2.0, 0, 0], [0, 0, 0, 0, 0, 1.0]])
    got, ref = _run(logits, transition_smoothing=0.0, emotion_strength=1.0)
    p = [np.exp(r) / np.exp(r).sum() for r in logits]
    first = np.zeros(10)
    first[[1, 3, 4, 6, 9]] = 0.3 * p[0][[0, 1, 2, 3, 5]]  # blended with zeros (beginning)
    second = np.zeros(10)
    second[[1, 3, 4, 6, 9]] = p[1][[0, 1, 2, 3, 5]]
    second = 0.3 * second + 0.7 * first
    np.testing.assert_allclose(got[:2], [first, second], rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_preferred_emotion_blend_and_unmapped_slot_carry() -> None:
    preferred = [0.5, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.8, 0.0, 0.0]
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(12, 6))
    got, ref = _run(logits, enable_preferred_emotion=True, preferred_emotion_strength=0.4,
                    preferred_emotion=preferred, transition_smoothing=0.05)  # fmt: skip
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-7)
    # amazement (0) is unmapped: it starts each frame from the previous final output (spec §5.4)
    assert got[0, 0] == pytest.approx(0.6 * 0.4 * 0.5, rel=1e-6)
    assert got[5, 0] != pytest.approx(got[0, 0])


def test_transition_smoothing_skips_first_frame_and_uses_one_over_fps() -> None:
    logits = np.array([[4.0, 0, 0, 0, 0, 0], [0, 0, 0, 4.0, 0, 0]])
    for fps in (30, 60):
        got, ref = _run(logits, dt=1 / fps, live_blend_coef=0.0, emotion_strength=1.0)
        p0, p1 = (np.exp(r) / np.exp(r).sum() for r in logits)
        a0 = np.zeros(10)
        a0[[1, 3, 4, 6, 9]] = p0[[0, 1, 2, 3, 5]]
        a1 = np.zeros(10)
        a1[[1, 3, 4, 6, 9]] = p1[[0, 1, 2, 3, 5]]
        w = (1 / fps) / 0.5  # fixed_dt 0.033 in the file is ignored
        np.testing.assert_allclose(got[0], a0, rtol=1e-6)  # no smoothing on the first frame
        np.testing.assert_allclose(got[1], w * a1 + (1 - w) * a0, rtol=1e-5)
        np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_strength_caps_output_at_0_6() -> None:
    logits = np.tile([[30.0, 0, 0, 0, 0, 0]], (400, 1))  # one-hot angry for 13 s at 30 fps
    got, ref = _run(logits)
    assert got.max() <= 0.6 + 1e-6
    assert got[-1, 1] == pytest.approx(0.6, abs=1e-4)  # converges to emotion_strength
    assert got[1, 1] < 0.2  # the heavy low-pass (w = 0.067 at 30 fps, spec §8.12)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_emotions", [1, 3, 6])
def test_random_sequences_match_reference(max_emotions: int) -> None:
    rng = np.random.default_rng(max_emotions)
    logits = rng.normal(scale=2.0, size=(90, 6))
    got, ref = _run(logits, dt=1 / 60, max_emotions=max_emotions, emotion_contrast=1.7)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- windows


@pytest.fixture(scope="module")
def a2e(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_emotion_folder(tmp_path_factory.mktemp("a2e") / "audio2emotion-v2.2")


@pytest.fixture(scope="module")
def model(a2e: Any) -> EmotionModel:
    return EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))


def _ramp_audio(seconds: float) -> Any:
    n = int(16000 * seconds)
    t = np.arange(n)
    samples = (0.5 * np.sin(t / 97.0) + 0.4 * (t / n) - 0.2).astype(np.float32)
    return audio_from_array(samples, 16000)


@pytest.mark.parametrize(
    ("fps", "buffer_length", "skip"),
    [(Fraction(30), 60000, 0), (Fraction(60), 30000, 0), (Fraction(30000, 1001), 1001, 0),
     (Fraction(60), 4001, 3)],
)  # fmt: skip
def test_windows_centred_on_first_frame_of_each_group(
    model: EmotionModel, a2e: Any, fps: Fraction, buffer_length: int, skip: int
) -> None:
    audio = _ramp_audio(2.3)
    n = len(audio.samples)
    logits, starts = model.logits(audio, fps, buffer_length=buffer_length, inferences_to_skip=skip)
    frames = (n * fps.numerator - 1) // (16000 * fps.denominator) + 1
    targets = [i * 16000 * fps.denominator // fps.numerator for i in range(frames)]
    assert all(t < n for t in targets) and (frames * 16000 * fps.denominator // fps.numerator) >= n
    want_starts = [t - buffer_length // 2 for t in targets[:: skip + 1]]
    assert starts.tolist() == want_starts
    padded = np.concatenate([np.zeros(buffer_length), audio.samples, np.zeros(buffer_length)])
    windows = np.stack([padded[s + buffer_length : s + 2 * buffer_length] for s in want_starts])
    np.testing.assert_allclose(logits, a2e.network(windows), rtol=1e-4, atol=2e-5)


def test_detect_reuses_logits_for_skipped_frames(model: EmotionModel) -> None:
    audio = _ramp_audio(1.5)
    track = model.detect(audio, 30, buffer_length=16000, inferences_to_skip=2)
    assert track.values.shape == (45, 10) and len(track.logits) == 15
    per_frame = np.repeat(track.logits, 3, axis=0)[:45]
    ref = _reference(per_frame, A2E_CONFIG, 1 / 30)
    np.testing.assert_allclose(track.values, ref, rtol=1e-5, atol=1e-6)
    assert track.targets.tolist() == [i * 1600 // 3 for i in range(45)]
    np.testing.assert_allclose(track.times_s, np.arange(45) / 30)


def test_detect_parameter_errors(model: EmotionModel) -> None:
    audio = _ramp_audio(0.5)
    with pytest.raises(ParameterError, match="more than buffer_length"):
        model.detect(audio, 30, buffer_length=1000, inferences_to_skip=1)  # 1067 > 1000
    with pytest.raises(ParameterError, match="emotion_strength"):
        model.detect(audio, 30, parameters={"emotion_strength": 2.0})
    with pytest.raises(ParameterError, match="unknown Audio2Emotion parameter"):
        model.detect(audio, 30, parameters={"strength": 0.5})
    track = model.detect(audio, 30, parameters={"emotion_strength": 1.0})
    assert track.values.max() > 0.0


# ----------------------------------------------------------------------------- validation


def _edit(folder: Path, name: str, change: Any) -> None:
    path = folder / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _post(key: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["post_processing_config"][key] = value

    return change


def _drop_post(key: str) -> Any:
    return lambda data: data["post_processing_config"].pop(key)


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("model.json", lambda d: d.pop("modelConfigPath"), "key 'modelConfigPath' is missing"),
        ("network_info.json", lambda d: d["audio_params"].update(samplerate=22050),
         "samplerate is 22050, expected 16000"),
        ("network_info.json", lambda d: d.update(emotions=["angry", "angry"]), "duplicates"),
        ("model_config.json", _drop_post("fixed_dt"), "'post_processing_config.fixed_dt' is missing"),
        ("model_config.json", _post("emotion_contrast", float("nan")), "emotion_contrast is NaN"),
        ("model_config.json", _post("live_blend_coef", 1.5), "above its maximum 1.0"),
        ("model_config.json", _post("max_emotions", 0), "max_emotions must be an integer >= 1"),
        ("model_config.json", _post("enable_preferred_emotion", "yes"), "true or false"),
        ("model_config.json", _post("output_emotion_length", 8), "is 8, expected 10"),
        ("model_config.json", _post("preferred_emotion", [0.0] * 9), "has 9 values, expected 10"),
        ("model_config.json", _post("preferred_emotion", [0.0] * 9 + [float("nan")]),
         r"preferred_emotion\[9\] is NaN"),
        ("model_config.json", _post("emotion_correspondence", {**A2E_CONFIG[
            "emotion_correspondence"], "happy": 10}), r"happy is 10, expected an integer in \[-1, 9\]"),
        ("model_config.json", _post("emotion_correspondence", {k: v for k, v in A2E_CONFIG[
            "emotion_correspondence"].items() if k != "sad"}), "expected the network's emotions"),
        ("model_config.json", _post("emotion_correspondence", {**A2E_CONFIG[
            "emotion_correspondence"], "sad": 1}), "two emotions to one A2F index"),
    ],
)  # fmt: skip
def test_validation_names_file_key_and_expectation(
    tmp_path: Path, file: str, change: Any, message: str
) -> None:
    generated = make_emotion_folder(tmp_path / "a2e")
    _edit(generated.folder, file, change)
    with pytest.raises(ModelPackageError, match=message) as info:
        EmotionModel.load(generated.model_json, EngineSettings("onnxruntime"))
    assert file in str(info.value)


def test_missing_files_and_wrong_kind(tmp_path: Path) -> None:
    generated = make_emotion_folder(tmp_path / "a2e")
    (generated.folder / "network.onnx").unlink()
    with pytest.raises(ModelPackageError, match="network.onnx: missing"):
        EmotionModel.load(generated.model_json, EngineSettings("onnxruntime"))
    (generated.folder / "network_info.json").unlink()
    with pytest.raises(ModelPackageError, match="network_info.json: missing"):
        EmotionModel.load(generated.model_json, EngineSettings("onnxruntime"))
    a2f = make_regression_folder(tmp_path / "mark")
    with pytest.raises(ModelError, match="not an Audio2Emotion model"):
        EmotionModel.load(a2f.model_json, EngineSettings("onnxruntime"))


# ----------------------------------------------------------------------------- A2F wiring


@pytest.fixture(scope="module")
def a2f_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("a2f") / "mark"
    make_regression_folder(root, seed=4)
    return root / "model.json"


def test_detected_emotions_drive_regression_model(model: EmotionModel, a2f_json: Path) -> None:
    audio = _ramp_audio(1.2)
    track = model.detect(audio, 60)
    keys = emotion_keys(track)
    assert len(keys) == len(track.values) and set(keys[0][1]) == set(A2F_EMOTIONS)
    regression = RegressionModel.load(a2f_json, EngineSettings("onnxruntime", threads=1))
    (result,) = regression.animate([audio], InferenceOptions(fps=60, emotions=keys))
    order = [A2F_EMOTIONS.index(n) for n in regression.emotion_names]
    np.testing.assert_allclose(result.emotions, track.values[:, order], atol=1e-7)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "line.wav"
    rng = np.random.default_rng(8)
    sf.write(path, 0.3 * rng.standard_normal(int(22050 * 1.1)), 22050)
    return path


def test_cli_emotion_model_end_to_end(
    tmp_path: Path, a2e: Any, a2f_json: Path, clip: Path, model: EmotionModel
) -> None:
    out = tmp_path / "line.json"
    proc = run_cli("animate", str(clip), "--model", str(a2f_json), "--emotion-model",
                   str(a2e.model_json), "--fps", "30", "--backend", "onnxruntime", "-o", str(out),
                   "--emotion-cadence", "per-frame", "-q")  # fmt: skip
    # per-frame: one A2E inference per output frame, as detect(clip, 30) below
    assert proc.returncode == 0, proc.stderr
    block = json.loads(out.read_text())["a2x"]
    emotions = np.array(block["emotions"])
    track = model.detect(decode_audio(clip), 30)
    order = [A2F_EMOTIONS.index(n) for n in block["emotionNames"]]
    np.testing.assert_allclose(emotions, track.values[:, order], atol=1e-6)


def test_cli_emotion_model_needs_an_emotion_input(tmp_path: Path, a2e: Any, clip: Path) -> None:
    proc = run_cli("animate", str(clip), "--emotion-model", str(a2e.model_json), "-q",
                   "-o", str(tmp_path / "b.json"))  # the default model has no emotion input  # fmt: skip
    assert proc.returncode == 2 and "needs a model with an emotion input" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "b.json").exists()


@pytest.mark.shared
def test_cli_real_emotional_speech(
    shared_data: Path, tmp_path: Path, a2e: Any, a2f_json: Path
) -> None:
    clips = sorted((shared_data / "emotional_speech").glob("*/*.wav"))[:2]
    if not clips:
        pytest.skip("no emotional speech clips in ../shared/data/emotional_speech")
    proc = run_cli("animate", *map(str, clips), "--model", str(a2f_json), "--emotion-model",
                   str(a2e.model_json), "--fps", "30", "--backend", "onnxruntime", "--format", "npz",
                   "-o", f"{tmp_path}/", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for path in clips:
        with np.load(tmp_path / f"{path.stem}.npz") as npz:
            emotions = npz["emotions"]
        assert emotions.shape[1] == 10 and 0.0 <= emotions.min() and emotions.max() <= 0.6 + 1e-6


def test_an_emotion_folder_as_model_points_to_emotion_model(tmp_path: Path) -> None:
    from a2x_core.models.registry import load_model

    make_emotion_folder(tmp_path / "a2e")
    with pytest.raises(ModelError, match="--emotion-model"):
        load_model(tmp_path / "a2e" / "model.json")


def test_per_frame_emotion_keys_are_summarised_in_json() -> None:
    from a2x_core.options import InferenceOptions

    keys = tuple((i / 60, {"joy": 0.5}) for i in range(600))
    assert InferenceOptions(emotions=keys).to_json()["emotions"].startswith("600 keys")
    assert InferenceOptions(emotions=keys[:2]).to_json()["emotions"][1] == [1 / 60, {"joy": 0.5}]
