"""Head motion and gaze on the streams of models that move no head (Audio2Face-3D).

Offline, :func:`a2x_core.head.motion.add_head_motion` gives an Audio2Face-3D result the default model's
voice-driven head and gaze. A stream has no whole clip, so :class:`HeadMotionStream` wraps the
face model's stream and computes the same curves as the audio arrives, the way the default
model's own stream does (:mod:`.lipsync.stream`): loudness hops as soon as their analysis
frame is complete, normalised by the 98th percentile of the stream's levels so far (offline:
the whole clip's), fed to the shared :class:`a2x_core.head.motion.HeadMotion`. Its look-ahead
(:data:`a2x_core.head.motion.AHEAD_HOPS`, 260 ms) fits within the regression model's (260 ms window
after the frame) but for half an analysis frame, so a face frame waits at most ~13 ms more;
diffusion's look-ahead is longer and no frame waits.

So Live Link's head columns move on every model, live (issue 17: "the head motion appears ...
in the Live Link output").
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np

from ..audio.accumulator import AudioAccumulator, StreamFrame
from ..lipsync import expressions as ex
from ..lipsync.stream import _DB_BINS, _RunningPercentile
from ..timing import SAMPLE_RATE
from .motion import AHEAD_HOPS, BEHIND_HOPS, HeadMotion, HeadStyle

#: Half a loudness analysis frame: hop ``k`` is known once sample ``k * HOP + this`` arrived.
_HALF = ex.LEVEL_SIZE // 2


def needs_head_motion(model: Any, options: Any) -> bool:
    """Whether a stream of ``model`` should be wrapped: the model moves no head of its own
    (every model but the default one) and ``options.head_motion`` asks for motion."""
    return getattr(model, "kind", "default") != "default" and options.head_motion > 0


def with_head_motion(stream: Any, model: Any, options: Any) -> Any:
    """``stream`` wrapped in a :class:`HeadMotionStream` where :func:`needs_head_motion`."""
    return HeadMotionStream(stream, options) if needs_head_motion(model, options) else stream


class HeadMotionStream:
    """A face stream whose frames gain ``head_rotation`` from the voice (the model's own eye
    rotations are kept, as offline). Same interface as the stream it wraps.

    Not thread-safe: push from one thread.
    """

    def __init__(self, inner: Any, options: Any) -> None:
        self.inner = inner
        self._audio = AudioAccumulator()  # one resampling: the inner stream gets 16 kHz
        self._head = HeadMotion(options.seed, HeadStyle(amplitude=options.head_motion))
        self._peak = _RunningPercentile(_DB_BINS, 0.98)
        self._hop0 = 0  # hop index of _level[0]
        self._level = np.zeros(0)  # normalised loudness of the hops still needed
        self._pending: deque[StreamFrame] = deque()
        self._returned = 0
        ahead = AHEAD_HOPS * ex.HOP + _HALF
        self.lookahead_samples = max(int(inner.lookahead_samples), ahead)

    # ------------------------------------------------------------------------- monitoring

    @property
    def lookahead_s(self) -> float:
        return self.lookahead_samples / SAMPLE_RATE

    @property
    def frames_returned(self) -> int:
        return self._returned

    @property
    def samples_received(self) -> int:
        return self._audio.received

    @property
    def buffered_samples(self) -> int:
        return self._audio.buffered + self.inner.buffered_samples

    @property
    def closed(self) -> bool:
        return self.inner.closed

    # ------------------------------------------------------------------------- audio in

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[StreamFrame]:
        """Add audio (as the wrapped stream's ``push``); returns the frames now final."""
        if self.inner.closed:
            self.inner.push(np.zeros(0, np.float32))  # the wrapped stream's own error
        start = self._audio.received
        self._audio.push(samples, sample_rate)
        return self._frames(self.inner.push(self._new_samples(start)), final=False)

    def close(self) -> list[StreamFrame]:
        """End of audio: every remaining frame, with its head motion."""
        if self.inner.closed:
            return self.inner.close()
        start = self._audio.received
        self._audio.flush()
        tail = self.inner.push(self._new_samples(start)) + self.inner.close()
        frames = self._frames(tail, final=True)
        self._audio.clear()
        return frames

    def cancel(self) -> None:
        self.inner.cancel()
        self._audio.clear()
        self._pending.clear()

    # ------------------------------------------------------------------------- internals

    def _new_samples(self, start: int) -> np.ndarray:
        return self._audio.read(start, self._audio.received - start)

    def _frames(self, frames: list[StreamFrame], final: bool) -> list[StreamFrame]:
        """Head motion on the frames whose look-ahead hops exist; the rest wait."""
        self._pending.extend(frames)
        self._add_hops(final)
        if final:
            ready = len(self._pending)
        else:
            known_s = (self._hop0 + len(self._level) - AHEAD_HOPS) * ex.ANALYSIS_S
            ready = sum(1 for frame in self._pending if frame.time_s <= known_s)
        if ready == 0:
            return []
        out = [self._pending.popleft() for _ in range(ready)]
        times = np.array([frame.time_s for frame in out])
        self._head.add_hops(self._level, self._hop0, final=final, not_before_s=float(times[0]))
        head, eyes = self._head.at(times)
        self._returned += len(out)
        self._forget(float(times[-1]))
        del eyes  # Audio2Face-3D models move their own eyes (offline keeps them too)
        return [replace(frame, head_rotation=head[i]) for i, frame in enumerate(out)]

    def _add_hops(self, final: bool) -> None:
        """Loudness of the hops whose 25 ms analysis frame the audio now covers."""
        done = self._hop0 + len(self._level)
        received = self._audio.received
        count = max(1, math.ceil(received / ex.HOP)) if final else (received - _HALF) // ex.HOP + 1
        if count <= done:
            return
        local = self._audio.read(done * ex.HOP - _HALF, (count - done) * ex.HOP + 2 * _HALF)
        starts = np.arange(count - done) * ex.HOP
        db = ex.level_db_of_frames(local[starts[:, None] + np.arange(ex.LEVEL_SIZE)[None, :]])
        self._peak.add(db)
        peak = self._peak.value()
        level = (np.zeros_like(db) if peak < -70.0
                 else np.clip((db - (peak - 30.0)) / 30.0, 0.0, 1.0))  # fmt: skip
        self._level = np.concatenate([self._level, level])

    def _forget(self, last_time_s: float) -> None:
        """Drop the hops and samples no later frame reads (bounded memory)."""
        keep_from = int(last_time_s / ex.ANALYSIS_S) - BEHIND_HOPS - 1
        drop = keep_from - self._hop0
        if drop > 0:
            self._level = self._level[drop:]
            self._hop0 = keep_from
        self._audio.drop_before((self._hop0 + len(self._level)) * ex.HOP - _HALF)
