"""Streaming on a regression model (issue 12, first increment): pushed audio in random chunks
gives the offline run's frames, each as soon as its window is complete, in bounded memory."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import soundfile
import soxr

from a2x_core.audio.accumulator import StreamFrame
from a2x_core.audio.decode import Audio, audio_from_array, decode_audio
from a2x_core.errors import AudioInvalidSamplesError, CancelledError, ParameterError
from a2x_core.executor.stream import Stream as RegressionStream
from a2x_core.models.registry import load_model
from a2x_core.models.regression import RegressionModel
from a2x_core.options import InferenceOptions
from a2x_core.timing import frame_targets
from tests.a2f_folders import BUFFER_LEN, BUFFER_OFS, GeneratedModel, make_regression_folder
from tests.conftest import SAMPLE

LOOKAHEAD = BUFFER_LEN - BUFFER_OFS
#: Emotion keys that change over the clip, so the emotion input is checked per frame too.
KEYS = ((0.4, {"joy": 0.1}), (2.2, {"joy": 0.9, "anger": 0.3}))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return make_regression_folder(tmp_path_factory.mktemp("stream") / "model", seed=7)


@pytest.fixture(scope="module")
def model(folder: GeneratedModel) -> RegressionModel:
    loaded = load_model(folder.model_json, backend="onnxruntime", threads=1)
    assert isinstance(loaded, RegressionModel)
    return loaded


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Three seconds of real speech at 16 kHz."""
    return decode_audio(SAMPLE, start_s=0.5, end_s=3.5).samples


def _chunk_sizes(rng: np.random.Generator, total: int, longest: int) -> list[int]:
    """Seeded chunk sizes from 1 sample to ``longest``, log-uniform so that tiny pushes (1, 2,
    a few samples) and long ones both occur; they add up to ``total``."""
    sizes = [1, 1, 2]
    while sum(sizes) < total:
        sizes.append(int(np.exp(rng.uniform(0.0, np.log(longest)))))
    sizes[-1] -= sum(sizes) - total
    return [s for s in sizes if s > 0]


def _push_in_chunks(
    stream: RegressionStream, samples: np.ndarray, sizes: list[int], rate: int = 16000
) -> tuple[list[StreamFrame], list[tuple[int, int]]]:
    """All frames of the stream, and (16 kHz samples received, frames returned) after each push."""
    frames: list[StreamFrame] = []
    progress = []
    start = 0
    for size in sizes:
        frames += stream.push(samples[start : start + size], rate)
        start += size
        progress.append((stream.samples_received, len(frames)))
    frames += stream.close()
    return frames, progress


def _assert_same_frames(frames: list[StreamFrame], offline, atol: float) -> None:
    assert [f.index for f in frames] == list(range(offline.num_frames))
    np.testing.assert_allclose([f.time_s for f in frames], offline.times_s, atol=1e-9)
    pairs = (("weights", "weights"), ("tongue_weights", "tongue_weights"),
             ("jaw_transform", "jaw_transforms"), ("eye_rotations", "eye_rotations"),
             ("emotions", "emotions"))  # fmt: skip
    for frame_field, result_field in pairs:
        streamed = np.stack([getattr(f, frame_field) for f in frames])
        np.testing.assert_allclose(streamed, getattr(offline, result_field), atol=atol,
                                   rtol=0, err_msg=frame_field)  # fmt: skip
    assert np.abs(offline.weights).max() > 0.05  # the comparison is not vacuous


@pytest.mark.parametrize(
    "fps", [Fraction(24), Fraction(30), Fraction(60), Fraction(30000, 1001)], ids=str
)
def test_random_chunks_give_the_offline_frames_as_soon_as_their_window_is_complete(
    model: RegressionModel, speech: np.ndarray, fps: Fraction
) -> None:
    options = InferenceOptions(fps=fps, emotions=KEYS)
    offline = model.animate([Audio(speech)], options)[0]
    sizes = _chunk_sizes(np.random.default_rng(int(fps * 1001)), len(speech), 32000)
    frames, progress = _push_in_chunks(model.open_stream(options), speech, sizes)
    # Same network batches as offline (calls of frames_per_call rows, zero-padded): the only
    # difference allowed is float rounding of rows at other positions inside a call.
    _assert_same_frames(frames, offline, atol=1e-5)
    # Timeliness: after each push exactly the frames whose window [t - ofs, t - ofs + len) has
    # fully arrived are out; none later, none earlier.
    targets = frame_targets(offline.num_frames, fps)
    for received, returned in progress:
        assert returned == int(np.count_nonzero(targets + LOOKAHEAD <= received)), received


