"""Streaming on the embedded default model (issue 12 point 4): real speech pushed in random
chunks gives the same frames however it is cut, as many as offline, each out no later than the
stated look-ahead after its time, with typed errors, cancel and bounded memory."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import numpy as np
import pytest

from a2x_core.audio.accumulator import StreamFrame
from a2x_core.audio.decode import audio_from_array, decode_audio
from a2x_core.errors import AudioInvalidSamplesError, CancelledError, ParameterError
from a2x_core.lipsync import stream as ds
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from a2x_core.timing import SAMPLE_RATE, frame_targets, num_frames_for
from tests.conftest import SAMPLE, SHARED

JAW = ARKIT_52.index("jawOpen")


@pytest.fixture(scope="module")
def model() -> DefaultLipSyncModel:
    return DefaultLipSyncModel()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A TIMIT sentence (2.9 s, 16 kHz): "She had your dark suit in greasy wash water..."."""
    clip = SHARED / "data" / "speech_en" / "timit_sample_LDC93S1.wav"
    if not clip.is_file():
        pytest.skip("../shared/data is absent")
    return decode_audio(clip).samples


def _chunk_sizes(seed: int, total: int, longest: int = 2 * SAMPLE_RATE) -> list[int]:
    """Seeded chunk sizes from 1 sample to ``longest`` (log-uniform), adding up to ``total``."""
    rng = np.random.default_rng(seed)
    sizes = [1, 1, 2]
    while sum(sizes) < total:
        sizes.append(int(np.exp(rng.uniform(0.0, np.log(longest)))))
    sizes[-1] -= sum(sizes) - total
    return [s for s in sizes if s > 0]


def _stream(
    model: DefaultLipSyncModel, samples: np.ndarray, sizes: list[int], options: InferenceOptions,
    trace: list | None = None,
) -> tuple[list[StreamFrame], list[tuple[int, int, list[StreamFrame]]]]:
    """All frames, and (samples received before, after, frames returned) for every push;
    ``trace``: a list to receive the stream's trace."""
    stream = model.open_stream(options)
    stream.trace = trace
    pushes, frames, at = [], [], 0
    for size in sizes:
        before = stream.samples_received
        out = stream.push(samples[at : at + size])
        at += size
        pushes.append((before, stream.samples_received, out))
        frames += out
    frames += stream.close()
    return frames, pushes


