"""Language-independent phones for speech in any language, without a transcript.

The English word recogniser forces every stretch of speech into English words, so for other
languages it invents closures (German "Das schwarze Stück Papier" heard as "the schweppes and
another puppet") and drops real ones. Here pocketsphinx decodes *phones* instead, in a loop
with its phonetic language model (``en-us-phone.lm.bin`` from the wheel; no words, no
dictionary): the acoustic model's phones are close to universal for the mouth shapes the
animation needs (lips closed, lip to teeth, rounded, open). The loop's language weight is
low (``phones.PHONE_SEARCH``) so that the sound outvotes English phonotactics.

Acoustic evidence then corrects the vowels: a vowel the loop heard as close or mid where
loudness x F1 openness says the jaw is open becomes an open vowel. (A level-dip check on
bilabials was tried and dropped: the dips of t/k closures look the same, and it removed more
true closures than false ones; docs/quality.md.)

No words come out (``Phone.word`` is "").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..jobs import CancelToken
from . import expressions as ex
from . import phones as ph
from .parallel import MIN_SPLIT_S, plan_pieces

#: Vowels the loop may hear where the mouth is open (unrounded, not open already) and the
#: open vowel they become when the sound says the jaw is open.
_OPENABLE = ("IH", "IY", "EH", "EY", "ER", "AH", "UH")
#: Mean loudness x F1 openness over a vowel (both 0..1) from which it counts as open. Tuned on
#: English clips through this path (benchmarks/lipsync_eval.py's tuning row, never on the
#: non-English clips): open-vowel hits 0.88 / 0.89 / 0.90 / 0.91 at 0.15 / 0.10 / 0.08 / 0.06,
#: every other class and false-shape count unchanged.
OPEN_VOWEL = 0.06


def open_vowels(
    phones: list[ph.Phone], samples: np.ndarray, level_db: np.ndarray
) -> list[ph.Phone]:
    """Vowels the loop heard as close or mid that the spectrum shows open become AA: the loop's
    vowel identities follow English phonotactics, the jaw follows the sound (F1)."""
    level = ex.normalised_loudness(level_db)
    return open_vowels_by(phones, level * ex.openness(samples, level))


def open_vowels_by(
    phones: list[ph.Phone], open_track: np.ndarray, first_hop: int = 0
) -> list[ph.Phone]:
    """:func:`open_vowels` from loudness x F1 openness per analysis hop, hop ``first_hop``
    first (a stream holds only its recent hops; a vowel past the known hops is left as heard)."""
    step = ex.ANALYSIS_S
    out = []
    for p in phones:
        lo = int(p.start_s / step)
        hi = max(lo + 1, int(p.end_s / step))
        span = open_track[max(0, lo - first_hop) : max(0, hi - first_hop)]
        if p.label in _OPENABLE and len(span) and float(span.mean()) >= OPEN_VOWEL:
            p = replace(p, label="AA")
        out.append(p)
    return out


class PhoneDecoding:
    """Language-independent phones of one clip (same interface as :class:`.parallel.Decoding`).

    The phone loop runs ~30x real time on one core, so it runs here, piece by piece (pieces
    keep pocketsphinx's memory bounded on long clips), when :meth:`result` is called.
    """

    def __init__(self, samples: np.ndarray) -> None:
        self._samples = samples

    def result(
        self, cancel: CancelToken | None = None, progress: Callable[[float], None] | None = None
    ) -> list[ph.Phone]:
        """All phones in time order, vowels checked against the spectrum."""
        total = max(1, len(self._samples))
        out: list[ph.Phone] = []
        for a, b in plan_pieces(self._samples, 1, MIN_SPLIT_S):
            if cancel is not None:
                cancel.check()
            out += ph.phone_loop(ph.to_pcm16(self._samples[a:b]), a / (ex.HOP * 100))
            if progress is not None:
                progress(b / total)
        level_db = ex.loudness_db(self._samples)
        return open_vowels(ph.merge_silences(out), self._samples, level_db)
