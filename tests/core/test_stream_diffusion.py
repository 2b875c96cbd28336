"""Streaming on a diffusion model (issue 12): real speech pushed in random chunks gives the
offline run's frames, each as soon as the window that computes it has arrived; streams on one
executor share network calls at different windows; bounded memory; typed errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import soundfile
import soxr

from a2x_core.audio.accumulator import StreamFrame
from a2x_core.audio.decode import Audio, audio_from_array, decode_audio
from a2x_core.errors import AudioInvalidSamplesError, CancelledError, ModelError, ParameterError
from a2x_core.models.diffusion import DiffusionModel, FrameResampler
from a2x_core.models.registry import load_model
from a2x_core.options import InferenceOptions
from a2x_core.timing import frame_targets, num_frames_for
from tests.conftest import SAMPLE
from tests.core.test_stream_regression import (
    KEYS,
    _assert_same_frames,
    _chunk_sizes,
    _push_in_chunks,
)
from tests.diffusion_folders import CENTER, FRAMES, LEFT, GeneratedDiffusion, make_diffusion_folder

#: The folder's windows (spec §3): 1 s long, 0.5 s apart, window w ends at sample 8000 w; its
#: centre frames are network frames 30 w - 45 .. 30 w - 16 at 60 fps (45 = frames before 0).
WINDOW, STRIDE, PADDING_LEFT = 16000, 8000, 16000
LEADING = PADDING_LEFT * FRAMES // WINDOW - LEFT  # the padding in frames, minus the left cut
RATES = [Fraction(24), Fraction(30), Fraction(60), Fraction(30000, 1001)]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDiffusion:
    return make_diffusion_folder(tmp_path_factory.mktemp("stream_diffusion") / "model")


@pytest.fixture(scope="module")
def model(generated: GeneratedDiffusion) -> DiffusionModel:
    loaded = load_model(generated.model_json, backend="onnxruntime", threads=1)
    assert isinstance(loaded, DiffusionModel)
    return loaded


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Three seconds of real speech at 16 kHz."""
    return decode_audio(SAMPLE, start_s=0.5, end_s=3.5).samples


