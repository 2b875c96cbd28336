"""A stream on a loaded model: push audio as it arrives, get each frame as soon as the model's
look-ahead allows, close at the end (``docs/streaming.md``).

A :class:`Stream` is one track of an :class:`a2x_core.executor.loop.Executor`. Streams opened on the same
executor share its network calls: :meth:`Stream.push` runs what became ready for *every* open
stream of the executor in batched calls and returns this stream's frames (the others' wait for
their :meth:`Stream.pull`); a server with many streams :meth:`Stream.feed` s each, calls
:meth:`a2x_core.executor.loop.Executor.run_ready` once per tick, then pulls each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import ParameterError
from ..postprocess.chain import FrameBlock
from ..timing import SAMPLE_RATE
from .loop import Executor, Track, drain

#: What a stream hands out per frame: :class:`a2x_core.audio.accumulator.StreamFrame` for the face models,
#: :class:`a2x_core.models.audio2emotion.EmotionFrame` for Audio2Emotion.
FrameT = TypeVar("FrameT")
#: Turns a track's finished frames (first index ``first``) into frames.
FramesOf = Callable[[Track, FrameBlock, int], list[FrameT]]


class Stream(Generic[FrameT]):
    """Pushed audio in, finished frames out; made by a model's ``open_stream``.

    Not thread-safe: push from one thread (or hold a lock around every stream of one executor).
    """

    def __init__(
        self, executor: Executor, track: Track, frames_of: FramesOf[FrameT], lookahead_samples: int
    ) -> None:
        self.executor = executor
        self.track = track
        self._frames_of = frames_of
        self._next_frame = 0  # index of the first frame not yet returned
        #: Samples (16 kHz) after a frame's target sample that the model reads before the frame
        #: can be computed: the inherent latency of the model, before compute.
        self.lookahead_samples = int(lookahead_samples)

    # ------------------------------------------------------------------------- monitoring

    @property
    def frames_returned(self) -> int:
        """Frames returned so far (the next frame's index)."""
        return self._next_frame

    @property
    def samples_received(self) -> int:
        """16 kHz samples pushed so far (after resampling)."""
        return self.track.audio.received

    @property
    def buffered_samples(self) -> int:
        """16 kHz samples held for frames still to come (bounded on endless streams)."""
        return self.track.audio.buffered

    @property
    def lookahead_s(self) -> float:
        return self.lookahead_samples / SAMPLE_RATE

    @property
    def closed(self) -> bool:
        return self.track.life.closed

    # ------------------------------------------------------------------------- audio in

    def feed(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> None:
        """Add audio without running the model (run the executor, then :meth:`pull`).

        Raises:
            ParameterError: a bad rate, a rate other than the first push's, or a closed stream.
            AudioDecodeError, AudioInvalidSamplesError: not audio samples; NaN/inf or huge values.
            CancelledError: the stream was cancelled.
        """
        self.track.life.check("push")
        self.track.audio.push(samples, sample_rate)

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[FrameT]:
        """Add audio (mono, or ``[n, channels]`` mixed down; float in [-1, 1] or integer PCM),
        run every stream of the executor as far as their audio allows, and return this stream's
        new frames in order; any number of samples, even 0. Raises as :meth:`feed`."""
        self.feed(samples, sample_rate)
        self.executor.run_ready()
        return self.pull()

    def pull(self) -> list[FrameT]:
        """The frames finished since the last push/pull, in order."""
        block = drain(self.track)
        if block is None:
            return []
        frames = self._frames_of(self.track, block, self._next_frame)
        self._next_frame += len(frames)
        return frames

    def close(self) -> list[FrameT]:
        """End of audio: flush the resampler and return every remaining frame (their windows
        zero-padded past the end as offline); then the stream holds nothing. Closing again
        returns ``[]``.

        Raises:
            CancelledError: the stream was cancelled.
        """
        life = self.track.life
        if life.state == "closed":
            return []
        life.check("close")
        self.track.audio.flush()
        self.executor.run_ready()
        frames = self.pull()
        life.state = "closed"
        self._leave()
        return frames

    def cancel(self) -> None:
        """Stop now: drop the buffered audio and state; later pushes raise CancelledError."""
        if self.track.life.state == "open":
            self.track.life.state = "cancelled"
            self._leave()

    def _leave(self) -> None:
        self.executor.remove(self.track)
        self.track.audio.clear()
        self.track.blocks.clear()


def check_executor(executor: Executor, model: Any, step_type: type) -> None:
    """Refuse an executor that does not run ``model``'s streams: another model's or kind's, or
    an offline run's (whose step holds a device pipeline sized for its clips).

    Raises:
        ParameterError: naming the fix.
    """
    step = executor.step
    if (not isinstance(step, step_type) or getattr(step, "model", None) is not model
            or getattr(step, "pipeline", None) is not None):  # fmt: skip
        raise ParameterError(
            "the executor belongs to another model",
            hint="open the stream with this model's stream_executor()",
        )


def face_stream_executor(model: Any, options: Any, executor: Executor | None,
                         step_type: type) -> Executor:  # fmt: skip
    """The executor a new stream of an Audio2Face model joins (a new one of its own when
    None), after the checks every face model's stream makes.

    Raises:
        ParameterError: ``geometry`` (not streamed), or an executor :func:`check_executor`
            refuses.
    """
    if options.geometry:
        raise ParameterError(
            "geometry=True is not available on a stream yet",
            hint="stream weights only, or run model.animate on the whole clip for geometry",
        )
    executor = executor or model.stream_executor()
    check_executor(executor, model, step_type)
    return executor