@pytest.mark.parametrize("fps", [Fraction(60), Fraction(30000, 1001)])
def test_chunking_never_changes_the_frames_and_each_is_out_within_the_lookahead(
    model: DefaultLipSyncModel, speech: np.ndarray, fps: Fraction
) -> None:
    options = InferenceOptions(fps=fps, seed=3)
    speech = speech[: 2 * SAMPLE_RATE]  # "She had your dark suit": enough, and fast
    steady, _ = _stream(model, speech, [320] * (len(speech) // 320 + 1), options)
    frames, pushes = _stream(model, speech, _chunk_sizes(11, len(speech)), options)
    count = num_frames_for(len(speech), fps)
    assert [f.index for f in frames] == list(range(count))  # the offline count, in order
    assert [f.time_s for f in frames] == pytest.approx([k / fps for k in range(count)])
    # The stream works in fixed 20 ms steps: how the audio is cut changes nothing.
    np.testing.assert_array_equal(
        np.stack([f.weights for f in frames]), np.stack([f.weights for f in steady])
    )
    targets = frame_targets(count, fps)
    for before, after, out in pushes:
        for frame in out:
            target = int(targets[frame.index])
            # not before the audio up to t + COMMIT arrived, and not after t + LOOKAHEAD had
            assert after >= target + ds.COMMIT_SAMPLES
            assert before < target + ds.LOOKAHEAD_SAMPLES
    assert model.stream_lookahead_s == ds.LOOKAHEAD_SAMPLES / SAMPLE_RATE <= 0.3
    frame = frames[0]
    assert frame.weights.shape == (52,) and frame.weights.dtype == np.float32
    np.testing.assert_array_equal(frame.jaw_transform, np.eye(4, dtype=np.float32))
    assert not frame.tongue_weights.any() and not frame.eye_rotations.any()


def test_streamed_animation_follows_the_offline_one(
    model: DefaultLipSyncModel, speech: np.ndarray
) -> None:
    """The stream animates the same speech: its jaw tracks offline's, lips close on /d/ /s/
    alike (not a constant pose), and every weight stays in [0, 1]."""
    options = InferenceOptions(fps=Fraction(60), blinks=False)
    frames, _ = _stream(model, speech, _chunk_sizes(5, len(speech)), options)
    streamed = np.stack([f.weights for f in frames])
    offline = model.animate([audio_from_array(speech, SAMPLE_RATE)], options)[0].weights
    assert streamed.shape == offline.shape
    assert 0.0 <= streamed.min() and streamed.max() <= 1.0
    assert np.corrcoef(streamed[:, JAW], offline[:, JAW])[0, 1] > 0.8
    assert streamed[:, JAW].std() > 0.05


def test_another_language_streams_the_phone_loop_as_animate_decodes_it(
    model: DefaultLipSyncModel,
) -> None:
    """``language="de"`` (any but English) streams the language-independent phone loop, the
    path ``animate`` takes without a transcript (issue 17 point 7): how the audio is cut
    changes no frame, each frame is out within the look-ahead, no word comes out, and it
    animates what the offline loop animates: the same jaw, and the lips closed on the frames
    where offline closes them (JFK's "my", "Americans": the loop hears no words)."""
    samples = decode_audio(SAMPLE).samples[: 5 * SAMPLE_RATE]
    options = InferenceOptions(fps=Fraction(60), blinks=False, language="de")
    steady, _ = _stream(model, samples, [ds.STEP] * (len(samples) // ds.STEP + 1), options)
    trace: list = []
    frames, pushes = _stream(model, samples, _chunk_sizes(7, len(samples)), options, trace)
    weights = np.stack([f.weights for f in frames])
    np.testing.assert_array_equal(weights, np.stack([f.weights for f in steady]))
    targets = frame_targets(len(frames), options.fps)
    for before, after, out in pushes:
        for frame in out:
            assert after >= int(targets[frame.index]) + ds.COMMIT_SAMPLES
            assert before < int(targets[frame.index]) + ds.LOOKAHEAD_SAMPLES
    probe = model.open_stream(options)
    assert not probe.language.english
    probe.cancel()
    assert trace and not any(p.word for _, _, _, phones in trace for p in phones)
    offline = model.animate([audio_from_array(samples, SAMPLE_RATE)], options)[0]
    assert offline.parameters["phones"] == "language-independent phone loop"
    assert len(frames) == offline.num_frames
    assert np.corrcoef(weights[:, JAW], offline.weights[:, JAW])[0, 1] > 0.8

    def pressed(w: np.ndarray) -> np.ndarray:
        press = w[:, ARKIT_52.index("mouthPressLeft")] + w[:, ARKIT_52.index("mouthPressRight")]
        return press / 2 >= 0.2

    closed_offline = pressed(offline.weights)
    assert closed_offline.sum() >= 10  # the clip has closures to follow
    assert (pressed(weights) & closed_offline).sum() >= 0.8 * closed_offline.sum()


def test_other_rates_and_channels_are_mixed_and_resampled(
    model: DefaultLipSyncModel, speech: np.ndarray
) -> None:
    import soxr

    stereo = np.stack([speech, 0.5 * speech], axis=1)
    at_44k = soxr.resample(stereo, SAMPLE_RATE, 44100)
    stream = model.open_stream(InferenceOptions(fps=Fraction(30)))
    frames = []
    for start in range(0, len(at_44k), 4410):
        frames += stream.push(at_44k[start : start + 4410], 44100)
    frames += stream.close()
    assert [f.index for f in frames] == list(range(num_frames_for(stream.samples_received, 30)))
    assert abs(stream.samples_received - len(speech)) <= 2


@pytest.mark.parametrize("language", ["auto", "de"])  # English words; the phone loop
def test_bad_options_and_pushes_raise_typed_errors(
    model: DefaultLipSyncModel, speech: np.ndarray, language: str
) -> None:
    with pytest.raises(ParameterError, match="transcript"):
        model.open_stream(InferenceOptions(transcript="she had your dark suit", language=language))
    with pytest.raises(ParameterError, match="start_s"):
        model.open_stream(InferenceOptions(start_s=1.0, language=language))
    with pytest.raises(ParameterError, match="klingon"):
        model.open_stream(InferenceOptions(language="klingon"))
    stream = model.open_stream(InferenceOptions(language=language))
    stream.push(speech[:8000])
    bad = speech[8000:9000].copy()
    bad[10] = np.nan
    with pytest.raises(AudioInvalidSamplesError):
        stream.push(bad)
    assert stream.samples_received == 8000  # the bad block left the stream as it was
    with pytest.raises(ParameterError, match="sample_rate"):
        stream.push(speech[8000:9000], 44100)
    frames = stream.push(speech[8000:]) + stream.close()
    assert frames[-1].index == num_frames_for(len(speech), Fraction(60)) - 1
    assert stream.close() == []
    with pytest.raises(ParameterError, match="closed"):
        stream.push(speech[:100])


@pytest.mark.parametrize("language", ["auto", "de"])
def test_cancel_drops_everything_and_later_calls_raise(
    model: DefaultLipSyncModel, speech: np.ndarray, language: str
) -> None:
    stream = model.open_stream(InferenceOptions(language=language))
    stream.push(speech[:16000])
    stream.cancel()
    assert stream.closed and stream.buffered_samples == 0
    with pytest.raises(CancelledError):
        stream.push(speech[:100])
    with pytest.raises(CancelledError):
        stream.close()
    stream.cancel()  # a second cancel is harmless


@pytest.mark.slow
@pytest.mark.parametrize("language", ["auto", "de"])  # English words; the phone loop
def test_an_endless_stream_holds_bounded_state(
    model: DefaultLipSyncModel, speech: np.ndarray, language: str
) -> None:
    """Two minutes: 27 s of speech without a pause (cut at MAX_UTTERANCE_S), then quiet
    room noise with the sentence every 30 s; pushed in 1 s blocks, checked after each."""
    rng = np.random.default_rng(0)
    talk = np.tile(speech, int(np.ceil(27 * SAMPLE_RATE / len(speech))))[: 27 * SAMPLE_RATE]
    room = (1e-3 * rng.standard_normal(93 * SAMPLE_RATE)).astype(np.float32)
    for start in range(0, len(room) - len(speech), 30 * SAMPLE_RATE):
        room[start : start + len(speech)] += speech
    audio = np.concatenate([talk, room])
    stream = model.open_stream(InferenceOptions(fps=Fraction(30), language=language))
    count, longest = 0, 0
    for start in range(0, len(audio), SAMPLE_RATE):
        count += len(stream.push(audio[start : start + SAMPLE_RATE]))
        held = stream.held
        longest = max(longest, held["utterance_samples"])
        assert held["samples"] <= 2 * SAMPLE_RATE  # history + look-ahead + one push
        assert held["hops"] <= 200 and held["phones"] <= 100
        assert held["accents"] <= 10 and held["blinks"] <= 10
    count += len(stream.close())
    assert count == num_frames_for(len(audio), Fraction(30))
    assert longest <= ds.MAX_UTTERANCE_S * SAMPLE_RATE + ds.STEP


def test_an_empty_stream_closes_with_no_frames_and_fast_mode_streams(
    model: DefaultLipSyncModel, speech: np.ndarray
) -> None:
    empty = model.open_stream(InferenceOptions())
    assert empty.push(np.zeros(0, np.float32)) == []
    assert empty.close() == []
    fast = model.open_stream(InferenceOptions(fast=True, fps=Fraction(24)))
    frames = fast.push(speech[:SAMPLE_RATE]) + fast.close()
    assert [f.index for f in frames] == list(range(num_frames_for(SAMPLE_RATE, Fraction(24))))


class _CountingDecoder:
    """A real pocketsphinx decoder that also counts the samples each call decodes."""

    def __init__(self, decoder: object, fed: list[int]) -> None:
        self._decoder, self._fed = decoder, fed

    def process_raw(self, pcm: bytes, *args: object) -> object:
        self._fed.append(len(pcm) // 2)
        return self._decoder.process_raw(pcm, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._decoder, name)


def test_the_warm_up_redecode_is_spread_and_bounded(
    model: DefaultLipSyncModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up's second decoder (a better cepstral mean decodes the young utterance again)
    is work, counted in decoded samples (not time): no 20 ms push decodes more than
    1 + CATCHUP_STEPS steps, and the re-decodes of the first 3 s follow the doubling schedule
    (each starts once the mean has twice the frames, and decodes what it catches up on too)."""
    fed: list[int] = []
    real_take = ds._take_decoder
    monkeypatch.setattr(ds, "_IDLE", {"words": [], "fast": []})  # counted decoders stay here
    monkeypatch.setattr(ds, "_take_decoder", lambda kind: _CountingDecoder(real_take(kind), fed))
    samples = decode_audio(SAMPLE).samples[: 4 * SAMPLE_RATE]  # "And so my fellow Americans"
    stream = model.open_stream(InferenceOptions(fps=Fraction(30)))
    per_push = []
    for start in range(0, len(samples), ds.STEP):
        fed.clear()
        stream.push(samples[start : start + ds.STEP])
        per_push.append(sum(fed))
    stream.close()
    assert max(per_push) <= (1 + ds.CATCHUP_STEPS) * ds.STEP
    warm_up = per_push[: 3 * SAMPLE_RATE // ds.STEP]
    redecoded = sum(warm_up) - len(warm_up) * ds.STEP  # beyond the main decoder's one step
    assert redecoded > 0  # the warm-up does re-decode
    starts, frames = [], float(ds.REDECODE_FIRST_FRAMES)
    while frames < ds.WARMUP_FRAMES:
        starts.append(frames * ds.ex.HOP)  # samples heard when a re-decode starts
        frames *= ds.REDECODE_GROWTH
    caught_up_on = ds.CATCHUP_STEPS / (ds.CATCHUP_STEPS - 1)  # audio arriving meanwhile
    # (re-decoding at every mean update, as before, decoded ~8 s more here; this: ~4.4 s)
    assert redecoded <= 1.1 * sum(starts) * caught_up_on


def test_the_trace_records_the_phones_each_frame_was_computed_from(
    model: DefaultLipSyncModel, speech: np.ndarray
) -> None:
    """``stream.trace`` (for looking at a missed consonant, ``lipsync_eval.py --misses``):
    one entry per emission, together covering every frame once, each with the audio heard
    then (at least the frames' look-ahead) and the phones in time order; recording it changes
    no frame."""
    speech = speech[: 3 * SAMPLE_RATE // 2]
    options = InferenceOptions(fps=Fraction(60), blinks=False)
    plain, _ = _stream(model, speech, [ds.STEP] * (len(speech) // ds.STEP + 1), options)
    stream = model.open_stream(options)
    stream.trace = []
    frames = []
    for start in range(0, len(speech), ds.STEP):
        frames += stream.push(speech[start : start + ds.STEP])
    frames += stream.close()
    np.testing.assert_array_equal(
        np.stack([f.weights for f in frames]), np.stack([f.weights for f in plain])
    )
    trace = stream.trace
    assert [t[0] for t in trace[1:]] == [t[1] for t in trace[:-1]]  # contiguous, once each
    assert trace[0][0] == 0 and trace[-1][1] == len(frames)
    targets = frame_targets(len(frames), Fraction(60))
    for first, end, heard, phones in trace:
        if (first, end) != trace[-1][:2]:  # close() emits before the look-ahead has arrived
            assert heard >= int(targets[end - 1]) + ds.COMMIT_SAMPLES
        # in time order, each phone once (close() used to list the last utterance twice)
        assert all(a.end_s <= b.start_s + 1e-6 for a, b in pairwise(phones))
        assert phones[0].start_s <= targets[first] / SAMPLE_RATE
    assert any(p.word for _, _, _, phones in trace for p in phones)  # words were recognised
