"""Detected (Audio2Emotion) and manual emotions together, through the API and the CLI.

Real generated A2E and A2F folders on ONNX Runtime. "blend" is checked against the float64
transcription of spec §5 (``tests/a2e_folders.py``) fed a per-frame preferred emotion, and step
6 alone against a hand computation; "override" against the manual curve and the plain detection.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from a2x_core.api import Animator, animate
from a2x_core.audio.decode import decode_audio
from a2x_core.backends import EngineSettings
from a2x_core.errors import CancelledError, EngineError, ParameterError
from a2x_core.jobs import CancelToken, Progress
from a2x_core.models.audio2emotion import (
    EmotionModel,
    EmotionPostProcessor,
    validate_post_processing,
)
from a2x_core.models.emotion_input import A2F_EMOTIONS
from a2x_core.options import MAX_EMOTION_WINDOW, InferenceOptions
from tests.a2e_folders import (
    A2E_CONFIG,
    A2E_EMOTIONS,
    make_emotion_folder,
    reference_post_processing,
)
from tests.a2f_folders import make_regression_folder
from tests.conftest import run_cli

JOY, ANGER, SADNESS = (A2F_EMOTIONS.index(n) for n in ("joy", "anger", "sadness"))
#: Manual keys used throughout: joy ramps 0 -> 1 over 0.6 s, anger only in the second key.
RAMP = ((0.0, {"joy": 0.0}), (0.6, {"joy": 1.0, "anger": 0.5}))
RAMP_FLAGS = ("--emotion", "0:joy=0", "--emotion", "0.6:joy=1,anger=0.5")


@pytest.fixture(scope="module")
def a2e(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_emotion_folder(tmp_path_factory.mktemp("a2e") / "audio2emotion-v2.2")


@pytest.fixture(scope="module")
def a2f_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("a2f") / "mark"
    make_regression_folder(root, seed=6)
    return root / "model.json"


@pytest.fixture(scope="module")
def detector(a2e: Any) -> EmotionModel:
    return EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))


@pytest.fixture(scope="module")
def animator(a2f_json: Path, detector: EmotionModel) -> Animator:
    # A2E once per output frame, as these tests' references compute it (the SDK cadence, the
    # default: tests/core/test_emotion_cadence.py)
    options = InferenceOptions(fps=30, backend="onnxruntime", threads=1, emotion_cadence="per-frame")
    return Animator(a2f_json, options, emotion_model=detector)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(11)
    paths = []
    for i, seconds in enumerate((1.1, 0.7)):
        path = folder / f"line{i}.wav"
        t = np.arange(int(22050 * seconds)) / 22050
        loud = 0.05 + 0.25 * (t / seconds)  # rising energy: the detected emotions move
        sf.write(path, loud * rng.standard_normal(len(t)), 22050)
        paths.append(path)
    return paths


def _cols(result: Any) -> list[int]:
    """Columns of a result's emotion arrays in A2F_EMOTIONS order."""
    return [list(result.emotion_names).index(n) for n in A2F_EMOTIONS]


def _manual_ramp(targets: np.ndarray) -> np.ndarray:
    """RAMP sampled at target samples, float64, independent of a2x's curve code."""
    out = np.zeros((len(targets), 10))
    ramp = np.clip(targets / (0.6 * 16000), 0.0, 1.0)
    out[:, JOY] = ramp
    out[:, ANGER] = 0.5 * ramp  # unset in the first key = 0
    return out


# ----------------------------------------------------------------------------- step 6


def test_constant_preferred_array_gives_todays_numbers() -> None:
    preferred = [0.5, 0.0, 0.2, 0.0, 0.0, 0.0, 0.7, 0.0, 0.0, 0.1]
    config = validate_post_processing(
        {**A2E_CONFIG, "enable_preferred_emotion": True, "preferred_emotion": preferred},
        A2E_EMOTIONS,
    )
    logits = np.random.default_rng(3).normal(size=(40, 6)).astype(np.float32)
    today = EmotionPostProcessor(config, 1 / 30).run(logits)
    constant = np.tile(np.float32(preferred), (40, 1))
    assert np.array_equal(EmotionPostProcessor(config, 1 / 30).run(logits, constant), today)
    with pytest.raises(ParameterError, match="one row per frame"):
        EmotionPostProcessor(config, 1 / 30).run(logits, constant[:3])


