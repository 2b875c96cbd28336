"""Decode long audio on every core: split at pauses, one pocketsphinx decoder per process.

pocketsphinx holds the GIL while decoding, so threads do not help; pieces go to a persistent
pool of worker processes, each keeping its own decoders. Workers start by ``spawn`` (``fork``
is unsafe inside Blender and Maya, or with other threads running), unless the caller owns the
whole process and allows ``fork`` (:func:`allow_fork`; the ``a2x`` command does): then this
process loads the decoders once and the workers inherit them with its imports, ready at once
instead of ~0.7 s of CPU each later. Clips shorter than :data:`MIN_SPLIT_S` are not split; they
are decoded in this process until the pool runs (starting workers for them would cost more
than it saves), then by one worker.

Every piece is at most :data:`MAX_PIECE_S` long whatever the worker count, and a transcript
of a long clip is aligned piece by piece: pocketsphinx's work and memory grow faster than
the utterance (a 2-minute forced alignment already finds no path), so long input stays linear
in time and bounded in memory per piece.

The workers die with this process: on Linux the kernel signals them when it exits
(``PR_SET_PDEATHSIG``), elsewhere a thread in each worker watches for the parent to go; a
SIGTERM to this process stops them first, and a cancel (Ctrl-C, ``CancelToken``) kills them
rather than waiting for the pieces they are decoding.
"""

from __future__ import annotations

import ctypes
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from itertools import pairwise
from typing import Any

import numpy as np

from ..jobs import CancelToken
from . import phones as ph
from .expressions import HOP, loudness_db

log = logging.getLogger("a2x_core")

#: Shorter clips are not split (fast mode: ``FAST_MIN_SPLIT_S``).
MIN_SPLIT_S = 6.0
#: Fast mode splits no sooner: pieces of 1-3 s starve the word search of context (fast hit
#: rates on speech_en's 2-12 s clips, bilabial / labiodental: 89 / 95 % split from 2 s,
#: 96 / 95 % from 6 s; issue 17, docs/quality.md). Long clips are split as before.
FAST_MIN_SPLIT_S = 6.0
#: Long clips are cut into pieces of about this length (a multiple of the worker count).
PIECE_S = 20.0
#: No piece is longer than this, pause or not (cuts fall within 30 % of a piece around the
#: ideal place, and pieces are at most PIECE_S long on average).
MAX_PIECE_S = 1.6 * PIECE_S
#: A transcript of a clip longer than this is aligned piece by piece (see :func:`plan_words`).
ALIGN_WHOLE_MAX_S = 45.0
#: Seconds between a worker's checks that its parent still runs (where prctl is unavailable).
PARENT_POLL_S = 0.5

_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0
#: None = automatic: decode only in worker processes when called off the main thread (a DCC's
#: background job), because pocketsphinx holds the GIL and would stall the host's UI thread.
_WORKERS_ONLY: bool | None = None
#: Whether pools may start their workers by ``fork`` (see :func:`allow_fork`).
_FORK_ALLOWED = False


def decode_in_workers_only(enabled: bool | None) -> None:
    """Force (True), forbid (False) or automate (None) decoding only in worker processes."""
    global _WORKERS_ONLY
    _WORKERS_ONLY = enabled


def allow_fork(enabled: bool = True) -> None:
    """Let worker pools start by ``fork`` whenever that is safe at the time (Linux, main
    thread, no other Python thread): the workers inherit this process's imports and the
    decoders it loads once, so they decode at once instead of after an interpreter start, the
    package imports and their own decoder loads (~0.7 s of CPU per worker).

    Only for a process that is a2x's alone (the ``a2x`` command); never inside a host
    application such as Blender or Maya, whose state a forked child would copy.
    """
    global _FORK_ALLOWED
    _FORK_ALLOWED = enabled


