"""Language-independent phones for speech in any language, without a transcript.

The English word recogniser forces every stretch of speech into English words, so for other
languages it invents closures (German "Das schwarze Stück Papier" heard as "the schweppes and
another puppet") and drops real ones. Here pocketsphinx decodes *phones* instead, in a loop
with its phonetic language model (``en-us-phone.lm.bin`` from the wheel; no words, no
dictionary): the acoustic model's phones are close to universal for the mouth shapes the
animation needs (lips closed, lip to teeth, rounded, open). Then acoustic evidence checks
the decisions the phone loop is least sure of:

* a bilabial (P B M) is kept only where the sound shows a closure: the level dips below the
  surrounding vowels (a stop's silence, a nasal's murmur is quieter than a vowel); otherwise it
  becomes the neutral alveolar (T/N), so the lips stay apart;
* an unrounded vowel next to a quiet dip stays as decoded.

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

BILABIALS = ("P", "B", "M")
#: A bilabial's quietest 10 ms must lie this many dB under the loudest frame within
#: ``CONTEXT_S`` around it to count as a closure.
CLOSURE_DIP_DB = 6.0
CONTEXT_S = 0.12
#: What an unconfirmed bilabial becomes: the nearest non-labial (stop → T, nasal → N).
_UNLABIAL = {"P": "T", "B": "D", "M": "N"}


def _confirmed(phone: ph.Phone, level_db: np.ndarray) -> bool:
    """Whether the level shows a closure within ``phone`` (see :data:`CLOSURE_DIP_DB`)."""
    step = ex.ANALYSIS_S
    lo, hi = int(phone.start_s / step), max(int(phone.start_s / step) + 1, int(phone.end_s / step))
    around = level_db[max(0, lo - int(CONTEXT_S / step)) : hi + int(CONTEXT_S / step)]
    inside = level_db[lo:hi]
    if len(inside) == 0 or len(around) == 0:
        return False
    return float(around.max() - inside.min()) >= CLOSURE_DIP_DB


def check_closures(phones: list[ph.Phone], level_db: np.ndarray) -> list[ph.Phone]:
    """Bilabials without an acoustic closure become non-labial (see the module doc)."""
    return [
        replace(p, label=_UNLABIAL[p.label])
        if p.label in BILABIALS and not _confirmed(p, level_db)
        else p
        for p in phones
    ]


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
        """All phones in time order, bilabials checked against the level."""
        total = max(1, len(self._samples))
        out: list[ph.Phone] = []
        for a, b in plan_pieces(self._samples, 1, MIN_SPLIT_S):
            if cancel is not None:
                cancel.check()
            out += ph.phone_loop(ph.to_pcm16(self._samples[a:b]), a / (ex.HOP * 100))
            if progress is not None:
                progress(b / total)
        return check_closures(ph.merge_silences(out), ex.loudness_db(self._samples))
