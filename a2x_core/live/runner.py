"""``a2x live``: audio as it arrives (a microphone, a file at real-time pace, PCM on stdin)
through a model's stream to live outputs (Live Link Face, VMC, JSON lines) and, when it stops,
one recorded take (``docs/live.md``).

Every source yields ``(samples, rate)`` blocks into the same loop, so the tests' file source
exercises the microphone's path. A stop (end of audio, Ctrl-C, SIGTERM) always closes the
stream (its tail frames are sent), writes the record and prints the summary.
"""

from __future__ import annotations

import math
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..audio.decode import RAW_FORMATS, _check_rate, decode_audio
from ..errors import ParameterError
from ..names import ARKIT_52, TONGUE_16
from ..timing import SAMPLE_RATE

#: Length of one source block (``--block-ms``): 10 ms. A frame waits up to one block for the
#: audio that completes its window; 20 ms blocks left the default model's p99 at its 350 ms
#: target's edge and the regression model 10 ms over its own (``docs/live.md``).
BLOCK_S = 0.01
#: ``--block-ms`` range: shorter blocks cost more calls, longer ones add their length to latency.
BLOCK_MS_RANGE = (5.0, 100.0)
#: Bytes per sample of each soundfile subtype of :data:`a2x_core.audio.decode.RAW_FORMATS`.
_SUBTYPE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                  "FLOAT": 4, "DOUBLE": 8}  # fmt: skip
#: Audio a microphone may queue ahead of the loop before new blocks are dropped, in seconds.
MICROPHONE_QUEUE_S = 10.0
#: How often the terminal status line is redrawn, in seconds.
STATUS_PERIOD_S = 0.1
_JAW_OPEN = ARKIT_52.index("jawOpen")
_MICROPHONE_HINT = (
    "install the live extra (pip install 'a2x[live]'); on Linux also the PortAudio library "
    "(sudo apt install libportaudio2); or use --source FILE / --source - for stdin PCM"
)

Block = tuple[np.ndarray, int]


# ---------------------------------------------------------------------------------------------
# Sources


def check_block_ms(block_ms: float) -> float:
    """``--block-ms`` checked -> the block length in seconds. A frame waits up to one block for
    the audio that completes its window, so shorter blocks lower the live latency."""
    low, high = BLOCK_MS_RANGE
    if not (low <= block_ms <= high):
        raise ParameterError(f"--block-ms {block_ms:g} is not {low:g}..{high:g} ms",
                             hint="e.g. --block-ms 20 (default 10)")  # fmt: skip
    return block_ms / 1000.0


def file_blocks(path: str | Path, *, real_time: bool = True,
                block_s: float = BLOCK_S) -> Iterator[Block]:  # fmt: skip
    """A decoded audio file in ``block_s`` blocks of 16 kHz samples, each released when the
    wall clock reaches its end (``real_time``), as a microphone would deliver it."""
    samples = decode_audio(path).samples
    step = max(1, int(round(block_s * SAMPLE_RATE)))
    start = time.monotonic()
    for first in range(0, len(samples), step):
        block = samples[first:first + step]
        if real_time:
            delay = start + (first + len(block)) / SAMPLE_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield block, SAMPLE_RATE


def tee_blocks(blocks: Iterator[Block], on_block: Any) -> Iterator[Block]:
    """``blocks`` unchanged, each also handed to ``on_block(samples, rate)`` (playback, a
    copy for the take's preview); closing the result closes ``blocks`` (a microphone stops)."""
    try:
        for samples, rate in blocks:
            on_block(samples, rate)
            yield samples, rate
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def check_raw_input(raw_rate: Any, raw_format: str | None) -> tuple[int, str]:
    """``--raw-rate`` and ``--raw-format`` of ``--source -``, checked as ``animate`` checks
    them for a headerless file."""
    if raw_rate is None or raw_format is None:
        missing = "--raw-rate" if raw_rate is None else "--raw-format"
        raise ParameterError(f"--source - (PCM on stdin): {missing} is missing",
                             hint="e.g. --raw-rate 16000 --raw-format s16le")  # fmt: skip
    rate = _check_rate(raw_rate, "--raw-rate", "")
    if raw_format not in RAW_FORMATS:
        raise ParameterError(f"--raw-format {raw_format!r} is unknown",
                             hint=f"use one of {', '.join(RAW_FORMATS)} (mono)")  # fmt: skip
    return rate, raw_format