def _fork_safe() -> bool:
    """Whether a pool started now may ``fork`` (allowed, Linux, and this is the only thread:
    a thread holding a lock at the fork would leave the child's copy locked forever)."""
    return (
        _FORK_ALLOWED
        and sys.platform.startswith("linux")
        and threading.current_thread() is threading.main_thread()
        and threading.active_count() == 1
    )


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


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int, use_prctl: bool) -> None:
    """Make this worker exit when ``parent`` does (it would otherwise live on, orphaned,
    holding the caller's stdout/stderr pipes).

    ``PR_SET_PDEATHSIG`` signals the worker when the *thread* that started it ends, so it is
    only used for pools started on the main thread; the watching thread covers the rest (it
    runs between pieces, as pocketsphinx holds the GIL while decoding).
    """
    if use_prctl and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(PARENT_POLL_S)

    threading.Thread(target=watch, name="a2x-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent went before prctl took effect
        os._exit(1)


def _warm(kinds: tuple[str, ...], parent: int = 0, use_prctl: bool = False) -> None:
    # A forked worker inherits the caller's SIGTERM handler (the CLI's raises an exception,
    # which the pool's worker loop would catch and carry on): SIGTERM ends a worker, as it
    # does a spawned one.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if parent:
        _die_with_parent(parent, use_prctl)
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
        kinds = ("fast",) if fast else ("words", "align")
        fork = _fork_safe()
        if fork:  # loaded once, here; every worker inherits them (copy-on-write)
            for kind in kinds:
                ph.decoder(kind)
        context = multiprocessing.get_context("fork" if fork else "spawn")
        # PR_SET_PDEATHSIG follows the thread that starts a worker, and the executor starts
        # them lazily in whichever thread submits: use it only when all start here, now, on
        # the main thread (``_launch_processes``, CPython 3.9+).
        on_main = threading.current_thread() is threading.main_thread()
        use_prctl = on_main and hasattr(ProcessPoolExecutor, "_launch_processes")
        _POOL = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_warm,
            initargs=(kinds, os.getpid(), use_prctl),
        )  # fmt: skip
        _POOL_SIZE = workers
        if use_prctl:
            _POOL._launch_processes()  # type: ignore[attr-defined]
        if on_main:
            _stop_workers_on_sigterm()
    return _POOL


def shutdown() -> None:
    """Stop the worker processes (they also stop when this process exits)."""
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


def worker_pids() -> list[int]:
    """Process ids of the running workers (none when no pool runs)."""
    processes = getattr(_POOL, "_processes", None) or {}
    return [p.pid for p in list(processes.values()) if p.pid is not None]


def abort(join_s: float = 1.0) -> None:
    """Kill the workers now, without waiting for the pieces they decode (cancel, SIGTERM),
    and reap each (waiting at most ``join_s`` for it).

    The next call starts a fresh pool (a second or two).
    """
    global _POOL
    pool, _POOL = _POOL, None
    if pool is None:
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):  # already gone
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=join_s)


def stop_pending() -> None:
    """:func:`abort` when the workers have pieces queued or under way (after an error or
    Ctrl-C outside :func:`_wait`, an exiting interpreter would wait for all of them)."""
    if _POOL is not None and getattr(_POOL, "_pending_work_items", None):
        abort()


_SIGTERM_HOOKED = False


def _stop_workers_on_sigterm() -> None:
    """Kill the workers when this process gets SIGTERM, then do what SIGTERM did before.

    Chains a handler that Python code installed; leaves alone a SIGTERM that is ignored or
    handled outside Python (a host application's own handler).
    """
    global _SIGTERM_HOOKED
    if _SIGTERM_HOOKED:
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        abort()
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # pragma: no cover - not the main thread after all
        return
    _SIGTERM_HOOKED = True


def decode_piece(pcm: bytes, offset_s: float, fast: bool) -> list[ph.Phone]:
    """Recognise one piece (runs in a worker process or in this one)."""
    return ph.recognise(pcm, offset_s, align=not fast)


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
    except BaseException:
        # Cancelled (or Ctrl-C): the pieces under way would still run to their end, and an
        # exiting interpreter waits for them; stop them now instead.
        if any(not f.done() for f in pending):
            abort()
        raise
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


