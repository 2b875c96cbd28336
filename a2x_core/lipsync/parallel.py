"""Decode long audio on every core: split at pauses, one pocketsphinx decoder per process.

pocketsphinx holds the GIL while decoding, so threads do not help; pieces go to a persistent
pool of ``spawn`` worker processes (``fork`` is unsafe inside Blender and Maya), each keeping
its own decoders. Clips shorter than :data:`MIN_SPLIT_S` are not split; they are decoded in
this process until the pool runs (starting workers for them would cost more than it saves),
then by one worker.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import numpy as np

from ..jobs import CancelToken
from . import phones as ph
from .expressions import HOP, loudness_db

log = logging.getLogger("a2x_core")

#: Shorter clips are not split (fast mode: ``FAST_MIN_SPLIT_S``).
MIN_SPLIT_S = 6.0
FAST_MIN_SPLIT_S = 2.0
#: Long clips are cut into pieces of about this length (a multiple of the worker count).
PIECE_S = 20.0

_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0
#: None = automatic: decode only in worker processes when called off the main thread (a DCC's
#: background job), because pocketsphinx holds the GIL and would stall the host's UI thread.
_WORKERS_ONLY: bool | None = None


def decode_in_workers_only(enabled: bool | None) -> None:
    """Force (True), forbid (False) or automate (None) decoding only in worker processes."""
    global _WORKERS_ONLY
    _WORKERS_ONLY = enabled


def workers_only() -> bool:
    """Whether this call must keep pocketsphinx out of this process (see ``_WORKERS_ONLY``)."""
    if _WORKERS_ONLY is not None:
        return _WORKERS_ONLY
    return threading.current_thread() is not threading.main_thread()


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _warm(kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        ph.decoder(kind)


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Start workers without re-running the caller's script in them.

    ``spawn`` re-imports ``__main__`` by path in every child, which runs a script that lacks an
    ``if __name__ == "__main__"`` guard once more (and fails there). The workers only need
    this package, so the path is hidden while they start.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _pool(workers: int, fast: bool) -> ProcessPoolExecutor:
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE != workers:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        context = multiprocessing.get_context("spawn")
        kinds = ("fast",) if fast else ("words", "align")
        _POOL = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_warm, initargs=(kinds,)
        )
        _POOL_SIZE = workers
    return _POOL


def shutdown() -> None:
    """Stop the worker processes (they also stop when this process exits)."""
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


def decode_piece(pcm: bytes, offset_s: float, fast: bool) -> list[ph.Phone]:
    """Recognise one piece (runs in a worker process or in this one)."""
    return ph.recognise(pcm, offset_s, align=not fast)


def align_piece(pcm: bytes, words: list[str]) -> list[ph.Phone]:
    """Force-align a whole clip to its words (runs in a worker process or in this one)."""
    return ph.align_words(pcm, words)


def _wait(futures: list[Future[Any]], cancel: CancelToken | None,
          progress: Callable[[], None] | None = None) -> None:  # fmt: skip
    """Wait for ``futures`` while honouring ``cancel`` (cancelling what has not started)."""
    pending = set(futures)
    try:
        while pending:
            if cancel is not None:
                cancel.check()
            _, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            if progress is not None:
                progress()
    finally:
        for future in pending:
            future.cancel()


def _submit(
    workers: int, fast: bool, calls: list[tuple[Callable[..., list[ph.Phone]], tuple[Any, ...]]]
) -> list[Future[list[ph.Phone]]]:
    """Start ``calls`` in the worker pool; [] (with a warning) when workers cannot start, so
    that the caller decodes in this process instead."""
    try:
        with _main_hidden():
            pool = _pool(workers, fast)
            return [pool.submit(function, *args) for function, args in calls]
    except (OSError, RuntimeError, BrokenProcessPool) as error:
        log.warning("cannot start worker processes (%s); decoding in this process", error)
        return []


class Aligning:
    """Forced alignment of a transcript, started at construction, collected by :meth:`result`.

    Runs in a worker process when this process must stay responsive (:func:`workers_only`),
    else in this process when collected.
    """

    def __init__(self, samples: np.ndarray, words: list[str], *, workers: int) -> None:
        self._pcm, self._words = ph.to_pcm16(samples), words
        self._future: Future[list[ph.Phone]] | None = None
        if workers_only():
            started = _submit(workers, False, [(align_piece, (self._pcm, words))])
            self._future = started[0] if started else None

    def result(self, cancel: CancelToken | None = None) -> list[ph.Phone]:
        """The aligned phones; raises ``RuntimeError`` when the words do not fit the audio."""
        if self._future is None:
            return align_piece(self._pcm, self._words)
        try:
            _wait([self._future], cancel)
            return self._future.result()
        except BrokenProcessPool as error:
            log.warning("a worker process died (%s); aligning here", error)
            shutdown()
            return align_piece(self._pcm, self._words)


def plan_pieces(
    samples: np.ndarray, workers: int, min_split_s: float = MIN_SPLIT_S
) -> list[tuple[int, int]]:
    """Sample ranges to decode separately: cut near equal shares, at the quietest 250 ms."""
    total_s = len(samples) / (HOP * 100)
    if workers < 2 or total_s < min_split_s:
        return [(0, len(samples))]
    count = workers * max(1, math.ceil(total_s / (workers * PIECE_S)))
    level = loudness_db(samples)
    smooth = np.convolve(level, np.ones(25) / 25, mode="same")
    per_piece = len(level) / count
    cuts = [0]
    for k in range(1, count):
        ideal = k * per_piece
        lo, hi = int(ideal - 0.3 * per_piece), int(ideal + 0.3 * per_piece)
        window = smooth[lo:hi]
        # The quietest spot, 10 dB per second of distance from the ideal cut counted against
        # it: a pause (20-40 dB below speech) wins, and of two pauses the one that balances
        # the workers better.
        penalty = window + 0.1 * np.abs(np.arange(lo, hi) - ideal)
        cuts.append((lo + int(np.argmin(penalty))) * HOP)
    cuts.append(len(samples))
    return [(a, b) for a, b in pairwise(cuts) if b > a]


class Decoding:
    """Phone recognition of one clip, started at construction, collected by :meth:`result`.

    Pieces run in the worker pool while the caller computes other features.
    """

    def __init__(self, samples: np.ndarray, *, fast: bool, workers: int) -> None:
        self._samples, self._fast = samples, fast
        self._pieces = plan_pieces(samples, workers, FAST_MIN_SPLIT_S if fast else MIN_SPLIT_S)
        self._futures: list[Future[list[ph.Phone]]] = []
        # Split clips need the pool; a short clip uses it too once it runs (its decoders are
        # loaded already), else it is decoded here.
        pool_ready = _POOL is not None and _POOL_SIZE == workers
        if len(self._pieces) > 1 or (workers > 1 and pool_ready) or workers_only():
            calls = [(decode_piece, (ph.to_pcm16(samples[a:b]), a / (HOP * 100), fast))
                     for a, b in self._pieces]  # fmt: skip
            self._futures = _submit(workers, fast, calls)

    def result(
        self, cancel: CancelToken | None = None, progress: Callable[[float], None] | None = None
    ) -> list[ph.Phone]:
        """All phones in time order (waits for the workers; checks ``cancel`` and reports the
        share of audio decoded to ``progress`` meanwhile)."""
        total = max(1, len(self._samples))
        if not self._futures:
            out = []
            for a, b in self._pieces:
                if cancel is not None:
                    cancel.check()
                out += decode_piece(ph.to_pcm16(self._samples[a:b]), a / (HOP * 100), self._fast)
                if progress is not None:
                    progress(b / total)
            return ph.merge_silences(out)

        def report() -> None:
            if progress is not None:
                done = sum(b - a for (a, b), f in zip(self._pieces, self._futures, strict=True)
                           if f.done())  # fmt: skip
                progress(done / total)

        try:
            _wait(self._futures, cancel, report)
            out = [p for future in self._futures for p in future.result()]
        except BrokenProcessPool as error:
            log.warning("a worker process died (%s); decoding on one core", error)
            shutdown()
            self._futures = []
            return self.result(cancel)
        return ph.merge_silences(out)
