"""``a2x live --delay-audio``: the input played back late by the model's latency, so that a
viewer hears each sound when the frame made from it is shown (``docs/live.md``).

A frame of audio time t goes out about ``look-ahead + compute`` after t arrived; playing the
audio that much later puts sound and lips together. Playback runs on its own thread with
blocking writes, so the model's loop never waits for the sound card; the delay is a block of
silence written first.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ParameterError

#: Added to the stream's look-ahead when --delay-audio has no value: one 20 ms source block
#: plus a typical CPU compute time (``docs/live.md`` lists the measured latencies).
DEFAULT_EXTRA_DELAY_S = 0.05
#: Seconds of audio the playback queue holds before the loop drops blocks (never blocks it).
QUEUE_S = 10.0
_STOP = None


class DelayedPlayback:
    """Plays fed blocks on an output device (``device`` None: the system's default) after
    ``delay_s`` of silence. The device opens at the first block's rate."""

    def __init__(self, delay_s: float, device: str | None = None) -> None:
        from .runner import _sounddevice

        if not (0 <= delay_s <= 10):
            raise ParameterError(f"--delay-audio {delay_s * 1000:.0f} ms: must be 0 to 10000 ms")
        self._sd = _sounddevice()
        try:
            self._sd.query_devices(device, kind="output")
        except (ValueError, self._sd.PortAudioError) as error:
            raise ParameterError(f"--audio-out {device or '(default)'}: no such output device "
                                 f"({error})", hint="python -m sounddevice lists the devices"
                                 ) from None  # fmt: skip
        self.delay_s = float(delay_s)
        self.device = device
        self.dropped_s = 0.0
        self._queue: queue.Queue[np.ndarray | None] | None = None
        self._thread: threading.Thread | None = None
        self._rate = 0
        self.error: BaseException | None = None

    def _start(self, rate: int) -> None:
        self._rate = rate
        from .runner import BLOCK_S

        self._queue = queue.Queue(maxsize=max(4, int(QUEUE_S / BLOCK_S)))  # source blocks
        stream = self._sd.OutputStream(device=self.device, samplerate=rate, channels=1,
                                       dtype="float32")  # fmt: skip
        self._queue.put(np.zeros(int(round(self.delay_s * rate)), dtype=np.float32))
        self._thread = threading.Thread(target=self._play, args=(stream,), daemon=True,
                                        name="a2x-delayed-playback")  # fmt: skip
        self._thread.start()

    def _play(self, stream: Any) -> None:
        assert self._queue is not None
        try:
            with stream:
                while (block := self._queue.get()) is not _STOP:
                    if len(block):
                        stream.write(block.reshape(-1, 1))
        except Exception as error:  # the device went away: the take goes on without sound
            self.error = error

    def feed(self, samples: np.ndarray, rate: int) -> None:
        """Queue one source block (never blocks the caller)."""
        if self._queue is None:
            self._start(rate)
        assert self._queue is not None
        if rate != self._rate:
            raise ParameterError(f"playback at {self._rate} Hz got a block at {rate} Hz")
        try:
            self._queue.put_nowait(np.asarray(samples, dtype=np.float32).reshape(-1))
        except queue.Full:
            self.dropped_s += len(samples) / rate

    def tee(self, blocks: Iterator[tuple[np.ndarray, int]]) -> Iterator[tuple[np.ndarray, int]]:
        """``blocks`` unchanged, each also fed to the playback; closing it closes ``blocks``."""
        from .runner import tee_blocks

        return tee_blocks(blocks, self.feed)

    def close(self, timeout_s: float | None = None) -> None:
        """Play what is queued (the last ``delay_s`` of the take), then close the device;
        ``timeout_s`` bounds the wait (default: the delay plus the queue's length)."""
        if self._queue is None or self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s if timeout_s is not None else self.delay_s + QUEUE_S + 2)
