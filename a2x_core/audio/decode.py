"""Audio input: any file soundfile reads, any rate and channel count → 16 kHz mono float32.

Every failure is an :class:`~a2x_core.errors.AudioError` subclass that names the file and
the fix, so the CLI never shows a traceback for a bad clip. Files are decoded, mixed down and
resampled in blocks until the decoder says EOF: a damaged header's frame count is never
trusted for an allocation, and a long file never sits in memory at its own rate.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    AudioDecodeError,
    AudioEmptyError,
    AudioInvalidSamplesError,
    AudioNotFoundError,
    ParameterError,
)
from ..inputs import regular_file_status
from ..timing import SAMPLE_RATE

log = logging.getLogger("a2x_core")

#: Peak level below which a clip counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4
#: Shortest usable clip: one frame at the slowest sensible rate would be longer, but one
#: 60 fps frame (1/60 s) is the least anything can animate.
MIN_SAMPLES = SAMPLE_RATE // 60
#: Samples beyond this magnitude (+60 dBFS) are damage, not sound: float audio with headroom
#: stays within a few units, while a corrupted float file holds values up to 3e38 that turn
#: every model's arithmetic into NaN.
MAX_SAMPLE_MAGNITUDE = 1000.0
#: Source rates a2x accepts. Below 4 kHz no speech survives (telephone audio is 8 kHz); a header
#: that says 1 Hz is damaged and would turn a 16 KB file into hours of audio.
MIN_SOURCE_RATE = 4000
MAX_SOURCE_RATE = 768_000
#: Samples (frames x channels) decoded per block: 1 MB of float32 whatever the channel count
#: (a damaged header may claim hundreds of channels).
DECODE_BLOCK_SAMPLES = 1 << 18
#: A header's length estimate is trusted for the output buffer only up to this many 16 kHz
#: samples per byte of file (real codecs stay far below); beyond it the buffer grows as needed.
MAX_SAMPLES_PER_BYTE = 64

#: ``--raw-format`` names → (soundfile subtype, endianness) of headerless mono PCM.
RAW_FORMATS: dict[str, tuple[str, str]] = {
    "s8": ("PCM_S8", "FILE"),
    "u8": ("PCM_U8", "FILE"),
    "s16le": ("PCM_16", "LITTLE"),
    "s16be": ("PCM_16", "BIG"),
    "s24le": ("PCM_24", "LITTLE"),
    "s24be": ("PCM_24", "BIG"),
    "s32le": ("PCM_32", "LITTLE"),
    "s32be": ("PCM_32", "BIG"),
    "f32le": ("FLOAT", "LITTLE"),
    "f32be": ("FLOAT", "BIG"),
    "f64le": ("DOUBLE", "LITTLE"),
    "f64be": ("DOUBLE", "BIG"),
}
#: File name endings of headerless PCM: their errors point at --raw-rate/--raw-format.
RAW_SUFFIXES = (".raw", ".pcm", ".sln", ".s16", ".u8", ".f32")
_RAW_HINT = (
    "a headerless file needs its sample rate and sample format: pass --raw-rate HZ and "
    f"--raw-format ({', '.join(RAW_FORMATS)}) (API: decode_audio(path, raw_rate=..., "
    "raw_format=...)), or convert it to WAV"
)


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


def _check_rate(rate: Any, name: str, path: str) -> int:
    """A sample rate as an int in [MIN_SOURCE_RATE, MAX_SOURCE_RATE], or a typed error."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ParameterError(f"{name}={rate!r} must be a sample rate in Hz", path=path or None,
                             hint="pass an integer such as 16000 or 48000")  # fmt: skip
    value = float(rate)
    if not (math.isfinite(value) and value == int(value)):
        raise ParameterError(f"{name}={rate!r} must be a whole number of Hz", path=path or None,
                             hint="pass an integer such as 16000 or 48000")  # fmt: skip
    if not MIN_SOURCE_RATE <= value <= MAX_SOURCE_RATE:
        raise ParameterError(
            f"{name}={rate!r} is out of range", path=path or None,
            hint=f"use {MIN_SOURCE_RATE}..{MAX_SOURCE_RATE} Hz",
        )  # fmt: skip
    return int(value)


