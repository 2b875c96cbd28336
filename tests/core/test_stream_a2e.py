"""Audio2Emotion streams (issue 12): real speech pushed in seeded random chunks gives
``detect()``'s emotions of the whole clip, each frame as soon as its inference's window has
arrived, with the smoothing state carried across pushes and bounded memory.

Real generated A2E folder (``tests/a2e_folders.py``) on ONNX Runtime, real speech (the bundled
sample)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from a2x_core.audio.decode import Audio, decode_audio
from a2x_core.backends import EngineSettings
from a2x_core.errors import AudioInvalidSamplesError, CancelledError, ParameterError
from a2x_core.executor.stream import Stream
from a2x_core.models.audio2emotion import EmotionFrame, EmotionModel
from a2x_core.timing import frame_targets
from tests.a2e_folders import make_emotion_folder
from tests.conftest import SAMPLE
from tests.core.test_stream_regression import _chunk_sizes

#: (fps, inferences_to_skip, buffer_length): the four rates one inference per frame, the SDK
#: sample's cadence, and a window shorter than twice the stride (frames of an inference whose
#: targets arrive after its window: they wait for their own audio).
CASES = [
    (Fraction(24), 0, 60000),
    (Fraction(30), 0, 60000),
    (Fraction(60), 0, 60000),
    (Fraction(30000, 1001), 0, 60000),
    (Fraction(30), 30, 60000),
    (Fraction(30), 20, 16000),
]


@pytest.fixture(scope="module")
def a2e(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_emotion_folder(tmp_path_factory.mktemp("a2e") / "audio2emotion-v2.2")


@pytest.fixture(scope="module")
def model(a2e: Any) -> EmotionModel:
    return EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Six seconds of real speech at 16 kHz (longer than the 3.75 s window)."""
    return decode_audio(SAMPLE, start_s=0.5, end_s=6.5).samples


def _push_in_chunks(
    stream: Stream, samples: np.ndarray, sizes: list[int]
) -> tuple[list[EmotionFrame], list[tuple[int, int]]]:
    """All frames of the stream, and (samples received, frames returned) after each push."""
    frames: list[EmotionFrame] = []
    progress = []
    start = 0
    for size in sizes:
        frames += stream.push(samples[start : start + size])
        start += size
        progress.append((stream.samples_received, len(frames)))
    frames += stream.close()
    return frames, progress


def _assert_same_frames(frames: list[EmotionFrame], offline: Any) -> None:
    assert [f.index for f in frames] == list(range(len(offline.values)))
    np.testing.assert_allclose([f.time_s for f in frames], offline.times_s, atol=1e-9)
    streamed = np.stack([f.emotions for f in frames])
    np.testing.assert_allclose(streamed, offline.values, atol=1e-5, rtol=0)
    assert np.abs(np.diff(offline.values, axis=0)).max() > 1e-4  # not a constant curve


@pytest.mark.parametrize(("fps", "skip", "window"), CASES, ids=lambda v: str(v))
def test_random_chunks_give_detects_values_as_soon_as_the_window_allows(
    model: EmotionModel, speech: np.ndarray, fps: Fraction, skip: int, window: int
) -> None:
    offline = model.detect(Audio(speech), fps, buffer_length=window, inferences_to_skip=skip)
    sizes = _chunk_sizes(np.random.default_rng(int(fps * 1001) + skip), len(speech), 32000)
    stream = model.open_stream(fps, buffer_length=window, inferences_to_skip=skip)
    assert stream.lookahead_samples == window - window // 2
    frames, progress = _push_in_chunks(stream, speech, sizes)
    _assert_same_frames(frames, offline)
    # Timeliness: after each push exactly the frames that the audio allows are out (_due);
    # none later, none earlier.
    for received, returned in progress:
        assert returned == _due(len(offline.values), fps, skip, window, received), received


