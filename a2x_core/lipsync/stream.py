"""Streaming on the embedded default model: pocketsphinx live decoding, frames after a fixed
look-ahead (issue 12 point 4; ``docs/streaming.md``, "The default model").

The stream cuts the pushed audio into fixed steps of :data:`STEP` samples (20 ms), whatever the
push sizes, so its frames depend on the audio only, never on how it was cut. At every step it

1. feeds the step to its own pocketsphinx word decoder (``Decoder.process_raw``; the utterance
   lives across pushes and ends at pauses, or after :data:`MAX_UTTERANCE_S`), with a cepstral
   mean of its own (see :data:`CMN_PRIOR`; during the first seconds a second decoder decodes
   the utterance again with the better mean and takes over, see :data:`WARMUP_FRAMES`);
2. computes the 100 Hz features of the hops whose analysis frames are complete (loudness, F1
   openness, F0), normalising loudness by the stream's level so far instead of the clip's;
3. emits every frame ``k`` whose target sample ``t_k`` lies :data:`COMMIT_SAMPLES` (280 ms)
   before the step's end, computed as the offline model does (viseme coarticulation, jaw,
   critical closures, blinks, brows) from the decoder's current best hypothesis: the words
   recognised so far with their spans; the complete words around the frames due are
   force-aligned at the phone level (as offline recognition aligns the whole clip), the
   others get their phones spread by typical durations (as fast mode does).

So a frame comes out once the audio up to ``t_k + COMMIT_SAMPLES`` has arrived, at the latest
one step later: :data:`LOOKAHEAD_SAMPLES` (< 300 ms). Frames once emitted are final. Decoded
phones, features and audio that no future frame needs are dropped after every step (bounded
memory on endless streams).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio.accumulator import AudioAccumulator, StreamFrame, StreamLife
from ..errors import ParameterError
from ..head.motion import HeadMotion, alive_face, head_style, limit_jaw
from ..names import ARKIT_52, TONGUE_16
from ..options import InferenceOptions
from ..timing import SAMPLE_RATE, frame_targets, frame_targets_of, num_frames_for
from . import expressions as ex
from . import language as lg
from . import phones as ph
from .acoustic import open_vowels_by
from .visemes import viseme_track

if TYPE_CHECKING:
    from .model import DefaultLipSyncModel

__all__ = ["COMMIT_SAMPLES", "LOOKAHEAD_SAMPLES", "DefaultStream", "StreamFrame"]

#: The stream works in steps of this many 16 kHz samples (20 ms, two feature hops).
STEP = 2 * ex.HOP
#: Frame ``k`` is emitted at the first step that ends at or after ``t_k`` + this (280 ms): the
#: decoder has then heard 280 ms past the frame, enough for the coarticulation's anticipation
#: (time constants <= 100 ms) and for the word around the frame to be mostly recognised.
COMMIT_SAMPLES = 4480
#: The most audio past a frame's time that can arrive before the frame is out (< 300 ms).
LOOKAHEAD_SAMPLES = COMMIT_SAMPLES + STEP - 1
#: An utterance ends after this much quiet (normalised loudness below QUIET) once it is at
#: least MIN_UTTERANCE_S long, and in any case after MAX_UTTERANCE_S: pocketsphinx's search
#: memory grows with the utterance.
PAUSE_S = 0.3
QUIET = 0.1
MIN_UTTERANCE_S = 2.0
MAX_UTTERANCE_S = 25.0
#: Cepstral mean normalisation. Offline decoding takes the mean of the whole clip; a stream
#: only knows the audio so far, and pocketsphinx's live mean weighs its starting value as 5 s
#: of audio (``CMN_WIN`` frames) and updates after 8 s: on a short stream it hardly adapts,
#: and recognition falls far behind offline (docs/streaming.md). The stream therefore keeps
#: its own running mean: a prior worth CMN_PRIOR_FRAMES frames (the median clip mean of
#: ../shared/data/emotional_speech and speech_non_en, none of them in the evaluation), plus
#: every frame heard, sets it every CMN_UPDATE_STEPS steps.
CMN_PRIOR = np.array([41.4, 1.7, -2.3, 6.4, -0.3, -0.8, -6.0, -11.6, -3.3, -0.9, 0.7, 0.2, -3.1])
CMN_PRIOR_FRAMES = 50
#: c0 (log energy) follows the recording level: the prior's c0 is this line of the stream's
#: mean loudness in dBFS so far (fitted on the same independent clips: c0 = a + b * dB,
#: residual 4.3), once LEVEL_HOPS_FOR_C0 hops were heard.
C0_FROM_DB = (78.6, 0.651)
LEVEL_HOPS_FOR_C0 = 10
CMN_UPDATE_STEPS = 10
#: Warm-up: while the stream has heard fewer than WARMUP_FRAMES frames (3 s) and the utterance
#: is at most REDECODE_S long, a newer mean starts a second decoder on the utterance from its
#: start, fed CATCHUP_STEPS steps per step until it has caught up, then replacing the first:
#: the first frames were heard with a mean that knew little of this stream, and the search's
#: history carries that into the words still to come. A re-decode starts only once the mean
#: has twice the frames (REDECODE_FIRST_FRAMES, then x REDECODE_GROWTH) of the last one's: a
#: mean from twice the audio is a real change, one from 0.2 s more is not, and every re-decode
#: pays again for the young search's dearest steps (at every mean update, the first 3 s of a
#: stream decoded ~11 s of audio, and pushed it past real time on a loaded 2-core machine;
#: doubling: ~7 s, the same hit rates). Catching up over several steps bounds a push's
#: decoding to 1 + CATCHUP_STEPS steps (4: 5 steps gave the same hit rates, 2 lost bilabials).
WARMUP_FRAMES = 300
REDECODE_S = 3.0
REDECODE_FIRST_FRAMES = 20
REDECODE_GROWTH = 2.0
CATCHUP_STEPS = 3
#: pocketsphinx's weight (in frames) of a mean set with ``set_cmn`` (``CMN_WIN`` in cmn_live.c).
_CMN_WIN = 500
#: Phone alignment (see DefaultStream._align_window): the words that end from this long before
#: the frames due now up to this long before the newest audio (the word being heard is not
#: complete yet).
ALIGN_BEHIND_S = 0.15
ALIGN_COMPLETE_S = 0.02
ALIGN_AHEAD_S = 0.1
ALIGN_REACH_S = 0.8
#: Phones and features kept behind the next frame: coarticulation reaches 1 s back, the brow
#: accent test 0.4 s, the feature filters a few hops.
HISTORY_S = 1.2
#: Brow accents: the offline test looks 0.4 s to both sides of an F0 peak; the stream looks
#: 0.4 s back and this far ahead (so an accent is known before its brow rise is due).
ACCENT_AHEAD_HOPS = 8
ACCENT_BEHIND_HOPS = 40
#: Loudness histogram (for the running 98th percentile that normalises it): 0.1 dB bins.
_DB_BINS = np.arange(-130.0, 10.0, 0.1)
#: F0 histogram for the running median of the speaker's voiced pitch: 1 Hz bins.
_F0_BINS = np.arange(40.0, 420.0, 1.0)
_JAW = np.eye(4, dtype=np.float32)
_COL = {name: i for i, name in enumerate(ARKIT_52)}

_IDLE: dict[str, list[Any]] = {"words": [], "fast": [], "phones": []}
_IDLE_LOCK = threading.Lock()
#: Idle decoders kept for the next stream (creating one loads the LM: ~0.3 s, ~30 MB).
_IDLE_MAX = 4


def _cmn_text(mean: np.ndarray) -> str:
    return ",".join(f"{x:.4f}" for x in mean)


def _take_decoder(kind: str) -> Any:
    with _IDLE_LOCK:
        if _IDLE[kind]:
            return _IDLE[kind].pop()
    return ph.new_decoder(kind)


def _give_back(kind: str, dec: Any) -> None:
    with _IDLE_LOCK:
        if len(_IDLE[kind]) < _IDLE_MAX:
            _IDLE[kind].append(dec)


class _RunningPercentile:
    """A percentile of every value added so far, from a fixed histogram (bounded memory)."""

    def __init__(self, bins: np.ndarray, q: float) -> None:
        self.bins, self.q = bins, q
        self.counts = np.zeros(len(bins), np.int64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def add(self, values: np.ndarray) -> None:
        index = np.clip(np.searchsorted(self.bins, values), 0, len(self.bins) - 1)
        np.add.at(self.counts, index, 1)

    def value(self) -> float:
        cumulative = np.cumsum(self.counts)
        rank = self.q * (cumulative[-1] - 1)
        return float(self.bins[int(np.searchsorted(cumulative, rank, side="right"))])


class DefaultStream:
    """Pushed audio in, finished frames out; made by :meth:`.DefaultLipSyncModel.open_stream`.

    Not thread-safe: push from one thread. Options as for ``animate`` except ``transcript``
    (refused: live recognition only) and ``start_s``/``end_s`` (refused: a stream has no clip
    to cut). ``fast`` uses fast mode's harder pruning; ``seed``/``blinks`` as offline;
    ``strength``/``smoothing_s`` are not applied (the Animator's output shaping, as with
    ``animate``); ``threads`` has no use (one decoder per stream).
    """

    def __init__(self, model: DefaultLipSyncModel, options: InferenceOptions) -> None:
        from .model import default_model_notes

        if options.transcript is not None:
            raise ParameterError(
                "transcript is not available on a default-model stream: the words must be "
                "recognised as they arrive",
                hint="leave the transcript out, or animate the whole clip with it "
                "(model.animate) for forced alignment",
            )
        if options.start_s is not None or options.end_s is not None:
            raise ParameterError(
                "start_s/end_s do not apply to a stream (it has no clip to cut)",
                hint="push only the audio to animate",
            )
        self.model, self.options = model, options
        self.warnings = default_model_notes(options, streaming=True)
        self.fps = Fraction(options.fps)
        targets = frame_targets(2, self.fps)
        self._frame_s = float(targets[1] - targets[0]) / SAMPLE_RATE
        self._audio = AudioAccumulator()
        self._life = StreamLife()
        #: the route the offline model takes without a transcript: English words, or for
        #: another language (``--language CODE``) the language-independent phone loop
        self.language = lg.choose(options.language, None)
        if self.language.english:
            self._kind = "fast" if options.fast else "words"
        else:
            self._kind = "phones"
        self._decoder = _take_decoder(self._kind)
        self._decoder.reinit_feat()
        self._cmn_sum = np.zeros(len(CMN_PRIOR))  # sum of the cepstra heard so far
        self._cmn_frames = 0.0
        self._db_sum, self._db_count = 0.0, 0  # loudness so far, for the prior's c0
        self._cmn_at = 0  # samples fed when the mean was last set
        self._cmn = CMN_PRIOR.copy()
        self._decoder.set_cmn(_cmn_text(self._cmn))
        self._decoder.start_utt()
        self._shadow: Any = None  # a second decoder catching up (see WARMUP_FRAMES)
        # ... taken now, not in the push that needs it (a new decoder loads the LM: ~0.3 s)
        self._spare: Any = _take_decoder(self._kind)
        self._shadow_fed = 0
        self._redecode_frames: float = REDECODE_FIRST_FRAMES  # heard before the next re-decode
        self._utterance_start = 0  # absolute sample of the current utterance's start
        self._utterance_open = True  # False once close() has finished the last one
        self._fed = 0  # samples fed to the decoder (a multiple of STEP until close)
        self._next_frame = 0
        self._done_phones: list[ph.Phone] = []  # of finished utterances (recent ones only)
        # 100 Hz features of hops _hop0 .. _hop0 + len(_db); f0 median up to _f0_done.
        self._hop0 = 0
        self._db = np.zeros(0)
        self._level = np.zeros(0)
        self._opening = np.zeros(0)
        self._f0_raw = np.zeros(0)
        self._f0 = np.zeros(0)
        self._f0_done = 0
        self._accent_done = 0  # hops tested for a brow accent
        self._peak = _RunningPercentile(_DB_BINS, 0.98)
        self._pitch = _RunningPercentile(_F0_BINS, 0.5)
        self._accents: list[tuple[float, float]] = []
        self._aligned_key: tuple[Any, ...] = ()
        self._aligned: list[ph.Phone] = []
        self._aligned_span = (0.0, 0.0)
        self._blink_source: Iterator[ex.Blink] | None = (
            ex.blink_events(options.seed) if options.blinks else None
        )
        self._blinks: deque[ex.Blink] = deque()
        self._head = HeadMotion(options.seed, head_style(options))
        self._last_jaw: float | None = None  # the last frame's jawOpen (speed limit)
        #: Set to a list to record every emission as ``(first frame, end frame, samples
        #: heard, phones)``: the hypothesis those frames were computed from, to look at a
        #: missed consonant (``benchmarks/lipsync_eval.py --misses``). None: nothing kept.
        self.trace: list[tuple[int, int, int, list[ph.Phone]]] | None = None

    # ------------------------------------------------------------------------- public

    #: Seconds of audio past a frame's time that may arrive before the frame is out.
    stream_lookahead_s = LOOKAHEAD_SAMPLES / SAMPLE_RATE
    lookahead_samples = LOOKAHEAD_SAMPLES

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
        """16 kHz samples held for steps and features still to come."""
        return self._audio.buffered

    @property
    def held(self) -> dict[str, int]:
        """Sizes of what the stream holds (bounded on endless streams; for monitoring)."""
        return {
            "samples": self._audio.buffered,
            "hops": len(self._db),
            "phones": len(self._done_phones),
            "accents": len(self._accents),
            "blinks": len(self._blinks),
            "utterance_samples": self._fed - self._utterance_start,
        }

    @property
    def closed(self) -> bool:
        return self._life.closed

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[StreamFrame]:
        """Add audio (mono, or ``[n, channels]`` mixed down; float in [-1, 1] or integer PCM)
        and return the frames it completed, in order; any number of samples, even 0.

        Raises:
            ParameterError: a bad rate, or a rate other than the first push's.
            AudioDecodeError, AudioInvalidSamplesError: not audio samples; NaN/inf or huge values.
            CancelledError: the stream was cancelled. ParameterError: it was closed.
        """
        self._life.check("push")
        self._audio.push(samples, sample_rate)
        out: list[StreamFrame] = []
        while self._fed + STEP <= self._audio.received:
            out += self._step(self._fed + STEP, final=False)
        return out

    def close(self) -> list[StreamFrame]:
        """End of audio: decode the tail, finish the utterance and return every remaining frame
        (the offline frame count in all); then the stream holds nothing. Closing again
        returns ``[]``.

        Raises:
            CancelledError: the stream was cancelled.
        """
        if self._life.state == "closed":
            return []
        self._life.check("close")
        self._audio.flush()
        out: list[StreamFrame] = []
        while self._fed + STEP <= self._audio.received:
            out += self._step(self._fed + STEP, final=False)
        out += self._step(self._audio.received, final=True)
        self._life.state = "closed"
        self._release()
        return out

    def cancel(self) -> None:
        """Stop now: drop the buffered audio and state; later pushes raise CancelledError."""
        if self._life.state == "open":
            self._life.state = "cancelled"
            self._decoder.end_utt()
            self._release()

    # ------------------------------------------------------------------------- steps

    def _release(self) -> None:
        self._drop_shadow()
        if self._spare is not None:
            _give_back(self._kind, self._spare)
            self._spare = None
        self._audio.clear()
        self._done_phones, self._accents = [], []
        self._blinks.clear()
        _give_back(self._kind, self._decoder)
        self._decoder = None

    def _step(self, end: int, final: bool) -> list[StreamFrame]:
        """Decode and analyse the audio up to ``end``; emit the frames that are due."""
        if end > self._fed:
            pcm = ph.to_pcm16(self._audio.read(self._fed, end - self._fed))
            self._decoder.process_raw(pcm, False, False)
            self._fed = end
            if (self._fed // STEP) % CMN_UPDATE_STEPS == 0:
                self._update_cmn()
            if self._shadow is not None:
                self._catch_up()
        self._add_hops(final)
        if final:
            self._finish_utterance()
            self._utterance_open = False
            due = num_frames_for(self._audio.received, self.fps, SAMPLE_RATE)
        else:
            if self._pause_ended():
                self._finish_utterance()
                self._decoder.start_utt()
                self._utterance_start = end
            due = num_frames_for(end - COMMIT_SAMPLES + 1, self.fps, SAMPLE_RATE)
        frames = self._emit(due, final)
        self._forget()
        return frames

    def _pause_ended(self) -> bool:
        """Whether the current utterance should end here (a pause, or it is too long)."""
        length = self._fed - self._utterance_start
        if length >= MAX_UTTERANCE_S * SAMPLE_RATE:
            return True
        pause = int(PAUSE_S / ex.ANALYSIS_S)
        if length < MIN_UTTERANCE_S * SAMPLE_RATE or len(self._level) < pause:
            return False
        return bool(np.all(self._level[-pause:] < QUIET))

    def _update_cmn_sums(self) -> bool:
        """Add the frames fed since the mean was set to the running sums (False: none)."""
        frames = (self._fed - self._cmn_at) / ex.HOP
        if frames <= 0:
            return False
        blended = np.array([float(x) for x in self._decoder.get_cmn(True).split(",")])
        self._cmn_sum += (_CMN_WIN + frames) * blended - _CMN_WIN * self._cmn
        self._cmn_frames += frames
        self._cmn_at = self._fed
        return True

    def _update_cmn(self) -> None:
        """Fold the frames fed since the mean was last set into the running mean, and set it.

        pocketsphinx's live mean is ``(CMN_WIN * set + sum of the new frames) / (CMN_WIN +
        n)``; ``get_cmn(True)`` returns it, so the new frames' sum is recovered exactly."""
        if not self._update_cmn_sums():
            return
        prior = CMN_PRIOR.copy()
        if self._db_count >= LEVEL_HOPS_FOR_C0:
            prior[0] = C0_FROM_DB[0] + C0_FROM_DB[1] * self._db_sum / self._db_count
        self._cmn = (CMN_PRIOR_FRAMES * prior + self._cmn_sum) / (
            CMN_PRIOR_FRAMES + self._cmn_frames
        )
        self._decoder.set_cmn(_cmn_text(self._cmn))
        self._cmn_at = self._fed
        if (self._shadow is None and self._warming_up() and self._spare is not None
                and self._cmn_frames >= self._redecode_frames):  # fmt: skip
            self._redecode_frames = REDECODE_GROWTH * self._cmn_frames
            self._shadow, self._spare = self._spare, None
            self._shadow.reinit_feat()
            self._shadow.set_cmn(_cmn_text(self._cmn))
            self._shadow.start_utt()
            self._shadow_fed = self._utterance_start

    def _warming_up(self) -> bool:
        """Whether the mean is still young (and the utterance short enough to decode again)."""
        return (self._cmn_frames < WARMUP_FRAMES
                and self._fed - self._utterance_start <= REDECODE_S * SAMPLE_RATE)  # fmt: skip

    def _catch_up(self) -> None:
        """Feed the shadow decoder up to CATCHUP_STEPS steps of the utterance; once it has
        heard all the audio, it replaces the decoder (see WARMUP_FRAMES)."""
        assert self._shadow is not None
        end = min(self._fed, self._shadow_fed + CATCHUP_STEPS * STEP)
        pcm = ph.to_pcm16(self._audio.read(self._shadow_fed, end - self._shadow_fed))
        self._shadow.process_raw(pcm, False, False)
        self._shadow_fed = end
        if end < self._fed:
            return
        self._update_cmn_sums()  # the old decoder's frames since the last update
        self._decoder.end_utt()
        self._spare, self._decoder, self._shadow = self._decoder, self._shadow, None
        self._decoder.set_cmn(_cmn_text(self._cmn))  # its frames are in the sums already
        self._cmn_at = self._fed

    def _drop_shadow(self) -> None:
        if self._shadow is not None:
            self._shadow.end_utt()
            self._spare, self._shadow = self._shadow, None
        if self._spare is not None and self._cmn_frames >= WARMUP_FRAMES:
            _give_back(self._kind, self._spare)  # the warm-up is over for good
            self._spare = None

    def _finish_utterance(self) -> None:
        self._drop_shadow()
        self._update_cmn()
        self._drop_shadow()
        self._decoder.end_utt()
        self._decoder.set_cmn(_cmn_text(self._cmn))  # end_utt updates it its own way
        phones = self._utterance_phones(finished=True)
        self._done_phones = ph.merge_silences(self._done_phones + phones)

    def _utterance_phones(self, finished: bool = False) -> list[ph.Phone]:
        """The current utterance's best hypothesis so far as phones (absolute times), from the
        words that reach the kept history; silence where nothing was decoded yet.

        The words around the frames due now are force-aligned at the phone level (as offline
        recognition does for the whole clip); the others get their phones spread by typical
        durations.
        """
        if self._kind == "phones":
            return self._loop_phones()
        offset = self._utterance_start / SAMPLE_RATE
        keep = self._keep_from_s()
        segments = [s for s in ph._segments(self._decoder)
                    if offset + (s[2] + 1) * ph.FRAME_S >= keep]  # fmt: skip
        phones = ph._phones_from_segments(segments, offset)
        if not phones:
            return [ph.Phone(ph.SILENCE, offset, self._fed / SAMPLE_RATE)]
        window = self._align_window(segments, offset, finished)
        if window is None:
            return phones
        start_s, end_s, aligned = window
        return ph.merge_silences(
            [p for p in phones if p.end_s <= start_s + 1e-6]
            + aligned
            + [p for p in phones if p.start_s >= end_s - 1e-6]
        )

    def _loop_phones(self) -> list[ph.Phone]:
        """The phone loop's hypothesis of the current utterance so far (absolute times), from
        the kept history; vowels the sound shows open become open vowels, as offline
        (:func:`.acoustic.open_vowels_by`, with the stream's loudness and F1 openness)."""
        offset = self._utterance_start / SAMPLE_RATE
        keep = self._keep_from_s()
        phones = [p for p in ph.loop_phones(self._decoder, offset) if p.end_s >= keep]
        if not phones:
            return [ph.Phone(ph.SILENCE, offset, self._fed / SAMPLE_RATE)]
        return open_vowels_by(ph.merge_silences(phones), self._level * self._opening, self._hop0)

    def _align_window(
        self, segments: list[tuple[str, int, int, list[str]]], offset: float, finished: bool
    ) -> tuple[float, float, list[ph.Phone]] | None:
        """Phone alignment of the hypothesis' complete words from ALIGN_BEHIND_S before the
        frames due now (all words once the utterance is finished); None if there are none or
        they do not align. Cached: the words of a window rarely change from step to step."""
        commit_s = (self._fed - COMMIT_SAMPLES) / SAMPLE_RATE
        frontier_s = self._fed / SAMPLE_RATE - (0.0 if finished else ALIGN_COMPLETE_S)
        chosen = [s for s in segments
                  if offset + (s[2] + 1) * ph.FRAME_S >= commit_s - ALIGN_BEHIND_S
                  and offset + (s[2] + 1) * ph.FRAME_S <= frontier_s
                  and (finished or offset + s[1] * ph.FRAME_S <= commit_s + ALIGN_AHEAD_S)]  # fmt: skip
        # A window never reaches back before the held audio nor much before the frames due
        # (a long pause is one segment).
        earliest = max(self._audio.first / SAMPLE_RATE, commit_s - ALIGN_REACH_S)
        while chosen and offset + chosen[0][1] * ph.FRAME_S < earliest:
            chosen.pop(0)
        words = [s[0] for s in chosen if s[0]]
        if not words:
            return None
        first, last = chosen[0][1], chosen[-1][2] + 1
        # Any change realigns: keying on the words alone (the hypothesis moves word ends by a
        # frame or two from step to step) halves the compute but cost 4 points on bilabials.
        key = (tuple((s[0], s[1], s[2]) for s in chosen), offset)
        if key != self._aligned_key:
            start = self._utterance_start + first * ph.FRAME_S * SAMPLE_RATE
            pcm = ph.to_pcm16(self._audio.read(round(start), round((last - first) * 160)))
            try:
                phones = ph.align_words(pcm, words, offset + first * ph.FRAME_S)
            except RuntimeError:
                phones = []
            self._aligned_key, self._aligned = key, phones
            self._aligned_span = (offset + first * ph.FRAME_S, offset + last * ph.FRAME_S)
        if not self._aligned:
            return None
        return (*self._aligned_span, self._aligned)

    # ------------------------------------------------------------------------- features

    def _add_hops(self, final: bool) -> None:
        """Features of the hops whose analysis frames the audio now covers (all at the end)."""
        done = self._hop0 + len(self._db)
        if final:
            count = max(1, -(-self._audio.received // ex.HOP))
        else:
            count = max(0, (self._fed - ex.F0_SIZE // 2) // ex.HOP + 1)
        if count > done:
            half = ex.F0_SIZE // 2
            local = self._audio.read(done * ex.HOP - half, (count - done) * ex.HOP + 2 * half)
            starts = np.arange(count - done) * ex.HOP + half

            def frames(size: int) -> np.ndarray:
                return local[(starts - size // 2)[:, None] + np.arange(size)[None, :]]

            db = ex.level_db_of_frames(frames(ex.LEVEL_SIZE))
            self._db_sum += float(np.maximum(db, -100.0).sum())
            self._db_count += len(db)
            self._peak.add(db)
            peak = self._peak.value()
            level = (np.zeros_like(db) if peak < -70.0
                     else np.clip((db - (peak - 30.0)) / 30.0, 0.0, 1.0))  # fmt: skip
            opening, f0_raw = np.zeros_like(db), np.zeros_like(db)
            loud = level > 0.2
            if loud.any():
                opening[loud] = ex.openness_of_frames(frames(ex.OPENNESS_SIZE)[loud])
            voiced = level > 0.35
            if voiced.any():
                f0_raw[voiced] = ex.f0_of_frames(frames(ex.F0_SIZE)[voiced])
            self._db = np.concatenate([self._db, db])
            self._level = np.concatenate([self._level, level])
            self._opening = np.concatenate([self._opening, opening])
            self._f0_raw = np.concatenate([self._f0_raw, f0_raw])
        self._median_f0(final)
        self._find_accents()

    def _median_f0(self, final: bool) -> None:
        """The offline 5-point median of F0 (edge-padded at both ends of the stream)."""
        end = self._hop0 + len(self._f0_raw)
        upto = end if final else end - 2
        if upto <= self._f0_done:
            return
        hops = np.arange(self._f0_done, upto)
        near = np.clip(hops[:, None] + np.arange(-2, 3)[None, :], 0, end - 1) - self._hop0
        raw = self._f0_raw[hops - self._hop0]
        median = np.where(raw > 0, np.median(self._f0_raw[near], axis=1), 0.0)
        self._f0 = np.concatenate([self._f0, median])
        self._f0_done = upto
        if (median > 0).any():
            self._pitch.add(median[median > 0])

    def _find_accents(self) -> None:
        """Brow accents (``ex.pitch_accents``'s test with 0.4 s behind and
        ``ACCENT_AHEAD_HOPS`` ahead, against the speaker's median pitch so far)."""
        smooth_half = 4
        last = self._f0_done - ACCENT_AHEAD_HOPS - smooth_half  # hops testable now
        first = max(self._accent_done, self._hop0 + ACCENT_BEHIND_HOPS + smooth_half)
        self._accent_done = max(self._accent_done, last)
        if last <= first or self._pitch.total < 20:
            return
        lo = first - ACCENT_BEHIND_HOPS - smooth_half - self._hop0
        hi = last + ACCENT_AHEAD_HOPS + smooth_half - self._hop0
        f0 = self._f0[lo:hi]
        voiced = f0 > 0
        if not voiced.any():
            return
        semitones = np.zeros_like(f0)
        semitones[voiced] = 12.0 * np.log2(f0[voiced] / self._pitch.value())
        grid = np.arange(len(f0))
        filled = np.interp(grid, grid[voiced], semitones[voiced])
        smooth = np.convolve(filled, np.hanning(9) / np.hanning(9).sum(), mode="same")
        level = self._level[lo:hi]
        for p in range(first - self._hop0 - lo, last - self._hop0 - lo):
            behind = smooth[p - ACCENT_BEHIND_HOPS : p]
            ahead = smooth[p + 1 : p + ACCENT_AHEAD_HOPS + 1]
            if not (voiced[p] and level[p] > 0.6 and smooth[p] >= 1.5):
                continue
            if smooth[p] < max(behind.max(), ahead.max()):
                continue
            if smooth[p] - max(behind.min(), ahead.min()) < 2.0:
                continue
            peak_s = (p + lo + self._hop0) * ex.ANALYSIS_S
            if self._accents and peak_s - self._accents[-1][0] < 0.4:
                continue
            # The brow rises 150 ms before the peak: never before the next frame to emit
            # (emitted frames are final), so a late-found accent starts its rise there.
            next_s = self._next_frame * self._frame_s
            self._accents.append((max(peak_s, next_s + 0.15), float(smooth[p])))

    # ------------------------------------------------------------------------- frames

    def _keep_from_s(self) -> float:
        return self._next_frame * self._frame_s - HISTORY_S

    def _phones(self) -> list[ph.Phone]:
        if not self._utterance_open:
            # close(): the last utterance is in _done_phones already; the ended decoder still
            # answers with its words, which counted them twice (unsorted segments at the tail).
            return ph.merge_silences(self._done_phones)
        return ph.merge_silences(self._done_phones + self._utterance_phones())

    def _at(self, signal: np.ndarray, times_s: np.ndarray, first_hop: int) -> np.ndarray:
        grid = (first_hop + np.arange(len(signal))) * ex.ANALYSIS_S
        return np.interp(times_s, grid, signal).astype(np.float32)

    def _emit(self, due: int, final: bool) -> list[StreamFrame]:
        from .model import JAW_LEAD_S, acoustic_jaw, add_eyes_and_brows

        first = self._next_frame
        if due <= first:
            return []
        index = np.arange(first, due, dtype=np.int64)
        targets = frame_targets_of(index, self.fps)
        times = targets / SAMPLE_RATE
        known = self._f0_done - self._hop0
        level, f0 = self._level[:known], self._f0[:known]
        acoustic = acoustic_jaw(level, f0, self._opening[:known])
        phones = self._phones()
        if self.trace is not None:
            self.trace.append((first, due, self._fed, phones))
        track = viseme_track(phones, self.model.table)
        weights, _ = self.model.mouth(
            times, track, self._at(level, times, self._hop0),
            self._at(acoustic, times + JAW_LEAD_S, self._hop0), self._frame_s,
        )  # fmt: skip
        blink = self._blinks_at(times) if self._blink_source is not None else None
        brow = ex.brow_curve(times, self._accents)
        weights = add_eyes_and_brows(weights, blink, brow)
        self._head.add_hops(self._level, self._hop0, final=final, not_before_s=float(times[0]))
        head, eyes = self._head.at(times)
        weights = alive_face(weights, times, self._at(level, times, self._hop0), eyes,
                             self.options.seed)  # fmt: skip
        self._last_jaw = limit_jaw(weights, self._frame_s, self._last_jaw)
        self._next_frame = due
        step_s = self.fps.denominator / self.fps.numerator
        zeros_tongue = np.zeros(len(TONGUE_16), np.float32)
        return [
            StreamFrame(
                index=int(k),
                time_s=float(k * step_s),
                weights=weights[i],
                tongue_weights=zeros_tongue.copy(),
                jaw_transform=_JAW.copy(),
                eye_rotations=eyes[i],
                emotions=np.zeros(0, np.float32),
                head_rotation=head[i],
            )  # fmt: skip
            for i, k in enumerate(index)
        ]

    def _blinks_at(self, times_s: np.ndarray) -> np.ndarray:
        assert self._blink_source is not None
        while not self._blinks or self._blinks[-1][0] <= times_s[-1]:
            self._blinks.append(next(self._blink_source))
        while self._blinks and sum(self._blinks[0][:4]) < times_s[0]:
            self._blinks.popleft()
        return ex.blinks_at(times_s, self._blinks)

    def _forget(self) -> None:
        """Drop what no future frame or step needs (bounded memory)."""
        keep_s = self._keep_from_s()
        self._done_phones = [p for p in self._done_phones if p.end_s >= keep_s]
        self._accents = [a for a in self._accents if a[0] + 0.5 >= keep_s]
        keep_hop = max(0, int(keep_s / ex.ANALYSIS_S) - 20)
        drop = min(keep_hop - self._hop0, self._f0_done - self._hop0 - 4)
        if drop > 0:
            self._hop0 += drop
            self._db, self._level = self._db[drop:], self._level[drop:]
            self._opening, self._f0_raw = self._opening[drop:], self._f0_raw[drop:]
            self._f0 = self._f0[drop:]
        next_hop = self._hop0 + len(self._db)
        keep_sample = int(keep_s * SAMPLE_RATE)  # the phone alignment reads back this far
        if self._shadow is not None or self._warming_up():
            keep_sample = min(keep_sample, self._utterance_start)
        self._audio.drop_before(min(self._fed, next_hop * ex.HOP - ex.F0_SIZE // 2, keep_sample))