def test_per_frame_preferred_is_step_6_by_hand() -> None:
    # live blend, transition smoothing and strength off: the output is step 6 of step 1-4
    cfg = {**A2E_CONFIG, "enable_preferred_emotion": True, "preferred_emotion_strength": 0.25,
           "live_blend_coef": 0.0, "transition_smoothing": 0.0, "emotion_strength": 1.0}  # fmt: skip
    logits = np.array([[2.0, 0, 0, 0, 0, 0], [0, 0, 0, 1.0, 0, 0], [0, 0, 0, 0, 3.0, 1.0]])
    preferred = np.zeros((3, 10), np.float32)
    preferred[:, JOY] = [0.0, 0.4, 1.0]
    preferred[2, 0] = 0.8  # amazement: unmapped by A2E, carried from frame to frame
    got = EmotionPostProcessor(validate_post_processing(cfg, A2E_EMOTIONS), 1 / 30).run(
        logits.astype(np.float32), preferred
    )
    want = []
    previous = np.zeros(10)
    for row, pref in zip(logits, preferred.astype(np.float64), strict=True):
        p = np.exp(row) / np.exp(row).sum()
        a = previous.copy()  # step 4 starts from the previous output (zeros on frame 0)
        a[[1, 3, 4, 6, 9]] = p[[0, 1, 2, 3, 5]]
        a = 0.75 * a + 0.25 * pref
        want.append(a)
        previous = a
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got[2, 0] == pytest.approx(0.25 * 0.8)


# ----------------------------------------------------------------------------- the API


def test_detected_only_equals_detect(animator: Animator, detector: EmotionModel, clips: list[Path]) -> None:
    result = animator.animate(clips[0])
    track = detector.detect(decode_audio(clips[0]), Fraction(30))
    assert np.array_equal(result.detected_emotions[:, _cols(result)], track.values)
    np.testing.assert_allclose(result.emotions[:, _cols(result)], track.values, atol=1e-7)
    assert result.parameters["audio2emotion"]["model"].endswith("model.json")
    assert result.options == animator.options  # the caller's options, not per-frame keys


