"""Audio2Emotion at the cadence of NVIDIA's sample and Maya-ACE (the default) and per output frame
(``emotion_cadence="per-frame"``), through the API and the CLI.

Real speech (the bundled sample), real generated A2E and A2F folders on ONNX Runtime. The
expected emotions are computed here from the spec alone: the classifier's float64 twin on
windows centred on every 31st frame of a 30 fps grid, spec §5 post-processing per 30 fps frame
(``tests/a2e_folders.py``), then the A2F frames read those keys at their own targets by linear
interpolation (the SDK's EmotionBinder feeding the A2F emotion accumulator).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.audio.decode import decode_audio
from a2x_core.backends import EngineSettings
from a2x_core.errors import ParameterError
from a2x_core.models.audio2emotion import EmotionModel
from a2x_core.models.emotion_input import A2F_EMOTIONS
from a2x_core.options import SDK_EMOTION_FPS, SDK_EMOTION_SKIP, InferenceOptions
from tests.a2e_folders import A2E_CONFIG, make_emotion_folder, reference_post_processing
from tests.a2f_folders import make_regression_folder
from tests.conftest import SAMPLE, run_cli

#: Seconds of the sample animated: longer than the 3.75 s window, so windows see different audio.
END_S = 6.0


@pytest.fixture(scope="module")
def a2e(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_emotion_folder(tmp_path_factory.mktemp("a2e") / "audio2emotion-v2.2")


@pytest.fixture(scope="module")
def a2f_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("a2f") / "mark"
    make_regression_folder(root, seed=7)
    return root / "model.json"


@pytest.fixture(scope="module")
def animator(a2f_json: Path, a2e: Any) -> Animator:
    detector = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))
    options = InferenceOptions(fps=60, end_s=END_S, backend="onnxruntime", threads=1)
    return Animator(a2f_json, options, emotion_model=detector)


@pytest.fixture(scope="module")
def default_run(animator: Animator) -> Any:
    return animator.animate(SAMPLE)


def _cols(result: Any) -> list[int]:
    return [list(result.emotion_names).index(n) for n in A2F_EMOTIONS]


def _sdk_reference(a2e: Any, samples: np.ndarray, fps: Fraction, skip: int) -> tuple[np.ndarray, np.ndarray]:
    """A2E frames of a closed clip at ``fps`` with ``skip``: (targets, values [frames, 10])."""
    n = len(samples)
    step = Fraction(16000) / fps
    count = 0
    while int(count * step) < n:  # every frame whose target is inside the clip
        count += 1
    targets = np.array([int(k * step) for k in range(count)], np.int64)
    padded = np.concatenate([np.zeros(30000), samples.astype(np.float64), np.zeros(30000 + 60000)])
    firsts = targets[:: skip + 1]
    windows = np.stack([padded[t : t + 60000] for t in firsts])  # [t - 30000, t + 30000)
    logits = a2e.network(windows)
    per_frame = np.repeat(logits, skip + 1, axis=0)[:count]
    return targets, reference_post_processing(per_frame, A2E_CONFIG, float(1 / fps))


def test_default_cadence_is_the_sdk_sample(
    animator: Animator, a2e: Any, default_run: Any
) -> None:
    """A2E at 30 fps, one inference per 31 frames, every frame post-processed at dt 1/30; the
    60 fps face reads the 30 fps keys at its own targets (every other frame between two)."""
    assert animator.options.emotion_schedule() == (SDK_EMOTION_FPS, SDK_EMOTION_SKIP) == (30, 30)
    samples = decode_audio(SAMPLE, end_s=END_S).samples
    targets30, values30 = _sdk_reference(a2e, samples, Fraction(30), 30)
    out_targets = (np.arange(default_run.num_frames) * 800) // 3
    want = np.stack([np.interp(out_targets, targets30, values30[:, c]) for c in range(10)], axis=1)
    cols = _cols(default_run)
    np.testing.assert_allclose(default_run.emotions[:, cols], want, atol=2e-6, rtol=0)
    np.testing.assert_allclose(default_run.detected_emotions[:, cols], want, atol=2e-6, rtol=0)
    assert default_run.detected_emotions.shape == (default_run.num_frames, 10)
    # not vacuous: the inferences differ, and odd frames sit between two 30 fps keys
    assert np.abs(np.diff(values30[::31], axis=0)).max() > 1e-3
    assert np.abs(want[1::2] - want[0:-1:2][: len(want[1::2])]).max() > 1e-5
    info = default_run.parameters["audio2emotion"]
    assert (info["cadence"], info["fps"], info["inferences_to_skip"]) == ("sdk", "30/1", 30)


def test_per_frame_cadence_is_the_earlier_default(
    animator: Animator, a2e: Any, default_run: Any
) -> None:
    """``emotion_cadence="per-frame"``: A2E at the output fps, one inference per frame."""
    result = animator.animate(SAMPLE, emotion_cadence="per-frame")
    samples = decode_audio(SAMPLE, end_s=END_S).samples
    _, want = _sdk_reference(a2e, samples, Fraction(60), 0)
    cols = _cols(result)
    np.testing.assert_allclose(result.detected_emotions[:, cols], want, atol=2e-6, rtol=0)
    np.testing.assert_allclose(result.emotions[:, cols], want, atol=2e-6, rtol=0)
    info = result.parameters["audio2emotion"]
    assert (info["cadence"], info["fps"], info["inferences_to_skip"]) == ("per-frame", "60/1", 0)
    assert np.abs(result.emotions - default_run.emotions).max() > 1e-3
    assert np.abs(result.weights - default_run.weights).max() > 1e-5  # the face follows


def test_blend_reads_the_manual_keys_at_the_emotion_frames(animator: Animator, a2e: Any) -> None:
    """"blend" under the SDK cadence: the manual keys are A2E's preferred emotion sampled at each
    30 fps A2E frame (the SDK's preferred-emotion accumulator), then interpolated by the face."""
    keys = ((0.0, {"joy": 0.0}), (4.0, {"joy": 1.0}))
    result = animator.animate(SAMPLE, emotions=keys, emotion_parameters={
        "preferred_emotion_strength": 0.6})  # fmt: skip
    samples = decode_audio(SAMPLE, end_s=END_S).samples
    targets30, _ = _sdk_reference(a2e, samples, Fraction(30), 30)
    preferred = np.zeros((len(targets30), 10))
    joy = A2F_EMOTIONS.index("joy")
    preferred[:, joy] = np.clip(targets30 / 64000, 0.0, 1.0)  # the ramp reaches 1 at 4 s
    padded = np.concatenate([np.zeros(30000), samples.astype(np.float64), np.zeros(90000)])
    firsts = targets30[::31]
    logits = a2e.network(np.stack([padded[t : t + 60000] for t in firsts]))
    cfg = {**A2E_CONFIG, "enable_preferred_emotion": True, "preferred_emotion_strength": 0.6}
    per_frame = np.repeat(logits, 31, axis=0)[: len(targets30)]
    values30 = reference_post_processing(per_frame, cfg, 1 / 30, preferred)
    out_targets = (np.arange(result.num_frames) * 800) // 3
    want = np.stack([np.interp(out_targets, targets30, values30[:, c]) for c in range(10)], axis=1)
    np.testing.assert_allclose(result.emotions[:, _cols(result)], want, atol=2e-6, rtol=0)
    assert want[-1, joy] > want[0, joy] + 0.1  # the manual ramp shows


def test_skip_overrides_the_cadences_own(animator: Animator, a2e: Any) -> None:
    result = animator.animate(SAMPLE, emotion_skip=4)  # sdk cadence: 30 fps, 5 frames a group
    samples = decode_audio(SAMPLE, end_s=END_S).samples
    targets30, values30 = _sdk_reference(a2e, samples, Fraction(30), 4)
    out_targets = (np.arange(result.num_frames) * 800) // 3
    want = np.stack([np.interp(out_targets, targets30, values30[:, c]) for c in range(10)], axis=1)
    np.testing.assert_allclose(result.emotions[:, _cols(result)], want, atol=2e-6, rtol=0)
    assert result.parameters["audio2emotion"]["inferences_to_skip"] == 4


def test_cadence_options_are_checked(animator: Animator) -> None:
    options = InferenceOptions(fps=24)
    assert options.emotion_cadence == "sdk" and options.emotion_skip is None
    assert options.emotion_schedule() == (30, 30)
    assert options.with_changes(emotion_cadence="per-frame").emotion_schedule() == (24, 0)
    assert options.with_changes(emotion_cadence="per-frame", emotion_skip=3).emotion_schedule() == (24, 3)
    assert options.with_changes(emotion_skip=0).emotion_schedule() == (30, 0)
    with pytest.raises(ParameterError, match="emotion_cadence='30fps' is unknown"):
        InferenceOptions(emotion_cadence="30fps")
    with pytest.raises(ParameterError, match="emotion_skip=-2 must be an integer >= 0"):
        InferenceOptions(emotion_skip=-2)
    # the worker's wire form (Blender, Maya) carries both fields
    from a2x_core.worker import options_from_json, options_to_json

    sent = options.with_changes(emotion_cadence="per-frame", emotion_skip=2)
    assert options_from_json(options_to_json(sent)) == sent
    assert options_from_json(options_to_json(options)).emotion_skip is None
    # the sample's skip needs a window of at least one group (16534 samples at 30 fps)
    with pytest.raises(ParameterError, match="emotion_skip=30 at 30 fps advances 16534 samples"):
        animator.animate(SAMPLE, emotion_window=16000)


def test_cli_cadence_flag(tmp_path: Path, animator: Animator, a2f_json: Path, a2e: Any) -> None:
    out = tmp_path / "clip.npz"
    done = run_cli("animate", str(SAMPLE), "--model", str(a2f_json), "--emotion-model",
                   str(a2e.model_json), "--engine", "onnxruntime", "--threads", "1", "--end",
                   str(END_S), "--emotion-cadence", "per-frame", "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    api = animator.animate(SAMPLE, emotion_cadence="per-frame")
    with np.load(out) as data:
        np.testing.assert_array_equal(data["detected_emotions"], api.detected_emotions)
        np.testing.assert_array_equal(data["weights"], api.weights)
    plain = run_cli("animate", str(SAMPLE), "--model", str(a2f_json), "--engine", "onnxruntime",
                    "--end", "1", "--emotion-cadence", "per-frame", "-o", str(tmp_path / "p.json"))  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "--emotion-cadence only applies with an emotion model" in plain.stderr
