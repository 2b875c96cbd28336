"""Audio input: any file soundfile reads, any rate and channel count → 16 kHz mono float32.

Every failure is an :class:`~a2x_core.errors.AudioError` subclass that names the file and
the fix, so the CLI never shows a traceback for a bad clip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import (
    AudioDecodeError,
    AudioEmptyError,
    AudioInvalidSamplesError,
    AudioNotFoundError,
    ParameterError,
)
from .timing import SAMPLE_RATE

log = logging.getLogger("a2x_core")

#: Peak level below which a clip counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4
#: Shortest usable clip: one frame at the slowest sensible rate would be longer, but one
#: 60 fps frame (1/60 s) is the least anything can animate.
MIN_SAMPLES = SAMPLE_RATE // 60


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio at 16 kHz.

    Attributes:
        samples: float32 mono samples in [-1, 1] at 16 kHz.
        path: the source file ("" when made from an array).
        source_rate: the file's own sample rate.
        source_channels: the file's own channel count.
        start_s: where ``samples[0]`` sits in the source file, in seconds.
        warnings: non-fatal findings (silence, clipping).
    """

    samples: np.ndarray
    path: str = ""
    source_rate: int = SAMPLE_RATE
    source_channels: int = 1
    start_s: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence libmpg123's "Note: Illegal Audio-MPEG-Header" chatter on fd 2 while decoding;
    the typed error we raise says what matters."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _to_mono_16k(data: np.ndarray, rate: int) -> np.ndarray:
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return mono


def audio_from_array(
    samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *, name: str = "<array>"
) -> Audio:
    """Wrap in-memory samples (any rate, mono or ``[n, channels]``) as checked 16 kHz audio."""
    data = np.asarray(samples)
    if data.ndim not in (1, 2) or data.size == 0:
        raise AudioEmptyError("no samples", path=name, hint="pass a 1-D or [n, channels] array")
    if not np.issubdtype(data.dtype, np.floating):
        scale = float(np.iinfo(data.dtype).max) + 1.0 if np.issubdtype(data.dtype, np.integer) else 1.0
        data = data.astype(np.float32) / scale
    return _checked(_to_mono_16k(data, int(sample_rate)), name, int(sample_rate), 1, 0.0)


def _checked(mono: np.ndarray, path: str, rate: int, channels: int, start_s: float) -> Audio:
    if not np.all(np.isfinite(mono)):
        bad = int(np.count_nonzero(~np.isfinite(mono)))
        raise AudioInvalidSamplesError(
            f"{bad} samples are NaN or infinite",
            path=path,
            hint="re-export the clip from your audio editor as 16- or 24-bit PCM",
        )
    if len(mono) < MIN_SAMPLES:
        raise AudioEmptyError(
            f"only {len(mono) / SAMPLE_RATE * 1000:.1f} ms of audio, shorter than one frame",
            path=path,
            hint="use a clip of at least 1/60 s (or widen --start/--end)",
        )
    warnings: list[str] = []
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        message = f"{path}: the audio is silent (peak {peak:.1e}); the face will stay at rest"
        log.warning("%s", message)
        warnings.append(message)
    elif peak >= 0.999:
        clipped = float(np.mean(np.abs(mono) >= 0.999))
        if clipped > 0.001:
            message = f"{path}: {clipped:.1%} of samples are clipped; lip-sync may suffer"
            log.warning("%s", message)
            warnings.append(message)
    return Audio(mono, path, rate, channels, start_s, tuple(warnings))


def decode_audio(
    path: str | Path, *, start_s: float | None = None, end_s: float | None = None
) -> Audio:
    """Read ``path`` (wav, flac, ogg, mp3, ...) as 16 kHz mono float32, optionally a time range.

    Raises:
        AudioNotFoundError, AudioDecodeError, AudioEmptyError, AudioInvalidSamplesError,
        ParameterError (start/end outside the clip).
    """
    import soundfile as sf

    file = Path(path)
    if not file.exists():
        raise AudioNotFoundError("no such file", path=file, hint="check the path and spelling")
    if file.is_dir():
        raise AudioDecodeError("is a folder, not an audio file", path=file, hint="name a file")
    try:
        with _quiet_native_stderr(), sf.SoundFile(str(file)) as handle:
            rate, channels, total = handle.samplerate, handle.channels, handle.frames
            first = 0 if start_s is None else int(round(start_s * rate))
            last = total if end_s is None else min(total, int(round(end_s * rate)))
            if total > 0 and first >= total:
                raise ParameterError(
                    f"--start {start_s} s is past the end of the clip ({total / rate:.3f} s)",
                    hint="use a start time inside the clip",
                )
            handle.seek(min(first, total))
            data = handle.read(max(0, last - first), dtype="float32", always_2d=True)
    except PermissionError:
        raise AudioDecodeError(
            "cannot be read (permission denied)", path=file, hint="check the file's permissions"
        ) from None
    except (sf.LibsndfileError, RuntimeError, sf.SoundFileError) as error:
        raise AudioDecodeError(
            f"is not readable audio ({error})",
            path=file,
            hint="convert it to WAV, FLAC, OGG or MP3 (e.g. with ffmpeg -i IN -ar 16000 OUT.wav)",
        ) from None
    if data.size == 0:
        raise AudioEmptyError("contains no audio samples", path=file, hint="re-export the clip")
    return _checked(_to_mono_16k(data, rate), str(file), rate, channels, first / rate)