def _due(frames: int, fps: Fraction, skip: int, window: int, received: int) -> int:
    """Frames of an open stream that ``received`` samples allow: the inference's window
    ``[t_k - window//2, t_k - window//2 + window)`` has arrived (``t_k``: the target of the
    first frame of the frame's group) and so has the frame's own target."""
    targets = frame_targets(frames, fps)
    firsts = targets[(np.arange(frames) // (skip + 1)) * (skip + 1)]
    due = (firsts + window - window // 2 <= received) & (targets < received)
    return int(np.count_nonzero(due))


def test_smoothing_carries_across_pushes_and_parameters_apply(
    model: EmotionModel, speech: np.ndarray
) -> None:
    """One sample at a time through the first second, then the rest: the transition smoothing
    and live blend continue from the last frame as offline (a restart would reset them)."""
    params = {"emotion_strength": 1.0, "transition_smoothing": 0.2}
    offline = model.detect(Audio(speech), 30, parameters=params, buffer_length=16000)
    stream = model.open_stream(30, parameters=params, buffer_length=16000)
    frames = []
    for sample in range(16000):
        frames += stream.push(speech[sample : sample + 1])
        assert len(frames) == _due(len(offline.values), Fraction(30), 0, 16000, sample + 1)
    frames += stream.push(speech[16000:]) + stream.close()
    _assert_same_frames(frames, offline)
    plain = model.detect(Audio(speech), 30, buffer_length=16000)
    assert np.abs(plain.values - offline.values).max() > 1e-2  # the parameters applied


def test_ten_minute_stream_holds_less_than_one_window(model: EmotionModel) -> None:
    """An endless stream at the SDK cadence (10 minutes of 1 s pushes) holds fewer samples than
    one window after every push, keeps no logits, and returns every frame by close()."""
    stream = model.open_stream(30, inferences_to_skip=30)
    block = np.random.default_rng(10).uniform(-0.3, 0.3, 16000).astype(np.float32)
    returned = 0
    for second in range(600):
        returned += len(stream.push(np.roll(block, second * 37)))
        assert stream.buffered_samples < 60000, second
        assert returned == stream.frames_returned
    assert len(stream.track.state.logits) == 0  # a stream does not collect its logits
    targets = frame_targets(600 * 30, Fraction(30))
    firsts = targets[(np.arange(len(targets)) // 31) * 31]
    assert returned == int(np.count_nonzero(firsts + 30000 <= 600 * 16000))
    assert returned + len(stream.close()) == 600 * 30
    assert stream.buffered_samples == 0


def test_bad_streams_pushes_cancel_and_close(
    model: EmotionModel, a2e: Any, speech: np.ndarray
) -> None:
    with pytest.raises(ParameterError, match="more than buffer_length"):
        model.open_stream(30, buffer_length=1000, inferences_to_skip=1)
    with pytest.raises(ParameterError, match="buffer_length=1.5 must be an integer"):
        model.stream_executor(1.5)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="emotion_strength"):
        model.open_stream(30, parameters={"emotion_strength": 2.0})
    with pytest.raises(ParameterError, match="differs from the executor's 16000"):
        model.open_stream(30, executor=model.stream_executor(16000))
    other = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))
    with pytest.raises(ParameterError, match="another model"):
        model.open_stream(30, executor=other.stream_executor())
    stream = model.open_stream(30)
    with pytest.raises(AudioInvalidSamplesError, match="pushed samples"):
        stream.push(np.full(10, np.nan, np.float32))
    stream.push(speech[:100])
    with pytest.raises(ParameterError, match="differs from the stream's 16000 Hz"):
        stream.push(speech[:100], 48000)
    stream.cancel()
    with pytest.raises(CancelledError):
        stream.push(speech[:100])
    closed = model.open_stream(30, buffer_length=16000)
    frames = closed.push(speech[:20000]) + closed.close()
    assert len(frames) == 38  # frames with target < 20000
    assert closed.close() == []
    with pytest.raises(ParameterError, match="closed"):
        closed.push(speech[:10])


class _CountingEngine:
    """The model's real engine, counting the windows of each network call (no result changed)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(len(feeds["input_values"]))
        return self._engine.run(feeds)


def test_streams_on_one_executor_share_calls_and_keep_their_own_state(
    a2e: Any, speech: np.ndarray
) -> None:
    """Three streams with their own rate, skip and parameters join at different ticks on one
    executor: a tick's windows of every stream ride in one call, and each stream still gets its
    own detect() values."""
    model = EmotionModel.load(a2e.model_json, EngineSettings("onnxruntime", threads=1))
    counting = _CountingEngine(model.engine(16000))
    model._engines[16000] = counting  # every executor made from now on calls through it
    settings = [
        (Fraction(60), 0, None),
        (Fraction(30000, 1001), 2, {"live_blend_coef": 0.2}),
        (Fraction(24), 0, {"max_emotions": 2}),
    ]
    clips = [speech, speech[8000:60000], speech[::-1].copy()]
    offline = [
        model.detect(Audio(c), f, buffer_length=16000, inferences_to_skip=s, parameters=p)
        for c, (f, s, p) in zip(clips, settings, strict=True)
    ]
    executor = model.stream_executor(16000)
    counting.calls.clear()
    streams: list[Any] = [None, None, None]
    frames: list[list[EmotionFrame]] = [[], [], []]
    at = [0, 0, 0]
    for tick in range(80):
        for k, (fps, skip, params) in enumerate(settings):
            if tick == 2 * k:
                streams[k] = model.open_stream(fps, buffer_length=16000, inferences_to_skip=skip,
                                               parameters=params, executor=executor)  # fmt: skip
            if streams[k] is None or streams[k].closed:
                continue
            size = 1600 + 37 * k  # 100 ms ticks, a little apart
            streams[k].feed(clips[k][at[k] : at[k] + size])
            at[k] += size
        executor.run_ready()
        for k, stream in enumerate(streams):
            if stream is not None and not stream.closed:
                frames[k] += stream.pull()
                if at[k] >= len(clips[k]):
                    frames[k] += stream.close()
    assert all(s is not None and s.closed for s in streams)
    for got, want in zip(frames, offline, strict=True):
        _assert_same_frames(got, want)
    # one stream brings at most 7 windows per 100 ms tick: larger calls held several streams
    assert max(counting.calls) > 7
    assert max(counting.calls) <= 32
    assert executor.tracks == []  # closed streams leave the executor