def test_blend_is_post_processing_with_the_manual_preferred_emotion(
    animator: Animator, detector: EmotionModel, clips: list[Path]
) -> None:
    result = animator.animate(clips[0], emotions=RAMP, emotion_parameters={
        "preferred_emotion_strength": 0.6})  # fmt: skip
    plain = detector.detect(decode_audio(clips[0]), Fraction(30))
    per_frame = plain.logits  # one inference per frame (emotion_skip 0)
    cfg = {**A2E_CONFIG, "enable_preferred_emotion": True, "preferred_emotion_strength": 0.6}
    want = reference_post_processing(per_frame, cfg, 1 / 30, _manual_ramp(plain.targets))
    np.testing.assert_allclose(result.emotions[:, _cols(result)], want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(result.detected_emotions[:, _cols(result)], plain.values)
    # the manual joy pulls joy up: more at the end (joy = 1) than detected
    assert result.emotions[-1, _cols(result)[JOY]] > plain.values[-1, JOY] + 0.1


def test_override_replaces_only_the_named_emotions(
    animator: Animator, detector: EmotionModel, clips: list[Path]
) -> None:
    result = animator.animate(clips[0], emotions=RAMP, emotion_mix="override")
    plain = detector.detect(decode_audio(clips[0]), Fraction(30))
    got = result.emotions[:, _cols(result)]
    manual = _manual_ramp(plain.targets)
    np.testing.assert_allclose(got[:, [JOY, ANGER]], manual[:, [JOY, ANGER]], atol=1e-6)
    others = [i for i in range(10) if i not in (JOY, ANGER)]
    np.testing.assert_allclose(got[:, others], plain.values[:, others], atol=1e-7)
    assert plain.values[:, SADNESS].max() > 0.01  # the detected curves are not trivially zero
    assert np.array_equal(result.detected_emotions[:, _cols(result)], plain.values)


def test_keys_stay_on_the_source_timeline_with_start(
    animator: Animator, detector: EmotionModel, clips: list[Path]
) -> None:
    result = animator.animate(clips[0], emotions=RAMP, emotion_mix="override", start_s=0.25)
    plain = detector.detect(decode_audio(clips[0], start_s=0.25), Fraction(30))
    assert result.start_s == plain.start_s == pytest.approx(0.25, abs=1 / 22050)
    manual = _manual_ramp(plain.targets + plain.start_s * 16000)  # in seconds of the source
    got = result.emotions[:, _cols(result)]
    # keys snap to whole samples of the clip: within 1 sample of the 9600-sample ramp
    np.testing.assert_allclose(got[:, [JOY, ANGER]], manual[:, [JOY, ANGER]], atol=1 / 9600)
    assert got[0, JOY] > 0.4  # the ramp began 0.25 s before the clip
    assert np.array_equal(result.detected_emotions[:, _cols(result)], plain.values)


def test_manual_emotions_without_an_emotion_model_are_unchanged(
    a2f_json: Path, animator: Animator, clips: list[Path]
) -> None:
    plain = Animator(animator.model, animator.options.with_changes(emotion_cadence="sdk"))
    result = plain.animate(clips[1], emotions=RAMP, emotion_mix="override")
    assert result.detected_emotions is None and "audio2emotion" not in result.parameters
    targets = np.arange(result.num_frames) * 16000 // 30
    np.testing.assert_allclose(result.emotions[:, _cols(result)], _manual_ramp(targets), atol=1e-6)
    assert any("--emotion-mix only applies with an emotion model" in w for w in result.warnings)


def test_batch_equals_single_clips_and_one_call_animate(
    animator: Animator, a2f_json: Path, a2e: Any, clips: list[Path]
) -> None:
    batch = animator.animate_many(clips, emotions=RAMP)
    for clip, result in zip(clips, batch, strict=True):
        single = animator.animate(clip, emotions=RAMP)
        assert np.array_equal(result.emotions, single.emotions)
        assert np.array_equal(result.weights, single.weights)
    once = animate(clips[1], a2f_json, emotion_model=a2e.model_json, fps=30, emotions=RAMP,
                   backend="onnxruntime", threads=1)  # fmt: skip
    assert np.array_equal(once.weights, batch[1].weights)
    assert np.array_equal(once.detected_emotions, batch[1].detected_emotions)


def test_progress_and_cancel(animator: Animator, clips: list[Path]) -> None:
    seen: list[Progress] = []
    animator.animate_many(clips, progress=seen.append)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(p.stage == "Audio2Emotion" for p in seen)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        animator.animate_many(clips, cancel=token)


def test_emotion_model_needs_an_emotion_input(a2e: Any, animator: Animator) -> None:
    class Silent:  # a model without an emotion input
        name, version, kind, emotion_names = "silent", "1", "default", ()

    with pytest.raises(ParameterError, match="needs a model with an emotion input"):
        Animator(Silent(), emotion_model=a2e.model_json)  # type: ignore[arg-type]


def test_load_passes_device_and_precision(a2e: Any) -> None:
    with pytest.raises(EngineError, match="fp32 only"):
        EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", precision="tf32"))
    model = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1, device="cpu"))
    assert (model.engine_settings.device, model.engine_settings.precision) == ("cpu", "fp32")


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"emotion_window": 1}, "emotion_window=1 must be an integer"),
        ({"emotion_window": MAX_EMOTION_WINDOW + 1}, "emotion_window="),
        ({"emotion_window": 1.5e4}, "emotion_window=15000.0"),
        ({"emotion_window": True}, "emotion_window=True"),
        ({"emotion_skip": -1}, "emotion_skip=-1 must be an integer >= 0"),
        ({"emotion_skip": 1.0}, "emotion_skip=1.0"),
        ({"emotion_mix": "add"}, "emotion_mix='add' is unknown; use blend or override"),
        ({"emotion_parameters": [1]}, "emotion_parameters must map"),
        ({"emotion_parameters": {"strength": 1}}, "emotion_parameters: unknown Audio2Emotion"),
        ({"emotion_parameters": {"emotion_strength": 2.0}},
         "emotion_parameters.emotion_strength=2.0 is above its maximum 1.0"),
        ({"emotion_parameters": {"live_blend_coef": "x"}},
         "emotion_parameters.live_blend_coef must be a number"),
        ({"identity": ""}, "identity='' must be a non-empty name"),
        ({"identity": 3}, "identity=3"),
    ],
)  # fmt: skip
def test_option_validation(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ParameterError) as error:
        InferenceOptions(**fields)
    assert fragment in str(error.value)


def test_model_checks_name_the_options(animator: Animator, clips: list[Path]) -> None:
    with pytest.raises(ParameterError, match="emotion_skip=2 at 30 fps .* emotion_window=1000"):
        animator.animate(clips[0], emotion_window=1000, emotion_skip=2)
    with pytest.raises(ParameterError, match="emotion_parameters.preferred_emotion has 3 values"):
        animator.animate(clips[0], emotion_parameters={"preferred_emotion": [0, 0, 0]})


def test_options_json_is_short_and_plain() -> None:
    options = InferenceOptions(
        identity="claire", emotion_window=30000, emotion_skip=1, emotion_mix="override",
        emotion_parameters={"preferred_emotion": np.zeros(10, np.float32)},
        emotions=tuple((i / 60, {"joy": 0.5}) for i in range(1000)),
    )  # fmt: skip
    data = json.loads(json.dumps(options.to_json()))
    assert data["emotions"].startswith("1000 keys")
    assert data["emotion_parameters"] == {"preferred_emotion": [0.0] * 10}
    assert (data["identity"], data["emotion_window"], data["emotion_skip"], data["emotion_mix"]) == (
        "claire", 30000, 1, "override")  # fmt: skip


# ----------------------------------------------------------------------------- the CLI


