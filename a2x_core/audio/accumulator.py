"""Audio that is still arriving: the per-stream accumulator every streaming model reads from,
the frame a stream hands back, and the open/closed/cancelled life cycle they share
(``docs/streaming.md``).

The accumulator holds 16 kHz float32 samples addressed by their absolute index from the
stream's first sample, so a model asks for "samples ``a .. b``" exactly as the offline code
indexes a whole clip; the samples no future frame needs are dropped (bounded memory on an
endless stream). Pushes at another rate go through soxr's streaming resampler at the decoder's
settings (:func:`a2x_core.audio.decode.decode_audio`), whose output does not depend on how the signal is cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import AudioDecodeError, AudioInvalidSamplesError, CancelledError, ParameterError
from ..timing import SAMPLE_RATE
from .decode import MAX_SAMPLE_MAGNITUDE, _as_float_samples, _check_rate

#: Name used in errors about pushed samples (they have no file).
STREAM_NAME = "<stream>"


@dataclass(frozen=True)
class StreamFrame:
    """One finished frame of a stream (the same values as row ``index`` of the offline result).

    Attributes:
        index: frame number from the stream's start (0, 1, ...).
        time_s: ``index / fps`` seconds after the stream's first sample.
        weights: float32 [52] ARKit blendshape weights, in :data:`.names.ARKIT_52` order.
        tongue_weights: float32 [16], in :data:`.names.TONGUE_16` order (zeros where the model
            has no tongue).
        jaw_transform: float32 [4, 4] lower-teeth transform (``M[:3, 3]`` = translation).
        eye_rotations: float32 [6] (right x, y, 0, left x, y, 0) in degrees.
        emotions: float32 [10] emotion input of this frame (the model's order).
        head_rotation: float32 [3] head (pitch, yaw, roll) in radians (zeros where the model
            moves no head; :mod:`a2x_core.head.motion`).
    """

    index: int
    time_s: float
    weights: np.ndarray
    tongue_weights: np.ndarray
    jaw_transform: np.ndarray
    eye_rotations: np.ndarray
    emotions: np.ndarray
    head_rotation: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))


def stream_frames(
    block: dict[str, np.ndarray],
    first: int,
    fps: Fraction,
    skin_columns: np.ndarray,
    tongue_columns: np.ndarray,
    emotions: np.ndarray,
) -> list[StreamFrame]:
    """A face model's finished frames (a :data:`a2x_core.postprocess.chain.FrameBlock`, its first frame
    ``first``) as StreamFrames: pose weights picked into ARKit-52 / tongue-16 order by the
    model's columns, with each frame's emotion input."""
    skin = block["skin"][:, skin_columns]
    tongue = block["tongue"][:, tongue_columns]
    step_s = fps.denominator / fps.numerator
    return [
        StreamFrame(
            index=first + i,
            time_s=(first + i) * step_s,
            weights=np.ascontiguousarray(skin[i], dtype=np.float32),
            tongue_weights=np.ascontiguousarray(tongue[i], dtype=np.float32),
            jaw_transform=np.asarray(block["jaw"][i], dtype=np.float32),
            eye_rotations=np.asarray(block["eyes"][i], dtype=np.float32),
            emotions=np.asarray(emotions[i], dtype=np.float32),
        )
        for i in range(len(skin))
    ]


class StreamLife:
    """The open -> closed | cancelled life cycle of a stream, with the errors of a misuse."""

    def __init__(self) -> None:
        self.state = "open"

    @property
    def closed(self) -> bool:
        return self.state != "open"

    def check(self, action: str) -> None:
        """Raise unless the stream is open.

        Raises:
            CancelledError: it was cancelled. ParameterError: it was closed.
        """
        if self.state == "cancelled":
            raise CancelledError(f"cannot {action}: the stream was cancelled")
        if self.state == "closed":
            raise ParameterError(
                f"cannot {action}: the stream is closed", hint="open a new stream"
            )


class AudioAccumulator:
    """Pushed audio as 16 kHz float32 samples with absolute indices; see the module docstring."""

    def __init__(self) -> None:
        self._samples = np.zeros(0, dtype=np.float32)  # samples from index _first on
        self._first = 0  # absolute index of _samples[0]
        self.received = 0  # 16 kHz samples pushed so far (after resampling)
        self.rate: int | None = None  # fixed by the first valid push
        self._resampler: Any = None
        self.ended = False  # flush() was called: no more audio comes

    @classmethod
    def whole(cls, samples: np.ndarray) -> AudioAccumulator:
        """A closed clip's 16 kHz samples, held as they are (the offline run: no copy)."""
        audio = cls()
        audio._samples = np.asarray(samples, dtype=np.float32)
        audio.received = len(audio._samples)
        audio.rate = SAMPLE_RATE
        audio.ended = True
        return audio

    @property
    def buffered(self) -> int:
        """Samples held now (bounded on endless streams when the reader drops)."""
        return len(self._samples)

    @property
    def first(self) -> int:
        """Absolute index of the oldest sample still held."""
        return self._first

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> int:
        """Check, mix down and resample one block and append it; returns the 16 kHz samples
        added (a resampler may hold a few back until later pushes or :meth:`flush`).

        Raises:
            ParameterError: a bad rate, or a rate other than the first push's.
            AudioDecodeError: not an array of samples. AudioInvalidSamplesError: NaN/inf or huge.
        """
        mono = self._mono_16k(samples, sample_rate)
        self._append(mono)
        return len(mono)

    def flush(self) -> int:
        """End of audio: the resampler's tail is appended; returns the samples added."""
        added = 0
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            mono = np.asarray(tail, np.float32)
            self._append(mono)
            added = len(mono)
        self._resampler = None
        self.ended = True
        return added

    def read(self, start: int, length: int, strength: float = 1.0) -> np.ndarray:
        """Samples ``start .. start + length`` (absolute), zero outside ``[0, received)``, times
        ``strength`` (skipped at exactly 1, as the SDK's ``AudioAccumulator::Read``).

        Raises:
            ValueError: part of the span was already dropped (a reader bug, not user input).
        """
        out = np.zeros(length, np.float32)
        lo, hi = max(start, 0), min(start + length, self.received)
        if hi > lo:
            if lo < self._first:
                raise ValueError(f"samples from {lo} were dropped (held from {self._first})")
            out[lo - start : hi - start] = self._samples[lo - self._first : hi - self._first]
        if strength != 1.0:
            out *= np.float32(strength)
        return out

    def view(self) -> tuple[np.ndarray, int]:
        """The held samples and the absolute index of the first (read-only use)."""
        return self._samples, self._first

    def drop_before(self, index: int) -> None:
        """Forget samples before absolute ``index`` (no later read reaches them)."""
        drop = min(int(index) - self._first, len(self._samples))
        if drop > 0:
            # a view, not a copy (a closed clip is read to its end without copying it again and
            # again); the next push's concatenation releases the dropped samples
            self._samples = self._samples[drop:]
            self._first += drop

    def clear(self) -> None:
        """Drop everything (cancel / close)."""
        self._first += len(self._samples)
        self._samples = np.zeros(0, dtype=np.float32)
        self._resampler = None

    # ------------------------------------------------------------------------- internals

    def _mono_16k(self, samples: Any, sample_rate: int) -> np.ndarray:
        rate = _check_rate(sample_rate, "sample_rate", STREAM_NAME)
        if self.rate is not None and rate != self.rate:
            raise ParameterError(
                f"sample_rate={rate} differs from the stream's {self.rate} Hz",
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
        if self.rate is None:
            self.rate = rate
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
            self.received += len(mono)