def test_short_clip_and_frames_per_call_of_one(model: RegressionModel, speech: np.ndarray) -> None:
    """A clip shorter than the look-ahead comes out entirely at close(); with the SDK's one
    inference per frame the stream and the offline run make identical network calls."""
    options = InferenceOptions(fps=60)
    short = speech[8000:11000]
    offline = model.animate([Audio(short)], options)[0]
    stream = model.open_stream(options)
    assert stream.push(short) == []
    _assert_same_frames(stream.close(), offline, atol=1e-5)
    model.frames_per_call = 1
    try:
        offline = model.animate([Audio(speech)], options)[0]
        sizes = _chunk_sizes(np.random.default_rng(3), len(speech), 4000)
        frames, _ = _push_in_chunks(model.open_stream(options), speech, sizes)
        _assert_same_frames(frames, offline, atol=0.0)
    finally:
        model.frames_per_call = RegressionModel(model.package, model.engine).frames_per_call


def test_44k_push_equals_the_offline_run_of_the_same_44k_audio(
    model: RegressionModel, speech: np.ndarray
) -> None:
    """Resampled incrementally with soxr's stream (the decoder's own settings): the streamed
    16 kHz signal equals the one-shot decode's, so the frames match within float rounding."""
    native, rate = soundfile.read(str(SAMPLE), dtype="float32", frames=3 * 16000)
    at_44k = soxr.resample(native, rate, 44100).astype(np.float32)
    options = InferenceOptions(fps=Fraction(30000, 1001), emotions=KEYS)
    offline = model.animate([audio_from_array(at_44k, 44100)], options)[0]
    sizes = _chunk_sizes(np.random.default_rng(44), len(at_44k), 88200)
    frames, _ = _push_in_chunks(model.open_stream(options), at_44k, sizes, rate=44100)
    _assert_same_frames(frames, offline, atol=1e-5)


@pytest.mark.slow
def test_ten_minute_stream_keeps_less_than_one_window(model: RegressionModel) -> None:
    """An endless stream (10 minutes, 1 s pushes) holds fewer than buffer_len samples after
    every push: only the audio the next frame's window still reaches."""
    stream = model.open_stream(InferenceOptions(fps=24))
    rng = np.random.default_rng(10)
    block = (rng.uniform(-0.3, 0.3, 16000)).astype(np.float32)
    returned = 0
    for second in range(600):
        returned += len(stream.push(np.roll(block, second * 37)))
        assert stream.buffered_samples < BUFFER_LEN, second
        assert returned == stream.frames_returned
    assert returned == int(np.count_nonzero(frame_targets(14400, Fraction(24)) + LOOKAHEAD
                                            <= 600 * 16000))  # fmt: skip
    tail = stream.close()
    assert returned + len(tail) == 600 * 24
    assert stream.buffered_samples == 0


def test_bad_pushes_cancel_and_close(model: RegressionModel, speech: np.ndarray) -> None:
    with pytest.raises(ParameterError, match="geometry"):
        model.open_stream(InferenceOptions(geometry=True))
    with pytest.raises(ParameterError, match="unknown parameter"):
        model.open_stream(InferenceOptions(parameters={"no_such": 1.0}))
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
    assert stream.push(np.zeros(0, np.float32)) == []
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