def _cli(clip: Path, out: Path, a2f_json: Path, a2e: Any, *extra: str) -> dict[str, Any]:
    proc = run_cli("animate", str(clip), "--model", str(a2f_json), "--emotion-model",
                   str(a2e.model_json), "--fps", "30", "--backend", "onnxruntime", "--threads", "1",
                   "--emotion-cadence", "per-frame", "-o", str(out), "-q", *extra)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    if out.suffix == ".npz":
        with np.load(out) as data:
            return {k: data[k] for k in data.files}
    return json.loads(out.read_text())["a2x"]


def test_cli_equals_api_and_exports_detected_emotions(
    tmp_path: Path, animator: Animator, a2f_json: Path, a2e: Any, clips: list[Path]
) -> None:
    npz = _cli(clips[0], tmp_path / "a.npz", a2f_json, a2e, *RAMP_FLAGS, "--emotion-param",
               "preferred_emotion_strength=0.6")  # fmt: skip
    block = _cli(clips[0], tmp_path / "a.json", a2f_json, a2e, *RAMP_FLAGS, "--emotion-param",
                 "preferred_emotion_strength=0.6")  # fmt: skip
    api = animator.animate(clips[0], emotions=RAMP, emotion_parameters={
        "preferred_emotion_strength": 0.6})  # fmt: skip
    assert np.array_equal(npz["emotions"], api.emotions)
    assert np.array_equal(npz["detected_emotions"], api.detected_emotions)
    assert np.array_equal(npz["weights"], api.weights)
    assert block["emotionNames"] == list(api.emotion_names)
    np.testing.assert_allclose(block["emotions"], api.emotions, atol=1e-6)
    np.testing.assert_allclose(block["detectedEmotions"], api.detected_emotions, atol=1e-6)
    options = block["options"]
    assert options["emotions"] == [[0.0, {"joy": 0.0}], [0.6, {"joy": 1.0, "anger": 0.5}]]
    assert options["emotion_parameters"] == {"preferred_emotion_strength": 0.6}
    assert block["parameters"]["audio2emotion"]["post_processing_config"][
        "preferred_emotion_strength"] == 0.6  # fmt: skip


def test_cli_window_and_skip_are_detects_arguments(
    tmp_path: Path, detector: EmotionModel, a2f_json: Path, a2e: Any, clips: list[Path]
) -> None:
    npz = _cli(clips[1], tmp_path / "w.npz", a2f_json, a2e, "--emotion-window", "16000",
               "--emotion-skip", "2")  # fmt: skip
    audio = decode_audio(clips[1])
    track = detector.detect(audio, 30, buffer_length=16000, inferences_to_skip=2)
    default = detector.detect(audio, 30)
    cols = [list(npz["emotion_names"]).index(n) for n in A2F_EMOTIONS]
    assert np.array_equal(npz["detected_emotions"][:, cols], track.values)
    assert not np.allclose(track.values, default.values, atol=1e-4)
    np.testing.assert_allclose(npz["emotions"][:, cols], track.values, atol=1e-7)


def test_cli_override_and_no_detected_emotions_without_a_model(
    tmp_path: Path, a2f_json: Path, a2e: Any, clips: list[Path], animator: Animator
) -> None:
    npz = _cli(clips[1], tmp_path / "o.npz", a2f_json, a2e, *RAMP_FLAGS, "--emotion-mix", "override")
    api = animator.animate(clips[1], emotions=RAMP, emotion_mix="override")
    assert np.array_equal(npz["emotions"], api.emotions)
    out = tmp_path / "manual.json"
    proc = run_cli("animate", str(clips[1]), "--model", str(a2f_json), "-o", str(out), "-q",
                   *RAMP_FLAGS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    block = json.loads(out.read_text())["a2x"]
    assert "detectedEmotions" not in block and "emotions" in block


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--emotion-mix", "add"], "invalid choice: 'add'"),
     (["--emotion-param", "emotion_strength"], "--emotion-param 'emotion_strength' is not KEY=VALUE"),
     (["--emotion-param", "emotion_strength=3"], "emotion_parameters.emotion_strength=3"),
     (["--emotion-window", "1"], "emotion_window=1"),
     (["--emotion-skip", "200"], "emotion_skip=200 at 30 fps")],
)  # fmt: skip
def test_cli_emotion_flag_errors(tmp_path: Path, a2f_json: Path, a2e: Any, clips: list[Path],
                                 args: list[str], fragment: str) -> None:  # fmt: skip
    out = tmp_path / "x.json"
    proc = run_cli("animate", str(clips[1]), "--model", str(a2f_json), "--emotion-model",
                   str(a2e.model_json), "--fps", "30", "-o", str(out), *args)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in proc.stderr and not out.exists()
