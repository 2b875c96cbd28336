"""DefaultLipSyncModel end to end on real speech: the model contract and its guarantees."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from a2x_core.audio.decode import audio_from_array, decode_audio
from a2x_core.errors import CancelledError
from a2x_core.jobs import CancelToken, Progress
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.models.registry import AnimationModel
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from a2x_core.timing import num_frames_for

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SPEECH = SHARED / "data" / "speech_en"
C = {name: i for i, name in enumerate(ARKIT_52)}


@pytest.fixture(scope="module")
def model() -> DefaultLipSyncModel:
    return DefaultLipSyncModel()


def speech(name: str):
    path = SPEECH / name
    if not path.exists():
        pytest.skip("../shared/data/speech_en is absent")
    return decode_audio(path)


def test_implements_the_model_protocol(model: DefaultLipSyncModel) -> None:
    assert isinstance(model, AnimationModel)
    assert (model.name, model.kind, model.emotion_names) == ("default", "default", ())
    info = model.info()
    assert info["version"] == model.version and "rest" in info["visemes"]


def test_silence_is_the_rest_pose(model: DefaultLipSyncModel) -> None:
    audio = audio_from_array(np.zeros(16000, np.float32))
    result = model.animate([audio], InferenceOptions(fps=30, blinks=False))[0]
    assert result.weights.shape == (30, 52)
    # Only the eyes live on in silence (gaze, issue 17 point 3): every other shape rests.
    face = [i for i, name in enumerate(result.names) if not name.startswith("eyeLook")]
    assert np.abs(result.weights[:, face]).max() == 0
    still = model.animate([audio], InferenceOptions(fps=30, blinks=False, head_motion=0))[0]
    assert np.abs(still.weights).max() == 0


def test_transcript_alignment_closes_lips_on_bilabials(model: DefaultLipSyncModel) -> None:
    audio = speech("librispeech_61-70968-0002.wav")  # "A GOLDEN FORTUNE AND A HAPPY LIFE"
    text = "A GOLDEN FORTUNE AND A HAPPY LIFE"
    progress: list[Progress] = []
    result = model.animate(
        [audio], InferenceOptions(fps=Fraction(30000, 1001), transcript=text), progress.append
    )[0]
    assert result.weights.dtype == np.float32
    assert result.weights.shape == (num_frames_for(len(audio.samples), Fraction(30000, 1001)), 52)
    assert 0 <= result.weights.min() and result.weights.max() <= 1
    assert progress[-1].fraction == 1.0
    assert all(a.fraction <= b.fraction for a, b in pairwise(progress))
    labels = list(result.arrays["phone_labels"])
    words = list(result.arrays["phone_words"])
    spoken = [w for i, w in enumerate(words) if w and (i == 0 or words[i - 1] != w)]
    assert spoken == text.lower().split()
    assert "P" in labels and "F" in labels
    times = result.times_s
    for label, start, end in zip(
        labels, result.arrays["phone_start_s"], result.arrays["phone_end_s"], strict=True
    ):
        window = (times >= start - 0.025) & (times <= end + 0.025)
        if label == "P":  # h-a-PP-y
            press = result.weights[window, C["mouthPressLeft"]]
            assert press.max() > 0.5
            assert (
                result.weights[window, C["jawOpen"]] - result.weights[window, C["mouthClose"]]
            ).min() <= 0.05
        if label == "F":  # F-ortune, li-F-e
            assert result.weights[window, C["mouthRollLower"]].max() > 0.3
    assert not result.warnings


def test_repeatable_batchable_and_offset(model: DefaultLipSyncModel) -> None:
    audio = speech("pocketsphinx_goforward.wav")
    options = InferenceOptions(fps=24, seed=5)
    one = model.animate([audio], options)[0]
    both = model.animate([audio, audio], options)
    assert np.array_equal(one.weights, both[0].weights) and np.array_equal(
        one.weights, both[1].weights
    )
    # Recognised (not transcribed) speech exports its phones but no words: the recogniser's
    # words are guesses (invented English words for other languages).
    assert "G" in set(one.arrays["phone_labels"]) and not any(one.arrays["phone_words"])
    blink = one.weights[:, C["eyeBlinkLeft"]]
    other = model.animate([audio], options.with_changes(seed=6))[0].weights[:, C["eyeBlinkLeft"]]
    assert not np.array_equal(blink, other) or blink.max() == 0
    no_blinks = model.animate([audio], options.with_changes(blinks=False))[0]
    assert no_blinks.weights[:, C["eyeBlinkLeft"]].max() == 0
    cut = decode_audio(SPEECH / "pocketsphinx_goforward.wav", start_s=0.5)
    assert model.animate([cut], options)[0].start_s == pytest.approx(0.5)


@pytest.mark.slow
def test_long_clips_split_across_processes_and_fast_mode(model: DefaultLipSyncModel) -> None:
    audio = speech("whisper_jfk.flac")  # 11 s: decoded in two worker processes
    full = model.animate([audio], InferenceOptions(fps=30))[0]
    fast = model.animate([audio], InferenceOptions(fps=30, fast=True))[0]
    single = model.animate([audio], InferenceOptions(fps=30, threads=1))[0]
    for result in (full, fast, single):
        assert result.weights.shape == (num_frames_for(len(audio.samples), Fraction(30)), 52)
        assert result.weights[:, C["mouthPressLeft"]].max() > 0.5
        assert result.weights[:, C["jawOpen"]].max() > 0.3
    assert sum(label == "M" for label in full.arrays["phone_labels"]) >= 1


def test_cancel_stops_between_units(model: DefaultLipSyncModel) -> None:
    token = CancelToken()
    token.cancel()
    audio = audio_from_array(np.zeros(16000, np.float32))
    with pytest.raises(CancelledError):
        model.animate([audio], InferenceOptions(), cancel=token)


def test_a_wrong_word_in_the_transcript_warns_but_animates(model: DefaultLipSyncModel) -> None:
    audio = speech("pocketsphinx_goforward.wav")
    result = model.animate([audio], InferenceOptions(transcript="go forward ten zmeterz"))[0]
    assert any("zmeterz" in w for w in result.warnings)
    assert result.weights.shape[0] == num_frames_for(len(audio.samples), Fraction(60))


def test_an_unrelated_transcript_is_flagged(model: DefaultLipSyncModel) -> None:
    audio = speech("whisper_jfk.flac")
    result = model.animate([audio], InferenceOptions(fps=30, transcript="hello world"))[0]
    assert any("check that the transcript matches" in w for w in result.warnings)


def test_noise_is_not_speech(model: DefaultLipSyncModel) -> None:
    noise = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.05
    result = model.animate([audio_from_array(noise)], InferenceOptions(fps=30, blinks=False))[0]
    assert result.curve("jawOpen").max() < 0.05


def test_clips_shorter_than_the_smoothing_windows(model: DefaultLipSyncModel) -> None:
    audio = speech("whisper_jfk.flac")
    tiny = audio_from_array(audio.samples[16000:16800])  # 50 ms of speech
    for options in (
        InferenceOptions(),
        InferenceOptions(fps=1000),
        InferenceOptions(transcript="?!"),
    ):
        result = model.animate([tiny], options)[0]
        assert result.weights.shape == (num_frames_for(800, options.fps), 52)