def _arrival(num_frames: int, fps: Fraction) -> np.ndarray:
    """The sample count after which each output frame can come out, from the spec's windowing:
    the frame reads network frame ``lo`` (the last at or before its target) and, when its
    target lies between two network frames, ``lo + 1``; that frame's window ``w`` has all its
    audio at sample 8000 w."""
    targets = frame_targets(num_frames, fps)
    net = frame_targets(int(targets[-1]) * 60 // 16000 + 3, Fraction(60))
    lo = np.searchsorted(net, targets, side="right") - 1
    needs = lo + (targets > net[lo])
    return STRIDE * ((needs + LEADING) // CENTER)


@pytest.mark.parametrize("constant", [True, False], ids=["constant_noise", "noise_per_window"])
@pytest.mark.parametrize("fps", RATES, ids=str)
def test_random_chunks_give_the_offline_frames_as_soon_as_their_window_has_arrived(
    model: DiffusionModel, speech: np.ndarray, fps: Fraction, constant: bool
) -> None:
    options = InferenceOptions(fps=fps, emotions=KEYS, identity="James",
                               parameters={"constant_noise": constant})  # fmt: skip
    offline = model.animate([Audio(speech)], options)[0]
    sizes = _chunk_sizes(np.random.default_rng(int(fps * 1001) + constant), len(speech), 32000)
    stream = model.open_stream(options)
    frames, progress = _push_in_chunks(stream, speech, sizes)
    _assert_same_frames(frames, offline, atol=1e-5)
    # Timeliness: after each push exactly the frames whose network frames' windows have fully
    # arrived are out; none later, none earlier.
    arrival = _arrival(offline.num_frames, fps)
    for received, returned in progress:
        assert returned == int(np.count_nonzero(arrival <= received)), received
    # The stated look-ahead is the most any frame waits after its own target sample (over
    # 20000 frames: the pattern of targets against windows repeats within 15000).
    waits = _arrival(20000, fps) - frame_targets(20000, fps)
    assert stream.lookahead_samples == waits.max() < WINDOW


def test_short_and_empty_streams(model: DiffusionModel, speech: np.ndarray) -> None:
    """A clip shorter than the look-ahead comes out entirely at close() (its windows padded
    with zeros as offline); a stream closed without audio has no frames."""
    for fps in (24, 60):
        options = InferenceOptions(fps=fps)
        short = speech[8000:11000]
        offline = model.animate([Audio(short)], options)[0]
        stream = model.open_stream(options)
        assert stream.push(short) == []
        _assert_same_frames(stream.close(), offline, atol=1e-5)
        assert stream.buffered_samples == 0
    empty = model.open_stream(InferenceOptions())
    assert empty.push(np.zeros(0, np.float32)) == [] and empty.close() == []


def test_44k_push_equals_the_offline_run_of_the_same_44k_audio(
    model: DiffusionModel, speech: np.ndarray
) -> None:
    native, rate = soundfile.read(str(SAMPLE), dtype="float32", frames=3 * 16000)
    at_44k = soxr.resample(native, rate, 44100).astype(np.float32)
    options = InferenceOptions(fps=Fraction(30000, 1001), emotions=KEYS)
    offline = model.animate([audio_from_array(at_44k, 44100)], options)[0]
    sizes = _chunk_sizes(np.random.default_rng(44), len(at_44k), 88200)
    frames, _ = _push_in_chunks(model.open_stream(options), at_44k, sizes, rate=44100)
    _assert_same_frames(frames, offline, atol=1e-5)


class _CountingEngine:
    """The model's real engine, recording each network call's rows and noise draws (no result
    changed)."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self._engine = engine
        self.calls: list[int] = []
        self.distinct_noise: list[int] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._engine, name)

    def run(self, feeds):  # noqa: ANN001, ANN201
        self.calls.append(len(feeds["window"]))
        noise = feeds["noise"].reshape(len(feeds["noise"]), -1)[:, :64]
        self.distinct_noise.append(len(np.unique(noise, axis=0)))
        return self._engine.run(feeds)


def test_streams_on_one_executor_share_network_calls_and_keep_their_own_frames(
    generated: GeneratedDiffusion, speech: np.ndarray
) -> None:
    """Three streams with their own rate, identity, noise and emotions, joining late and pushing
    different block sizes, share one executor: a call holds every stream with a window ready
    (at different windows, each row with its own noise draw), and each stream still gets its
    own offline frames."""
    model = load_model(generated.model_json, backend="onnxruntime", threads=1)
    assert isinstance(model, DiffusionModel)
    choices = [
        InferenceOptions(fps=30, emotions=KEYS, parameters={"constant_noise": False}),
        InferenceOptions(fps=60, identity="Mark", seed=3,
                         parameters={"upper_face_smoothing": 0.01, "constant_noise": False}),
        InferenceOptions(fps=Fraction(30000, 1001), identity="James",
                         parameters={"skin.bsWeightMultipliers.jawOpen": 1.3}),
    ]  # fmt: skip
    clips = [speech, speech[4000:40000], speech[::-1].copy()]
    offline = [model.animate([Audio(c)], o)[0] for c, o in zip(clips, choices, strict=True)]
    counting = _CountingEngine(model.engine)
    model.engine = counting
    executor = model.stream_executor()
    joins = [0, 5, 10]  # ticks at which each stream opens (whole windows apart)
    streams: list = [None, None, None]
    frames: list[list[StreamFrame]] = [[], [], []]
    at = [0, 0, 0]
    block = 1600  # 100 ms ticks
    for tick in range(60):
        for k in range(3):
            if tick == joins[k]:
                streams[k] = model.open_stream(choices[k], executor=executor)
            s = streams[k]
            if s is None or s.closed:
                continue
            size = block + 7 * k
            s.feed(clips[k][at[k] : at[k] + size])
            at[k] += size
        executor.run_ready()
        for k, s in enumerate(streams):
            if s is None or s.closed:
                continue
            frames[k] += s.pull()
            if at[k] >= len(clips[k]):
                frames[k] += s.close()
    assert all(s is not None and s.closed for s in streams)
    windows = sum(model.windows_for(len(c)) for c in clips)
    assert sum(counting.calls) == windows  # every window once, one row each
    assert max(counting.calls) == 3 and len(counting.calls) < windows  # shared calls
    # streams 0 and 1 draw per window from other seeds/windows: rows of one call differ
    assert max(counting.distinct_noise) == 3
    for got, want in zip(frames, offline, strict=True):
        _assert_same_frames(got, want, atol=1e-5)
    assert executor.tracks == []  # closed streams leave the executor


def test_streams_on_the_torch_engine_share_calls_with_per_row_noise(
    generated: GeneratedDiffusion, speech: np.ndarray
) -> None:
    """The torch engine (device tensors; here on the CPU) with two streams at different windows:
    each row's noise draw is uploaded and stacked on the device; frames equal its offline run."""
    pytest.importorskip("torch")
    model = load_model(generated.model_json, backend="torch", device="cpu")
    assert isinstance(model, DiffusionModel)
    options = [InferenceOptions(fps=30, parameters={"constant_noise": False}),
               InferenceOptions(fps=24, seed=5)]  # fmt: skip
    clips = [speech[:24000], speech[8000:30000]]
    offline = [model.animate([Audio(c)], o)[0] for c, o in zip(clips, options, strict=True)]
    executor = model.stream_executor()
    first = model.open_stream(options[0], executor=executor)
    got = [first.push(clips[0][:12000]), []]
    second = model.open_stream(options[1], executor=executor)  # joins two windows later
    for at in range(0, 20000, 4000):
        second.feed(clips[1][at : at + 4000])
        got[0] += first.push(clips[0][12000 + at : 12000 + at + 4000])
        got[1] += second.pull()
    got[0] += first.close()
    got[1] += second.push(clips[1][20000:]) + second.close()
    for frames, want in zip(got, offline, strict=True):
        _assert_same_frames(frames, want, atol=1e-5)


def test_long_stream_keeps_less_than_one_window(model: DiffusionModel) -> None:
    """An endless stream (a minute, 0.25 s pushes) holds fewer than one window of audio and
    a few network frames after every push: only what the next window and output frame read."""
    stream = model.open_stream(InferenceOptions(fps=24))
    rng = np.random.default_rng(10)
    block = rng.uniform(-0.3, 0.3, 4000).astype(np.float32)
    returned = 0
    pushes = 4 * 60
    for push in range(pushes):
        returned += len(stream.push(np.roll(block, push * 37)))
        assert stream.buffered_samples < WINDOW, push
        held = stream.track.state.resampler.held_frames
        assert held <= 2, push  # the one network frame the next output frame reads
    arrival = _arrival(pushes * 4000 * 24 // 16000, Fraction(24))
    assert returned == stream.frames_returned == np.count_nonzero(arrival <= pushes * 4000)
    tail = stream.close()
    assert returned + len(tail) == 60 * 24
    assert stream.buffered_samples == 0


def test_bad_options_pushes_cancel_and_close(model: DiffusionModel, speech: np.ndarray) -> None:
    with pytest.raises(ParameterError, match="geometry"):
        model.open_stream(InferenceOptions(geometry=True))
    with pytest.raises(ParameterError, match="unknown parameter"):
        model.open_stream(InferenceOptions(parameters={"no_such": 1.0}))
    with pytest.raises(ParameterError, match="constant_noise must be true or false"):
        model.open_stream(InferenceOptions(parameters={"constant_noise": "no"}))
    with pytest.raises(ModelError, match="use one of: Claire, James, Mark"):
        model.open_stream(InferenceOptions(identity="Bob"))
    stream = model.open_stream(InferenceOptions(fps=30))
    with pytest.raises(ParameterError, match="sample_rate"):
        stream.push(speech[:100], 100)
    with pytest.raises(AudioInvalidSamplesError, match="pushed samples"):
        stream.push(np.full(10, np.inf, np.float32), 48000)  # refused: does not fix the rate
    stream.push(speech[:100], 16000)
    with pytest.raises(ParameterError, match="differs from the stream's 16000 Hz"):
        stream.push(speech[:100], 48000)
    bad = speech[:100].copy()
    bad[7] = np.nan
    with pytest.raises(AudioInvalidSamplesError, match="1 pushed samples"):
        stream.push(bad)
    stream.cancel()
    with pytest.raises(CancelledError):
        stream.push(speech[:100])
    with pytest.raises(CancelledError):
        stream.close()
    closed = model.open_stream(InferenceOptions(fps=30))
    stereo = np.stack([speech[:20000], speech[:20000]], axis=1)
    assert len(closed.push(stereo) + closed.close()) == 38  # frames with target < 20000
    assert closed.close() == []
    with pytest.raises(ParameterError, match="closed"):
        closed.push(speech[:10])


def test_an_executor_of_another_model_is_refused(
    generated: GeneratedDiffusion, model: DiffusionModel
) -> None:
    other = load_model(generated.model_json, backend="onnxruntime", threads=1)
    with pytest.raises(ParameterError, match="another model"):
        model.open_stream(InferenceOptions(), executor=other.stream_executor())


def test_track_emotions_give_each_track_its_own_curve(
    model: DiffusionModel, speech: np.ndarray
) -> None:
    """``animate(..., track_emotions=...)`` (the Animator's per-clip emotion keys) equals each
    track run alone with those keys as ``options.emotions``."""
    tracks = [Audio(speech[:20000]), Audio(speech[12000:44000], start_s=0.75)]
    per_track = (((0.0, {"joy": 0.9}),), ((0.8, {"anger": 0.2}), (2.0, {"anger": 1.0})))
    options = InferenceOptions(fps=30, emotions=KEYS)
    together = model.animate(tracks, options, track_emotions=per_track)
    for track, keys, got in zip(tracks, per_track, together, strict=True):
        alone = model.animate([track], options.with_changes(emotions=keys))[0]
        np.testing.assert_array_equal(got.emotions, alone.emotions)
        np.testing.assert_allclose(got.weights, alone.weights, atol=1e-6, rtol=0)
    default = model.animate(tracks[:1], options)[0]
    assert np.abs(default.emotions - together[0].emotions).max() > 0.1
    with pytest.raises(ParameterError, match="track_emotions has 1 entries for 2 tracks"):
        model.animate(tracks, options, track_emotions=per_track[:1])


@pytest.mark.parametrize("fps", RATES, ids=str)
def test_the_streaming_resampler_equals_the_whole_clip_one(fps: Fraction) -> None:
    """Built from the two rates, frames pushed in random runs, ended at the clip's counts: the
    same output frames as the resampler built from the whole clip's targets, holding only the
    network frames later output frames read."""
    rng = np.random.default_rng(int(fps))
    samples = 40000 + int(rng.integers(0, 800))
    net_count = len(range(0, samples * 3, 800))  # network frames with a target < samples
    out_count = num_frames_for(samples, fps)
    whole = FrameResampler(frame_targets(net_count, Fraction(60)), frame_targets(out_count, fps))
    frames = rng.standard_normal((net_count, 3)).astype(np.float32)
    expected = whole.push(0, frames)
    assert len(expected) == out_count
    streaming = FrameResampler(Fraction(60), fps)
    got, at = [], 0
    while at < net_count:
        n = min(int(rng.integers(1, 40)), net_count - at)
        if at + n == net_count:
            streaming.end(net_count, out_count)
        got.append(streaming.push(at, frames[at : at + n]))
        at += n
        assert streaming.held_frames <= n + 1
    np.testing.assert_array_equal(np.concatenate(got), expected)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_streams_on_a_torch_device_chain_equal_the_device_offline_run(
    generated: GeneratedDiffusion, speech: np.ndarray, backend: str
) -> None:
    """With the stages after the network on a torch device (torch on the CPU here; the same
    code on CUDA), two diffusion streams share one growable DevicePipeline (grouped by the
    number of frames a window finished) and give the device offline run's frames. On the
    torch engine the network's rows stay on that device too: GRU state, centre frames and the
    resampling (``DiffusionStep._infer_stream_rows``)."""
    pytest.importorskip("torch")
    engine = {"threads": 1} if backend == "onnxruntime" else {"device": "cpu"}
    model = load_model(generated.model_json, backend=backend, **engine)
    assert isinstance(model, DiffusionModel)
    model.postprocess = "cpu"
    options = InferenceOptions(fps=30, emotions=KEYS)
    clips = [speech, speech[6000:40000]]
    offline = [model.animate([Audio(c)], options)[0] for c in clips]
    assert offline[0].parameters["postprocess"] == "cpu"
    executor = model.stream_executor()
    streams = [model.open_stream(options, executor=executor) for _ in clips]
    got: list[list[StreamFrame]] = [[], []]
    rng = np.random.default_rng(9)
    at = [0, 0]
    while not all(s.closed for s in streams):
        for k, stream in enumerate(streams):
            if not stream.closed:
                size = int(rng.integers(1, 8000))
                stream.feed(clips[k][at[k] : at[k] + size])
                at[k] += size
        executor.run_ready()
        for k, stream in enumerate(streams):
            if stream.closed:
                continue
            got[k] += stream.pull()
            if at[k] >= len(clips[k]):
                got[k] += stream.close()
    for frames, want in zip(got, offline, strict=True):
        _assert_same_frames(frames, want, atol=1e-5)
    assert executor.step._streams_on_device() is (backend == "torch")
