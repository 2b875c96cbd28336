"""Streaming on an Audio2Face-3D regression model: push audio as it arrives, get each frame as
soon as the network's look-ahead allows (issue 12, first increment; ``docs/streaming.md``).

Frame ``k`` targets 16 kHz sample ``t_k`` (:func:`.timing.frame_targets`) and its network window
is ``[t_k - buffer_ofs, t_k - buffer_ofs + buffer_len)``, so it can run once the stream holds
``t_k + buffer_len - buffer_ofs`` samples (260 ms after ``t_k`` for the v2.3 networks' 8320/4160).
``close()`` runs the remaining frames with zeros past the end, exactly as the offline run ends,
so a stream yields the frames of :meth:`.RegressionModel.animate` on the whole clip: the same
windows, network calls of the same ``frames_per_call`` rows, and one :class:`.TrackFrames` per
stream whose filter, saccade and solver state carries across pushes.

Audio that no future frame's window reaches is dropped after every push: an endless stream keeps
about one window plus one push of samples. Non-16 kHz input is resampled with soxr's streaming
resampler (the same settings as :func:`.audio.decode_audio`, whose output does not depend on
how the signal is cut into blocks).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from .blendshapes import BlendshapeSolver
from .emotion import explicit_emotion_curve
from .errors import ParameterError
from .options import InferenceOptions
from .postprocess import frame_dt
from .stream_audio import AudioAccumulator, StreamFrame, StreamLife
from .timing import SAMPLE_RATE, num_frames_for
from .windows import audio_windows

if TYPE_CHECKING:
    from .regression import RegressionModel

__all__ = ["RegressionStream", "StreamFrame"]


class RegressionStream:
    """Pushed audio in, finished frames out; made by :meth:`.RegressionModel.open_stream`.

    Not thread-safe: push from one thread (or hold a lock). Options as for ``animate``; emotion
    key times are seconds from the stream's first sample. ``strength``/``smoothing_s`` are not
    applied (they are the Animator's output shaping, not the model's, as with ``animate``).
    """

    def __init__(self, model: RegressionModel, options: InferenceOptions) -> None:
        if options.geometry:
            raise ParameterError(
                "geometry=True is not available on a stream yet",
                hint="stream weights only, or run model.animate on the whole clip for geometry",
            )
        self.model = model
        self.options = options
        info = model.package.network_info
        settings = model.settings(options.parameters)
        self._settings = settings
        self.fps = Fraction(options.fps)
        dt = frame_dt(self.fps.numerator, self.fps.denominator)
        skin_solver = BlendshapeSolver(model.package.skin.data, settings.skin)
        tongue_solver = BlendshapeSolver(model.package.tongue.data, settings.tongue)
        self._frames, self._skin_basis = model._track_stages(
            settings, dt, skin_solver, tongue_solver, False
        )
        self._emotion_curve = explicit_emotion_curve(
            options.emotions, model.emotion_names, info.default_emotion, start_s=0.0
        )
        self._buffer_len, self._buffer_ofs = int(info.buffer_len), int(info.buffer_ofs)
        self._strength = float(settings.animator["input_strength"])
        #: Samples after a frame's target that its window needs (may be <= 0 for odd networks).
        self.lookahead_samples = self._buffer_len - self._buffer_ofs
        self._audio = AudioAccumulator()
        self._next_frame = 0  # index of the first frame not yet returned
        self._life = StreamLife()
        model._reserve_batch(max(1, int(model.frames_per_call)))  # TensorRT: one call's rows

    # ------------------------------------------------------------------------- public

    @property
    def frames_returned(self) -> int:
        """Frames returned so far (the next frame's index)."""
        return self._next_frame

    @property
    def samples_received(self) -> int:
        """16 kHz samples pushed so far (after resampling)."""
        return self._audio.received

    @property
    def buffered_samples(self) -> int:
        """16 kHz samples held for frames still to come (bounded on endless streams)."""
        return self._audio.buffered

    @property
    def closed(self) -> bool:
        return self._life.closed

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[StreamFrame]:
        """Add audio (mono, or ``[n, channels]`` mixed down; float in [-1, 1] or integer PCM) and
        return the frames whose windows it completed, in order; any number of samples, even 0.

        Raises:
            ParameterError: a bad rate, or a rate other than the first push's.
            AudioDecodeError, AudioInvalidSamplesError: not audio samples; NaN/inf or huge values.
            CancelledError: the stream was cancelled. ParameterError: it was closed.
        """
        self._life.check("push")
        self._audio.push(samples, sample_rate)
        return self._run(final=False)

    def close(self) -> list[StreamFrame]:
        """End of audio: flush the resampler and return every remaining frame, their windows
        zero-padded past the end as offline; then the stream holds nothing. Closing again
        returns ``[]``.

        Raises:
            CancelledError: the stream was cancelled.
        """
        if self._life.state == "closed":
            return []
        self._life.check("close")
        self._audio.flush()
        frames = self._run(final=True)
        self._life.state = "closed"
        self._audio.clear()
        return frames

    def cancel(self) -> None:
        """Stop now: drop the buffered audio and state; later pushes raise CancelledError."""
        if self._life.state == "open":
            self._life.state = "cancelled"
            self._audio.clear()

    # ------------------------------------------------------------------------- internals

    def _ready_frames(self, final: bool) -> int:
        """How many frames (from 0) can run now: after close every frame whose target lies in
        the audio (the offline count); before, those whose whole window has arrived."""
        existing = num_frames_for(self._audio.received, self.fps, SAMPLE_RATE)
        if final:
            return existing
        # window complete <=> t_k + lookahead <= received <=> t_k < received - lookahead + 1
        complete = num_frames_for(
            self._audio.received - self.lookahead_samples + 1, self.fps, SAMPLE_RATE
        )
        return min(existing, complete)

    def _run(self, final: bool) -> list[StreamFrame]:
        """Run the ready frames through the network and the track's stages, in calls of
        ``frames_per_call`` rows (zero rows pad a short call, as offline), then drop the audio
        the next frame no longer needs."""
        model, frames = self.model, self._frames
        info = model.package.network_info
        ready = self._ready_frames(final)
        step = max(1, int(model.frames_per_call))
        out: list[StreamFrame] = []
        while self._next_frame < ready:
            first = self._next_frame
            n = min(step, ready - first)
            targets = self._targets(first, n)
            audio_rows = np.zeros((step, 1, self._buffer_len), dtype=np.float32)
            emotion_rows = np.zeros((step, 1, info.emotion_size), dtype=np.float32)
            held, first_held = self._audio.view()
            audio_rows[:n, 0] = audio_windows(
                held, targets - first_held, self._buffer_len, self._buffer_ofs, self._strength
            )
            explicit = self._emotion_curve.sample(targets)
            emotion_rows[:n, 0] = model._emotion_input(self._settings, explicit)
            result = model._infer(audio_rows, emotion_rows)
            model._add_outputs(frames, result[:n, 0], self._skin_basis)
            out.extend(self._take(first, explicit))
            self._next_frame = first + n
        self._drop_used()
        return out

    def _targets(self, first: int, count: int) -> np.ndarray:
        """Target samples of frames ``first .. first + count``: the offline rule
        (:func:`.timing.frame_targets`) without building every earlier frame's target."""
        index = np.arange(first, first + count, dtype=np.int64)
        return (index * (SAMPLE_RATE * self.fps.denominator)) // self.fps.numerator

    def _take(self, first: int, explicit: np.ndarray) -> list[StreamFrame]:
        """The frames the stages just finished, as StreamFrames; empties the stages' output
        lists (their filter/saccade/solver state stays) so memory does not grow."""
        frames, model = self._frames, self.model
        skin = frames.skin_w.pop()[:, model._skin_columns]
        tongue = frames.tongue_w.pop()[:, model._tongue_columns]
        jaw, eyes = frames.jaw.pop(), frames.eye.pop()
        step_s = self.fps.denominator / self.fps.numerator
        return [
            StreamFrame(
                index=first + i,
                time_s=(first + i) * step_s,
                weights=np.ascontiguousarray(skin[i], dtype=np.float32),
                tongue_weights=np.ascontiguousarray(tongue[i], dtype=np.float32),
                jaw_transform=np.asarray(jaw[i], dtype=np.float32),
                eye_rotations=np.asarray(eyes[i], dtype=np.float32),
                emotions=np.asarray(explicit[i], dtype=np.float32),
            )
            for i in range(len(skin))
        ]

    def _drop_used(self) -> None:
        """Forget samples before the next frame's window start (bounded memory)."""
        next_target = int(self._targets(self._next_frame, 1)[0])
        self._audio.drop_before(max(0, next_target - self._buffer_ofs))