def align_or_recognise_piece(
    pcm: bytes, words: list[str], offset_s: float, pronunciations: dict[str, str],
    whole: bool = False,
) -> tuple[list[ph.Phone], bool]:  # fmt: skip
    """Align one piece of a long clip to its share of the transcript, or recognise it when
    the words do not fit (runs in a worker process or in this one).

    Returns ``(phones, aligned)``. ``pronunciations`` carries the guessed pronunciations of
    transcript words missing from the dictionary (a worker's decoder lacks them). A ``whole``
    clip that does not fit raises ``RuntimeError`` instead (the caller decides what next).
    """
    ph.add_pronunciations(pronunciations)
    try:
        return ph.align_words(pcm, words, offset_s), True
    except RuntimeError:
        if whole:
            raise
        return ph.recognise(pcm, offset_s), False


def recognised_words(phones: list[ph.Phone]) -> list[tuple[str, float, float]]:
    """``(word, start, end)`` of each recognised word, in order."""
    out: list[tuple[str, float, float]] = []
    start = 0
    for k, phone in enumerate(phones):
        if k + 1 == len(phones) or phones[k + 1].word != phone.word or not phone.word:
            if phone.word:
                out.append((phone.word, phones[start].start_s, phone.end_s))
            start = k + 1
    return out