class _Resampler:
    """Mixes blocks down to mono and resamples them to 16 kHz as a stream (bit-identical to
    resampling the whole signal at once), into a buffer that grows only as needed."""

    def __init__(self, rate: int, expected_samples: int) -> None:
        self._stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self._buffer = np.empty(max(expected_samples, 1024), dtype=np.float32)
        self._size = 0

    def add(self, block: np.ndarray, last: bool = False) -> None:
        mono = block.mean(axis=1) if block.ndim == 2 else block
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self._stream is not None:
            mono = self._stream.resample_chunk(mono, last=last)
        end = self._size + len(mono)
        if end > len(self._buffer):
            self._buffer.resize(max(end, 2 * len(self._buffer)), refcheck=False)
        self._buffer[self._size : end] = mono
        self._size = end

    def samples(self) -> np.ndarray:
        """The resampled signal (the buffer, shrunk in place to its length)."""
        self._buffer.resize(self._size, refcheck=False)
        return self._buffer


def _block_frames(channels: int) -> int:
    return max(256, DECODE_BLOCK_SAMPLES // max(channels, 1))


def _to_mono_16k(data: np.ndarray, rate: int) -> np.ndarray:
    resampler = _Resampler(rate, math.ceil(len(data) * SAMPLE_RATE / rate) + 64)
    step = _block_frames(data.shape[1] if data.ndim == 2 else 1)
    for first in range(0, len(data), step):
        resampler.add(data[first : first + step])
    resampler.add(np.zeros((0, *data.shape[1:]), np.float32), last=True)
    return resampler.samples()


def _as_float_samples(data: np.ndarray, name: str) -> np.ndarray:
    """Integer PCM (signed or unsigned) scaled to [-1, 1); floats as they are; anything else
    (complex, text, objects, booleans) refused rather than silently reinterpreted."""
    kind = data.dtype.kind
    if kind == "f":
        return data
    if kind == "i":
        return data.astype(np.float32) / (float(np.iinfo(data.dtype).max) + 1.0)
    if kind == "u":  # unsigned PCM (8-bit WAV is unsigned): silence sits at mid-scale
        middle = float(np.iinfo(data.dtype).max) / 2.0 + 0.5
        return ((data.astype(np.float64) - middle) / middle).astype(np.float32)
    raise AudioDecodeError(
        f"samples of dtype {data.dtype} are not audio",
        path=name,
        hint="pass real numbers: float samples in [-1, 1] or integer PCM",
    )


def audio_from_array(
    samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *, name: str = "<array>"
) -> Audio:
    """Wrap in-memory samples (any rate, mono or ``[n, channels]``) as checked 16 kHz audio.

    Raises:
        ParameterError: a sample rate that is not a whole number in 4000..768000 Hz.
        AudioDecodeError: samples that are not real numbers (complex, text, objects, bool).
        AudioEmptyError, AudioInvalidSamplesError: no/too few samples, NaN or huge values.
    """
    rate = _check_rate(sample_rate, "sample_rate", name)
    try:
        data = np.asarray(samples)
    except (TypeError, ValueError) as error:
        raise AudioDecodeError(f"is not an array of samples ({error})", path=name,
                               hint="pass a 1-D or [n, channels] NumPy array") from None  # fmt: skip
    if data.ndim not in (1, 2) or data.size == 0:
        raise AudioEmptyError("no samples", path=name, hint="pass a 1-D or [n, channels] array")
    data = _as_float_samples(data, name)
    if data.ndim == 2:
        data = data.astype(np.float32, copy=False)
    return _checked(_to_mono_16k(data, rate), name, rate, data.shape[1] if data.ndim == 2 else 1, 0.0)


def _count_where(mono: np.ndarray, test: Any) -> int:
    """``count_nonzero(test(block))`` over blocks: no full-length temporary for long clips."""
    step = 1 << 20
    return sum(int(np.count_nonzero(test(mono[i : i + step]))) for i in range(0, len(mono), step))


def _checked(mono: np.ndarray, path: str, rate: int, channels: int, start_s: float) -> Audio:
    peak = max(float(np.max(mono)), -float(np.min(mono))) if len(mono) else 0.0  # NaN propagates
    if not math.isfinite(peak):
        bad = _count_where(mono, lambda block: ~np.isfinite(block))
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
    if peak > MAX_SAMPLE_MAGNITUDE:
        bad = _count_where(mono, lambda block: np.abs(block) > MAX_SAMPLE_MAGNITUDE)
        raise AudioInvalidSamplesError(
            f"{bad} samples are far beyond full scale (peak {peak:.3g}; audio stays within "
            f"±{MAX_SAMPLE_MAGNITUDE:g}): the file is damaged",
            path=path,
            hint="re-export the clip from your audio editor as 16- or 24-bit PCM",
        )
    if peak < SILENCE_PEAK:
        message = f"{path}: the audio is silent (peak {peak:.1e}); the face will stay at rest"
        log.warning("%s", message)
        warnings.append(message)
    elif peak >= 0.999:
        clipped = _count_where(mono, lambda block: np.abs(block) >= 0.999) / len(mono)
        if clipped > 0.001:
            message = f"{path}: {clipped:.1%} of samples are clipped; lip-sync may suffer"
            log.warning("%s", message)
            warnings.append(message)
    return Audio(mono, path, rate, channels, start_s, tuple(warnings))


def check_audio_path(path: str | os.PathLike[str]) -> Path:
    """The audio path, checked to be an existing regular file (not a folder, FIFO or device)
    before anything opens it.

    Raises:
        AudioNotFoundError: no such file (or a path too long to exist).
        AudioDecodeError: a folder, FIFO, device or socket.
    """
    file = Path(path)
    regular_file_status(file, missing=AudioNotFoundError, unusable=AudioDecodeError,
                        what="audio file")  # fmt: skip
    return file


def _open(file: Path, raw_rate: Any, raw_format: str | None) -> Any:
    """An open ``soundfile.SoundFile``: headerless when ``raw_rate``/``raw_format`` are given."""
    import soundfile as sf

    if raw_rate is None and raw_format is None:
        try:
            return sf.SoundFile(str(file))
        except TypeError:  # soundfile's "samplerate must be specified": a .raw/.pcm name
            raise AudioDecodeError("is headerless raw audio", path=file, hint=_RAW_HINT) from None
    if raw_rate is None or raw_format is None:
        missing = "--raw-rate" if raw_rate is None else "--raw-format"
        raise ParameterError(f"{missing} is missing", path=file, hint=_RAW_HINT)
    rate = _check_rate(raw_rate, "raw_rate", str(file))
    if raw_format not in RAW_FORMATS:
        raise ParameterError(f"raw_format={raw_format!r} is unknown", path=file,
                             hint=f"use one of {', '.join(RAW_FORMATS)} (mono)")  # fmt: skip
    subtype, endian = RAW_FORMATS[raw_format]
    return sf.SoundFile(str(file), samplerate=rate, channels=1, format="RAW", subtype=subtype,
                        endian=endian)  # fmt: skip


def decode_audio(
    path: str | Path,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    raw_rate: int | None = None,
    raw_format: str | None = None,
) -> Audio:
    """Read ``path`` (wav, flac, ogg, mp3, ...) as 16 kHz mono float32, optionally a time range.

    Args:
        start_s, end_s: the part to read, in seconds of the file.
        raw_rate, raw_format: read the file as headerless mono PCM at this rate and sample
            format (a :data:`RAW_FORMATS` name, e.g. ``"s16le"``), whatever its name.

    Raises:
        AudioNotFoundError, AudioDecodeError, AudioEmptyError, AudioInvalidSamplesError,
        ParameterError (start/end outside the clip, bad or missing raw rate/format).
    """
    import soundfile as sf

    file = check_audio_path(path)
    try:
        with _quiet_native_stderr(), _open(file, raw_rate, raw_format) as handle:
            rate, channels = int(handle.samplerate), int(handle.channels)
            if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
                raise AudioDecodeError(
                    f"its header says {rate} Hz, outside {MIN_SOURCE_RATE}..{MAX_SOURCE_RATE} Hz "
                    "(the header is damaged or the file is not speech audio)",
                    path=file,
                    hint="re-export it, e.g. with ffmpeg -i IN -ar 16000 OUT.wav",
                )
            first, wanted = _frame_range(handle, start_s, end_s)
            data = _decode_blocks(handle, file, first, wanted)
    except PermissionError:
        raise AudioDecodeError(
            "cannot be read (permission denied)", path=file, hint="check the file's permissions"
        ) from None
    except (sf.LibsndfileError, RuntimeError, sf.SoundFileError, OSError) as error:
        headerless = raw_rate is None and file.suffix.lower() in RAW_SUFFIXES
        raise AudioDecodeError(
            f"is not readable audio ({error})",
            path=file,
            hint=_RAW_HINT if headerless else
            "convert it to WAV, FLAC, OGG or MP3 (e.g. with ffmpeg -i IN -ar 16000 OUT.wav)",
        ) from None
    if data is None:
        if first > 0 and wanted != 0:
            raise ParameterError(f"--start {start_s} s is past the end of the clip",
                                 hint="use a start time inside the clip")  # fmt: skip
        raise AudioEmptyError("contains no audio samples", path=file, hint="re-export the clip")
    return _checked(data, str(file), rate, channels, first / rate)


def _frame_range(handle: Any, start_s: float | None, end_s: float | None) -> tuple[int, int | None]:
    """(first frame, frames wanted or None = to EOF), computed in floats first so that a start
    of 1e308 s is "past the end", not an OverflowError."""
    rate, total = handle.samplerate, max(int(handle.frames), 0)
    start = 0.0 if start_s is None else float(start_s) * rate
    if total > 0 and start >= total:
        raise ParameterError(
            f"--start {start_s} s is past the end of the clip ({total / rate:.3f} s)",
            hint="use a start time inside the clip",
        )
    first = int(round(start))
    if first:
        handle.seek(first)
    if end_s is None:
        return first, None
    end = float(end_s) * rate
    if total > 0 and end >= total:
        return first, None
    return first, max(0, int(round(end)) - first)


def _decode_blocks(handle: Any, file: Path, first: int, wanted: int | None) -> np.ndarray | None:
    """Decode ``wanted`` frames (None: until EOF) block by block into 16 kHz mono; None when
    the file holds no frames there. The header's frame count only sizes the first buffer,
    and only up to :data:`MAX_SAMPLES_PER_BYTE` per byte of file."""
    rate = handle.samplerate
    frames = wanted if wanted is not None else max(int(handle.frames) - first, 0)
    plausible = max(file.stat().st_size, 1) * MAX_SAMPLES_PER_BYTE
    expected = min(math.ceil(frames * SAMPLE_RATE / rate) + 64, plausible)
    resampler = _Resampler(rate, expected)
    step = _block_frames(handle.channels)
    read = 0
    while wanted is None or read < wanted:
        count = step if wanted is None else min(step, wanted - read)
        block = handle.read(count, dtype="float32", always_2d=True)
        if len(block) == 0:
            break
        resampler.add(block)
        read += len(block)
    if read == 0:
        return None
    resampler.add(np.zeros((0, handle.channels), np.float32), last=True)
    return resampler.samples()


def trim_audio(audio: Audio, start_s: float | None, end_s: float | None) -> Audio:
    """The part of decoded ``audio`` between ``start_s`` and ``end_s`` (seconds of its source,
    the timeline of ``Audio.start_s``). Audio that already covers the range, to within one
    source sample (as ``decode_audio`` with the same range returns it), comes back as is.

    Raises:
        ParameterError: a start at or past the audio's end.
        AudioEmptyError: less than one frame left.
    """
    if start_s is None and end_s is None:
        return audio
    tolerance = SAMPLE_RATE / max(audio.source_rate, 1) + 1  # one source sample, in samples
    count = len(audio.samples)
    first = 0
    if start_s is not None:
        offset = (float(start_s) - audio.start_s) * SAMPLE_RATE
        if offset >= count:
            raise ParameterError(
                f"start_s={start_s} s is past the end of the audio "
                f"({audio.start_s + audio.duration_s:.3f} s)",
                path=audio.path or None,
                hint="use a start time inside the clip",
            )
        first = int(round(offset)) if offset > tolerance else 0
    last = count
    if end_s is not None:
        offset = (float(end_s) - audio.start_s) * SAMPLE_RATE
        last = int(round(offset)) if offset < count - tolerance else count
    if first == 0 and last == count:
        return audio
    samples = audio.samples[first:max(first, last)]
    if len(samples) < MIN_SAMPLES:
        raise AudioEmptyError(
            f"start_s={start_s}, end_s={end_s} leave {len(samples) / SAMPLE_RATE * 1000:.1f} ms "
            "of audio, shorter than one frame",
            path=audio.path or None,
            hint="widen start_s/end_s",
        )
    return replace(audio, samples=samples, start_s=audio.start_s + first / SAMPLE_RATE)