class _CountingEngine:
    """The model's real engine, counting the rows of each network call (no result changed)."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.calls: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def run(self, feeds):
        self.calls.append(len(feeds["input"]))
        return self._engine.run(feeds)


def test_streams_on_one_executor_share_network_calls_and_keep_their_own_frames(
    folder: GeneratedModel, speech: np.ndarray
) -> None:
    """Three streams with their own options, joining and leaving at different times and pushing
    different chunk sizes, share one executor: each tick is one network call holding every
    stream's ready frames (no padding rows), and each stream still gets its own offline frames."""
    model = load_model(folder.model_json, backend="onnxruntime", threads=1)
    assert isinstance(model, RegressionModel)
    choices = [
        InferenceOptions(fps=30, emotions=KEYS),
        InferenceOptions(fps=60, parameters={"upper_face_smoothing": 0.01}),
        InferenceOptions(fps=Fraction(30000, 1001), parameters={"skin.bsWeightMultipliers.jawOpen": 1.3}),
    ]
    clips = [speech, speech[4000:40000], speech[::-1].copy()]
    offline = [model.animate([Audio(c)], o)[0] for c, o in zip(clips, choices, strict=True)]
    counting = _CountingEngine(model.engine)
    model.engine = counting
    executor = model.stream_executor()
    joins = [0, 3, 6]  # ticks at which each stream opens
    streams: list = [None, None, None]
    frames: list[list[StreamFrame]] = [[], [], []]
    at = [0, 0, 0]
    block = 1600  # 100 ms ticks
    shared_ticks = 0  # ticks whose one call served all three streams
    for tick in range(80):
        for k in range(3):
            if tick == joins[k]:
                streams[k] = model.open_stream(choices[k], executor=executor)
            s = streams[k]
            if s is None or s.closed:
                continue
            size = block + 37 * k
            s.feed(clips[k][at[k] : at[k] + size])
            at[k] += size
        calls_before = len(counting.calls)
        executor.run_ready()
        calls = len(counting.calls) - calls_before
        assert calls <= 1  # one call per tick, whatever the number of streams with frames
        served = 0
        for k, s in enumerate(streams):
            if s is None or s.closed:
                continue
            new = s.pull()
            served += bool(new)
            frames[k] += new
            if at[k] >= len(clips[k]):
                frames[k] += s.close()
        shared_ticks += served == 3 and calls == 1
    assert all(s is not None and s.closed for s in streams)
    assert shared_ticks >= 5
    for got, want in zip(frames, offline, strict=True):
        _assert_same_frames(got, want, atol=1e-5)
    assert executor.tracks == []  # closed streams leave the executor


def test_a_stream_of_another_model_is_refused(folder: GeneratedModel, model: RegressionModel) -> None:
    other = load_model(folder.model_json, backend="onnxruntime", threads=1)
    with pytest.raises(ParameterError, match="another model"):
        model.open_stream(InferenceOptions(), executor=other.stream_executor())


def test_streams_on_a_torch_device_chain_equal_the_device_offline_run(
    folder: GeneratedModel, speech: np.ndarray
) -> None:
    """With the stages after the network on a torch device (here torch on the CPU; the same
    code on CUDA), streams joining at different times share one growable DevicePipeline, each
    row at its own frame, and give the device offline run's frames."""
    pytest.importorskip("torch")
    model = load_model(folder.model_json, backend="onnxruntime", threads=1)
    assert isinstance(model, RegressionModel)
    model.postprocess = "cpu"
    options = [InferenceOptions(fps=30, emotions=KEYS), InferenceOptions(fps=30)]
    clips = [speech, speech[8000:30000]]
    offline = [model.animate([Audio(c)], o)[0] for c, o in zip(clips, options, strict=True)]
    assert offline[0].parameters["postprocess"] == "cpu"
    executor = model.stream_executor()
    first = model.open_stream(options[0], executor=executor)
    got: list[list[StreamFrame]] = [[], []]
    second = None
    rng = np.random.default_rng(5)
    at = [0, 0]
    while not (first.closed and second is not None and second.closed):
        if second is None and at[0] > 12000:
            second = model.open_stream(options[1], executor=executor)
        for k, stream in enumerate((first, second)):
            if stream is None or stream.closed:
                continue
            size = int(rng.integers(1, 6000))
            stream.feed(clips[k][at[k] : at[k] + size])
            at[k] += size
        executor.run_ready()
        for k, stream in enumerate((first, second)):
            if stream is None or stream.closed:
                continue
            got[k] += stream.pull()
            if at[k] >= len(clips[k]):
                got[k] += stream.close()
    for frames, want in zip(got, offline, strict=True):
        _assert_same_frames(frames, want, atol=1e-5)