def plan_words(
    words: list[str], cuts_s: list[float], recognised: list[tuple[str, float, float]],
    total_s: float,
) -> list[list[str]]:  # fmt: skip
    """Share a long transcript out among the pieces of its audio (cut at ``cuts_s``).

    Piece by piece, in order: the piece's words recognised in a quick pass (``recognised``:
    word, start, end; right or wrong, about one per spoken word) give the expected count at
    the overall ratio of transcript to recognised words; those that match the next stretch of
    the transcript (``difflib``, a window of 1.5 times the expected count) fix where the piece
    ends: after the last match, plus the recognised words that follow it. With nothing
    recognised, the words are spread evenly over the clip. Cuts lie in pauses.
    """
    from difflib import SequenceMatcher

    if not recognised:
        share = [round(len(words) * cut / max(total_s, 1e-9)) for cut in cuts_s]
        bounds = [0, *np.clip(np.maximum.accumulate(share), 0, len(words)).tolist(), len(words)]
        return [words[lo:hi] for lo, hi in pairwise(bounds)]
    ratio = len(words) / len(recognised)
    middles = np.array([0.5 * (start + end) for _, start, end in recognised])
    bounds = [0]
    for lo_s, hi_s in pairwise([0.0, *cuts_s]):
        heard = [w for (w, _, _), m in zip(recognised, middles, strict=True) if lo_s <= m < hi_s]
        first = bounds[-1]
        expected = round(len(heard) * ratio)
        window = words[first : first + expected + max(8, expected // 2)]
        blocks = SequenceMatcher(None, heard, window, autojunk=False).get_matching_blocks()[:-1]
        if blocks:
            last = blocks[-1]
            end = first + last.b + last.size + round((len(heard) - last.a - last.size) * ratio)
        else:
            end = first + expected
        bounds.append(int(np.clip(end, first, len(words))))
    bounds.append(len(words))
    return [words[lo:hi] for lo, hi in pairwise(bounds)]


class Aligning:
    """Forced alignment of a transcript, started at construction, collected by :meth:`result`.

    Clips up to :data:`ALIGN_WHOLE_MAX_S` are aligned whole; longer ones piece by piece: a
    quick recognition pass (fast mode) places the transcript's words in time, each piece gets
    its words (:func:`plan_words`), and a piece whose words do not fit is recognised instead
    (listed in :attr:`warnings`). Runs in worker processes when this process must stay
    responsive (:func:`workers_only`) or when a long clip has several workers, else in this
    process when collected.
    """

    def __init__(
        self, samples: np.ndarray, words: list[str], *, workers: int,
        pronunciations: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self._samples, self._words, self._workers = samples, words, workers
        self._prons = pronunciations or {}
        self.warnings: list[str] = []
        self._whole = len(samples) / (HOP * 100) <= ALIGN_WHOLE_MAX_S
        self._pieces = [(0, len(samples))]
        self._words_per_piece = [words]
        self._futures: list[Future[tuple[list[ph.Phone], bool]]] = []
        self._quick: Decoding | None = None
        if self._whole:
            self._start()
        else:
            # One worker's plan, so that the pieces do not depend on the cores.
            self._pieces = plan_pieces(samples, 1, ALIGN_WHOLE_MAX_S)
            self._quick = Decoding(samples, fast=True, workers=workers)

    def _start(self) -> None:
        if workers_only() or (not self._whole and self._workers > 1):
            self._futures = _submit(self._workers, False, [
                (align_or_recognise_piece, self._args(k)) for k in range(len(self._pieces))
            ])  # fmt: skip

    def _plan(self, cancel: CancelToken | None, progress: Callable[[float], None] | None) -> None:
        """Place the words in the pieces from the quick recognition pass, then start them."""
        assert self._quick is not None
        scaled = None if progress is None else (lambda f: progress(0.3 * f))
        quick = self._quick.result(cancel, scaled)
        self._quick = None
        total_s = len(self._samples) / (HOP * 100)
        cuts = [a / (HOP * 100) for a, _ in self._pieces[1:]]
        self._words_per_piece = plan_words(self._words, cuts, recognised_words(quick), total_s)
        self._start()

    def _args(self, k: int) -> tuple[bytes, list[str], float, dict[str, str], bool]:
        a, b = self._pieces[k]
        pcm = ph.to_pcm16(self._samples[a:b])
        return pcm, self._words_per_piece[k], a / (HOP * 100), self._prons, self._whole

    def result(
        self, cancel: CancelToken | None = None, progress: Callable[[float], None] | None = None
    ) -> list[ph.Phone]:
        """The aligned phones; raises ``RuntimeError`` when the words of a clip aligned whole
        do not fit the audio."""
        first = 0.0
        if self._quick is not None:
            self._plan(cancel, progress)
            first = 0.3
        total = max(1, len(self._samples))

        def report(done: int) -> None:
            if progress is not None:
                progress(first + (1.0 - first) * done / total)

        if self._futures:
            try:
                _wait(self._futures, cancel, lambda: report(sum(
                    b - a for (a, b), f in zip(self._pieces, self._futures, strict=True)
                    if f.done())))  # fmt: skip
                parts = [future.result() for future in self._futures]
            except BrokenProcessPool as error:
                log.warning("a worker process died (%s); aligning here", error)
                shutdown()
                self._futures = []
                return self.result(cancel, progress)
        else:
            parts = []
            for k, (_, b) in enumerate(self._pieces):
                if cancel is not None:
                    cancel.check()
                parts.append(align_or_recognise_piece(*self._args(k)))
                report(b)
        failed = [self._pieces[k] for k, (_, aligned) in enumerate(parts) if not aligned]
        if failed:
            spans = ", ".join(f"{a / (HOP * 100):.0f}-{b / (HOP * 100):.0f} s" for a, b in failed)
            self.warnings.append(
                f"the transcript did not fit {len(failed)} of {len(parts)} pieces of this long "
                f"clip ({spans}); those were recognised instead — check that the text matches "
                "the audio"
            )
        # Only the transcript's words are evidence: a recognised piece keeps its phones but
        # not the recogniser's words (English guesses; invented ones for other languages).
        return ph.merge_silences([p if aligned else replace(p, word="")
                                  for phones, aligned in parts for p in phones])  # fmt: skip


def plan_pieces(
    samples: np.ndarray, workers: int, min_split_s: float = MIN_SPLIT_S
) -> list[tuple[int, int]]:
    """Sample ranges to decode separately: cut near equal shares, at the quietest 250 ms.

    Pieces are at most :data:`MAX_PIECE_S` long, whatever the worker count and whether the
    audio has pauses or not; clips shorter than ``min_split_s`` stay whole.
    """
    total_s = len(samples) / (HOP * 100)
    workers = max(1, workers)
    if total_s < min_split_s:
        return [(0, len(samples))]
    count = workers * max(1, math.ceil(total_s / (workers * PIECE_S)))
    if count < 2:
        return [(0, len(samples))]
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
        if (workers > 1 and (len(self._pieces) > 1 or pool_ready)) or workers_only():
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