def pcm_blocks(stream: IO[bytes], rate: int, raw_format: str,
               block_s: float = BLOCK_S) -> Iterator[Block]:  # fmt: skip
    """Headerless mono PCM from a byte stream (a pipe from a TTS engine) in ``block_s``
    blocks, as they arrive; a trailing partial sample is dropped at the end."""
    import io

    import soundfile as sf

    subtype, endian = RAW_FORMATS[raw_format]
    width = _SUBTYPE_BYTES[subtype]
    wanted = max(1, int(round(block_s * rate))) * width
    pending = b""
    while True:
        chunk = stream.read(wanted - len(pending))
        if not chunk:
            break
        pending += chunk
        if len(pending) < wanted:
            continue
        samples, _ = sf.read(io.BytesIO(pending), samplerate=rate, channels=1, format="RAW",
                             subtype=subtype, endian=endian, dtype="float32")  # fmt: skip
        pending = b""
        yield samples, rate
    whole = len(pending) // width * width
    if whole:
        samples, _ = sf.read(io.BytesIO(pending[:whole]), samplerate=rate, channels=1,
                             format="RAW", subtype=subtype, endian=endian, dtype="float32")  # fmt: skip
        yield samples, rate


def _sounddevice() -> Any:
    """The ``sounddevice`` module, or a ParameterError naming what to install."""
    try:
        import sounddevice
    except ImportError:
        raise ParameterError("the microphone needs the sounddevice package",
                             hint=_MICROPHONE_HINT) from None  # fmt: skip
    except OSError as error:  # sounddevice is there, the PortAudio library is not
        raise ParameterError(f"the microphone needs the PortAudio library ({error})",
                             hint=_MICROPHONE_HINT) from None  # fmt: skip
    return sounddevice


class Microphone:
    """The default (or the named) input device at its own rate, mono, as an iterator of
    ``block_s`` blocks (20 ms by default). The audio callback only queues; when the loop falls more than
    :data:`MICROPHONE_QUEUE_S` behind (a model slower than real time), new blocks are dropped and
    counted in :attr:`dropped_s` instead of growing memory without end."""

    def __init__(self, device: str | None = None, block_s: float = BLOCK_S) -> None:
        sd = _sounddevice()
        try:
            info = sd.query_devices(device, kind="input")
        except (ValueError, sd.PortAudioError) as error:
            raise ParameterError(f"--device {device or '(default)'}: no such input device "
                                 f"({error})", hint="python -m sounddevice lists the devices"
                                 ) from None  # fmt: skip
        self.rate = int(info["default_samplerate"])
        self.name = str(info["name"])
        block = max(1, int(round(block_s * self.rate)))
        self._blocks: queue.Queue[np.ndarray] = queue.Queue(
            maxsize=max(1, int(MICROPHONE_QUEUE_S / block_s)))
        self.dropped_s = 0.0
        self._stream = sd.InputStream(device=device, channels=1, samplerate=self.rate,
                                      dtype="float32", blocksize=block, callback=self._on_audio)  # fmt: skip

    def _on_audio(self, data: np.ndarray, frames: int, when: object, status: object) -> None:
        try:
            self._blocks.put_nowait(data[:, 0].copy())
        except queue.Full:
            self.dropped_s += frames / self.rate

    def __iter__(self) -> Microphone:
        return self

    def __next__(self) -> Block:
        if self._stream.closed:
            raise StopIteration
        if not self._stream.active:  # capture starts with the first block asked for, not
            self._stream.start()  # while the model loads
        try:
            return self._blocks.get(timeout=STATUS_PERIOD_S), self.rate
        except queue.Empty:  # an empty block: the loop still sees a stop in time
            return np.zeros(0, dtype=np.float32), self.rate

    def close(self) -> None:
        """Stop and close the device (idempotent)."""
        if not self._stream.closed:
            self._stream.stop()
            self._stream.close()


