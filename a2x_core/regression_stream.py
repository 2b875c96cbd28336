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

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import MAX_SAMPLE_MAGNITUDE, _as_float_samples, _check_rate
from .blendshapes import BlendshapeSolver
from .emotion import explicit_emotion_curve
from .errors import AudioDecodeError, AudioInvalidSamplesError, CancelledError, ParameterError
from .options import InferenceOptions
from .postprocess import frame_dt
from .timing import SAMPLE_RATE, num_frames_for
from .windows import audio_windows

if TYPE_CHECKING:
    from .regression import RegressionModel

#: Name used in errors about pushed samples (they have no file).
STREAM_NAME = "<stream>"


@dataclass(frozen=True)
class StreamFrame:
    """One finished frame of a stream (the same values as row ``index`` of the offline result).

    Attributes:
        index: frame number from the stream's start (0, 1, ...).
        time_s: ``index / fps`` seconds after the stream's first sample.
        weights: float32 [52] ARKit blendshape weights, in :data:`.names.ARKIT_52` order.
        tongue_weights: float32 [16], in :data:`.names.TONGUE_16` order.
        jaw_transform: float32 [4, 4] lower-teeth transform (``M[:3, 3]`` = translation).
        eye_rotations: float32 [6] (right x, y, 0, left x, y, 0) in degrees.
        emotions: float32 [10] explicit emotion input of this frame (the model's order).
    """

    index: int
    time_s: float
    weights: np.ndarray
    tongue_weights: np.ndarray
    jaw_transform: np.ndarray
    eye_rotations: np.ndarray
    emotions: np.ndarray


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
        self._samples = np.zeros(0, dtype=np.float32)  # 16 kHz audio from sample _first on
        self._first = 0  # absolute 16 kHz index of _samples[0]
        self._received = 0  # 16 kHz samples pushed so far (after resampling)
        self._next_frame = 0  # index of the first frame not yet returned
        self._rate: int | None = None  # fixed by the first push
        self._resampler: Any = None
        self._state = "open"  # "open", "closed", "cancelled"
        model._reserve_batch(max(1, int(model.frames_per_call)))  # TensorRT: one call's rows

    # ------------------------------------------------------------------------- public

    @property
    def frames_returned(self) -> int:
        """Frames returned so far (the next frame's index)."""
        return self._next_frame

    @property
    def samples_received(self) -> int:
        """16 kHz samples pushed so far (after resampling)."""
        return self._received

    @property
    def buffered_samples(self) -> int:
        """16 kHz samples held for frames still to come (bounded on endless streams)."""
        return len(self._samples)

    @property
    def closed(self) -> bool:
        return self._state != "open"

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[StreamFrame]:
        """Add audio (mono, or ``[n, channels]`` mixed down; float in [-1, 1] or integer PCM) and
        return the frames whose windows it completed, in order; any number of samples, even 0.

        Raises:
            ParameterError: a bad rate, or a rate other than the first push's.
            AudioDecodeError, AudioInvalidSamplesError: not audio samples; NaN/inf or huge values.
            CancelledError: the stream was cancelled. ParameterError: it was closed.
        """
        self._check_open("push")
        mono = self._mono_16k(samples, sample_rate)
        self._append(mono)
        return self._run(final=False)

    def close(self) -> list[StreamFrame]:
        """End of audio: flush the resampler and return every remaining frame, their windows
        zero-padded past the end as offline; then the stream holds nothing. Closing again
        returns ``[]``.

        Raises:
            CancelledError: the stream was cancelled.
        """
        if self._state == "closed":
            return []
        self._check_open("close")
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self._append(np.asarray(tail, np.float32))
        frames = self._run(final=True)
        self._state = "closed"
        self._release()
        return frames

    def cancel(self) -> None:
        """Stop now: drop the buffered audio and state; later pushes raise CancelledError."""
        if self._state == "open":
            self._state = "cancelled"
            self._release()

    # ------------------------------------------------------------------------- internals

    def _check_open(self, action: str) -> None:
        if self._state == "cancelled":
            raise CancelledError(f"cannot {action}: the stream was cancelled")
        if self._state == "closed":
            raise ParameterError(
                f"cannot {action}: the stream is closed", hint="open a new one with open_stream"
            )

    def _release(self) -> None:
        self._samples = np.zeros(0, dtype=np.float32)
        self._resampler = None

    def _mono_16k(self, samples: Any, sample_rate: int) -> np.ndarray:
        """Checked, mixed-down, resampled float32 samples of one push."""
        rate = _check_rate(sample_rate, "sample_rate", STREAM_NAME)
        if self._rate is not None and rate != self._rate:
            raise ParameterError(
                f"sample_rate={rate} differs from the stream's {self._rate} Hz",
                hint="push every block at the first push's rate, or open a new stream",
            )
        try:
            data = np.asarray(samples)
        except (TypeError, ValueError) as error:
            raise AudioDecodeError(f"is not an array of samples ({error})", path=STREAM_NAME,
                                   hint="push a 1-D or [n, channels] NumPy array") from None  # fmt: skip
        if data.ndim not in (1, 2):
            raise AudioDecodeError(f"pushed samples have {data.ndim} dimensions",
                                   path=STREAM_NAME, hint="push a 1-D or [n, channels] array")  # fmt: skip
        data = _as_float_samples(data, STREAM_NAME)
        # as audio_from_array: float32 first, then the channel mean
        mono = data.astype(np.float32, copy=False).mean(axis=1) if data.ndim == 2 else data
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        bad = np.count_nonzero(~(np.abs(mono) <= MAX_SAMPLE_MAGNITUDE))  # NaN counts as bad
        if bad:
            raise AudioInvalidSamplesError(
                f"{bad} pushed samples are NaN, infinite or beyond +-{MAX_SAMPLE_MAGNITUDE:g}",
                path=STREAM_NAME, hint="push float samples in [-1, 1] or integer PCM",
            )  # fmt: skip
        if self._rate is None:  # the first valid push fixes the rate
            self._rate = rate
            if rate != SAMPLE_RATE:
                import soxr

                self._resampler = soxr.ResampleStream(
                    rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"
                )
        if self._resampler is not None:
            mono = np.asarray(self._resampler.resample_chunk(mono, last=False), np.float32)
        return mono

    def _append(self, mono: np.ndarray) -> None:
        if len(mono):
            self._samples = np.concatenate([self._samples, mono])
            self._received += len(mono)

    def _ready_frames(self, final: bool) -> int:
        """How many frames (from 0) can run now: after close every frame whose target lies in
        the audio (the offline count); before, those whose whole window has arrived."""
        existing = num_frames_for(self._received, self.fps, SAMPLE_RATE)
        if final:
            return existing
        # window complete <=> t_k + lookahead <= received <=> t_k < received - lookahead + 1
        complete = num_frames_for(
            self._received - self.lookahead_samples + 1, self.fps, SAMPLE_RATE
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
            audio_rows[:n, 0] = audio_windows(
                self._samples, targets - self._first, self._buffer_len, self._buffer_ofs,
                self._strength,
            )  # fmt: skip
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
        keep_from = max(0, next_target - self._buffer_ofs)
        drop = min(keep_from - self._first, len(self._samples))
        if drop > 0:
            self._samples = self._samples[drop:].copy()
            self._first += drop