def first_seconds(blocks: Iterator[Block], seconds: float) -> Iterator[Block]:
    """``--duration``: the first ``seconds`` of ``blocks`` (the last block cut to the sample),
    then the source is closed (a microphone stops)."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ParameterError(f"--duration {seconds}: must be a positive number of seconds")

    def limited() -> Iterator[Block]:
        taken = 0.0
        try:
            for samples, rate in blocks:
                wanted = int(round((seconds - taken) * rate))
                if wanted <= len(samples):
                    if wanted > 0:
                        yield samples[:wanted], rate
                    return
                taken += len(samples) / rate
                yield samples, rate
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    return limited()


def open_source(source: str | None, *, device: str | None = None, real_time: bool = True,
                raw_rate: Any = None, raw_format: str | None = None,
                stdin: IO[bytes] | None = None, block_s: float = BLOCK_S) -> Iterator[Block]:  # fmt: skip
    """The blocks of ``--source`` (a file, ``-`` for stdin PCM) or of the microphone (None),
    ``block_s`` long; everything is checked before the first block is asked for."""
    if source == "-":
        rate, fmt = check_raw_input(raw_rate, raw_format)
        return pcm_blocks(stdin if stdin is not None else sys.stdin.buffer, rate, fmt, block_s)
    if raw_rate is not None or raw_format is not None:
        raise ParameterError("--raw-rate/--raw-format apply to --source - (PCM on stdin)")
    if source is not None:
        if device is not None:
            raise ParameterError("--device picks a microphone; it does not apply with --source")
        return file_blocks(source, real_time=real_time, block_s=block_s)
    return Microphone(device, block_s)  # the device is checked now, before the model loads


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class LiveStats:
    """What the status line and the summary show."""

    frames: int = 0
    received_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    level_db: float = -math.inf
    jaw_open: float = 0.0

    def count(self, new: Sequence[Any], compute_s: float | None) -> None:
        """Count one push's frames; ``compute_s`` (None for the tail, which no sound waits
        for) adds their latencies."""
        if compute_s is not None:
            self.latencies_s.extend(self.received_s - f.time_s + compute_s for f in new)
        if new:
            self.frames += len(new)
            self.jaw_open = float(new[-1].weights[_JAW_OPEN])

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) * 1000 if self.latencies_s else math.nan

    def status(self) -> str:
        latency = self.latencies_s[-1] * 1000 if self.latencies_s else math.nan
        return (f"frames {self.frames:6d}  audio {self.received_s:7.2f} s  latency "
                f"{latency:5.0f} ms  level {self.level_db:6.1f} dB  jawOpen {self.jaw_open:4.2f}")  # fmt: skip


def _level_db(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


class StatusLine:
    """One refreshing line on a terminal's stderr; nothing when stderr is not a terminal."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self._last = 0.0

    def show(self, stats: LiveStats, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self._last >= STATUS_PERIOD_S):
            self._last = now
            self.stream.write("\r" + stats.status() + "\x1b[K")
            self.stream.flush()

    def end(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class StopSignals:
    """While a take runs, the first Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the
    block in hand, so a push is never cut in half; a second one raises KeyboardInterrupt at
    once (a source that waits forever, e.g. a silent pipe). Only in the main thread."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> int | None:
        """128 + the signal (130 Ctrl-C, 143 SIGTERM), as the CLI's cancelled runs; None
        when the audio ended by itself."""
        return None if self.received is None else 128 + self.received


def pump(stream: Any, blocks: Iterator[Block], stats: LiveStats,
         on_frames: Callable[[Sequence[Any]], None], should_stop: Callable[[], bool],
         after_block: Callable[[], None] | None = None) -> None:  # fmt: skip
    """The live loop of ``a2x live`` and of :class:`a2x_core.live.session.LiveSession`: push every
    block, count it in ``stats``, hand each push's frames to ``on_frames``, until the audio
    ends or ``should_stop()`` (asked after every block); the source is closed on the way out
    (a microphone's InputStream stops there), even when it or the model raised.

    Latency of a frame = audio received so far − the frame's audio time + the push's compute:
    on a real-time source, how long after its sound arrived the frame went out. The stream is
    left open: :func:`pump_tail` sends its tail, or the caller cancels it.
    """
    try:
        for samples, rate in blocks:
            started = time.perf_counter()
            new = stream.push(samples, rate)
            stats.received_s += len(samples) / rate
            stats.level_db = _level_db(np.asarray(samples, dtype=np.float32))
            stats.count(new, time.perf_counter() - started)
            if new:
                on_frames(new)
            if after_block is not None:
                after_block()
            if should_stop():
                break
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def pump_tail(stream: Any, stats: LiveStats, on_frames: Callable[[Sequence[Any]], None]) -> None:
    """Close the stream and hand on its tail frames (the look-ahead's last frames)."""
    tail = stream.close()
    stats.count(tail, None)
    if tail:
        on_frames(tail)


def run_live(stream: Any, blocks: Iterator[Block], fanout: Any, fps: Fraction,
             status: StatusLine, stop: StopSignals) -> tuple[list[Any], LiveStats]:  # fmt: skip
    """``a2x live``'s take: :func:`pump` every block to ``fanout`` until the audio ends or
    ``stop`` hears a signal, then the stream's tail; returns every frame and the stats."""
    frames: list[Any] = []
    stats = LiveStats()

    def deliver(new: Sequence[Any]) -> None:
        for frame in new:
            fanout.send(frame, fps)
        frames.extend(new)

    pump(stream, blocks, stats, deliver, lambda: stop.received is not None,
         after_block=lambda: status.show(stats))  # fmt: skip
    pump_tail(stream, stats, deliver)
    status.show(stats, force=True)
    status.end()
    return frames, stats


def take_result(frames: Sequence[Any], model: Any, options: Any, fps: Fraction,
                audio_path: str, duration_s: float) -> Any:  # fmt: skip
    """The frames of a take as an :class:`.result.AnimationResult`, for the usual exporters."""
    from ..result import AnimationResult

    def stacked(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if not frames:
            return np.zeros((0, *shape), dtype=np.float32)
        return np.stack([getattr(f, name) for f in frames]).astype(np.float32)

    emotion_names = tuple(model.emotion_names)
    return AnimationResult(
        weights=stacked("weights", (len(ARKIT_52),)), fps=fps, audio_path=audio_path,
        duration_s=duration_s, model=model.name, model_version=model.version, options=options,
        tongue_weights=stacked("tongue_weights", (len(TONGUE_16),)), tongue_names=TONGUE_16,
        jaw_transforms=stacked("jaw_transform", (4, 4)),
        eye_rotations=stacked("eye_rotations", (6,)),
        head_rotations=stacked("head_rotation", (3,)),
        emotions=stacked("emotions", (len(emotion_names),))[:, :len(emotion_names)]
        if emotion_names else None,
        emotion_names=emotion_names,
    )  # fmt: skip


def summary_lines(stats: LiveStats, fanout: Any) -> list[str]:
    """The end-of-take summary: frames, latency percentiles, each sink's sent/dropped."""
    lines = [f"live: {stats.frames} frames from {stats.received_s:.2f} s of audio; latency "
             f"p50 {stats.percentile_ms(50):.0f} ms, p99 {stats.percentile_ms(99):.0f} ms"]  # fmt: skip
    lines += [f"live: {line}" for line in fanout.summary().splitlines()]
    return lines
