"""Phones with timings from speech: pocketsphinx word recognition, forced alignment, phone loop.

Three ways to get an ARPAbet phone sequence with 10 ms timings, all with the en-US models that
pocketsphinx's wheel ships (no download):

* :func:`align_words` forces the audio onto a known word sequence (the user's transcript);
* :func:`recognise` decodes words with the n-gram LM, then aligns the recognised words at the
  phone level (fast mode: harder pruning, no phone pass);
* :func:`phone_loop` decodes phones directly with the phone bigram. Kept for comparison only:
  its labels find far fewer of the reference /p b m/, /f v/... than recognised words do
  (docs/quality.md).

Decoders are expensive to create (the LM load is ~0.3 s), so each process keeps one of each
kind in a module cache; worker processes (see :mod:`.parallel`) keep their own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np

from ..errors import ModelError

log = logging.getLogger("a2x_core")

#: pocketsphinx frame period (``frate`` 100).
FRAME_S = 0.01
SILENCE = "SIL"
_DATA = Path(__file__).with_name("data")

#: Word-search pruning. pocketsphinx's defaults decode at 2-5x real time on one core; these run
#: about 3x faster for the same phone-class recall on speech_en (no second flat pass, no
#: lattice, at most 2000 active HMMs per frame, tighter phone-exit beams). bestpath must be off
#: for phone alignment anyway (cmusphinx/pocketsphinx#500).
WORD_SEARCH: dict[str, Any] = {
    "fwdflat": False,
    "bestpath": False,
    "maxhmmpf": 2000,
    "pbeam": 1e-30,
    "lpbeam": 1e-30,
}
#: Fast mode prunes harder still (about 1.5x faster again) and skips the phone alignment pass.
#: Its phone beams stay as wide as the word search's (1e-30): at 1e-25 the pruned search lost
#: the /p b m/ and /f v/ of short words (fast hit rates 83 % and 79 % on speech_en, 87 % and
#: 95 % at 1e-30) for 4-8 % more decoding CPU (docs/quality.md).
FAST_SEARCH: dict[str, Any] = {
    **WORD_SEARCH,
    "maxhmmpf": 1000,
    "wbeam": 1e-15,
    "maxwpf": 5,
}
#: Phone loop (phone_loop(): the language-independent path of .acoustic). A low language
#: weight lets the acoustics outvote the English phone bigram (lw 2 instead of 6.5: bilabial
#: recall on the German/Russian/Mandarin clips 0.49 -> 0.65), with a wider beam to match.
PHONE_SEARCH: dict[str, Any] = {"beam": 1e-40, "pbeam": 1e-40, "lw": 2.0}


@dataclass(frozen=True)
class Phone:
    """One phone: ARPAbet label without stress (``"M"``, ``"AA"``; ``"SIL"`` for silence/noise),
    its span in seconds of the decoded audio, and the word it belongs to ("" if unknown)."""

    label: str
    start_s: float
    end_s: float
    word: str = ""


def to_pcm16(samples: np.ndarray) -> bytes:
    """16 kHz float samples → little-endian int16 bytes, the input pocketsphinx decodes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _model_path() -> str:
    from pocketsphinx import get_model_path

    return str(get_model_path())


_DECODERS: dict[str, Any] = {}
#: Transcript words this process added to its alignment dictionary by guessing.
_GUESSED: set[str] = set()
_LOCK = threading.RLock()
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _exclusive(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """pocketsphinx decoders are not thread-safe: this process's serve one call at a time
    (two UI jobs may animate at once)."""

    @wraps(func)
    def locked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _LOCK:
            return func(*args, **kwargs)

    return locked


@_exclusive
def decoder(kind: str) -> Any:
    """This process's pocketsphinx decoder of ``kind`` ("words", "fast", "align" or "phones"),
    created once per process."""
    if kind not in _DECODERS:
        _DECODERS[kind] = new_decoder(kind)
    return _DECODERS[kind]


def new_decoder(kind: str) -> Any:
    """A fresh pocketsphinx decoder of ``kind`` (see :func:`decoder`); a stream owns one, as
    its utterance lives across pushes."""
    try:
        from pocketsphinx import Decoder
    except ImportError as error:  # pragma: no cover - pocketsphinx is a hard dependency
        raise ModelError(
            "the default model needs pocketsphinx", hint="pip install 'pocketsphinx>=5'"
        ) from error
    if kind == "words":
        made = Decoder(loglevel="FATAL", **WORD_SEARCH)
    elif kind == "fast":
        made = Decoder(loglevel="FATAL", **FAST_SEARCH)
    elif kind == "align":
        made = Decoder(loglevel="FATAL", lm=None, bestpath=False)
    elif kind == "phones":
        allphone = os.path.join(_model_path(), "en-us", "en-us-phone.lm.bin")
        made = Decoder(loglevel="FATAL", lm=None, allphone=allphone, **PHONE_SEARCH)
    else:
        raise ValueError(f"unknown decoder kind {kind!r}; use words, fast, align or phones")
    return made


def _base_word(word: str) -> str:
    """``"for(2)"`` → ``"for"``; fillers (``<sil>``, ``[NOISE]``) → ""."""
    if word.startswith(("<", "[", "+")):
        return ""
    return word.split("(", 1)[0]


def _label(name: str) -> str:
    """Acoustic-model phone name → our label (noise and filler phones count as silence)."""
    return SILENCE if (name.startswith("+") or name == "SIL") else name


def _decode(dec: Any, pcm: bytes) -> None:
    # Live CMN carries over between utterances; a fresh feature front end makes every decode
    # depend only on its own audio (so pieces and batches repeat exactly).
    dec.reinit_feat()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()


def _phones_from_alignment(dec: Any, offset_s: float) -> list[Phone]:
    phones: list[Phone] = []
    # Iterate the live alignment object directly: materialising it with list() crashes
    # pocketsphinx 5.1.1 (its iterators outlive their parent).
    for word in dec.get_alignment():
        base = _base_word(word.name)
        for phone in word:
            start = offset_s + phone.start * FRAME_S
            phones.append(Phone(_label(phone.name), start, start + phone.duration * FRAME_S, base))
    return merge_silences(phones)


def merge_silences(phones: list[Phone]) -> list[Phone]:
    """Merge adjacent silences and make the sequence gap-free (gaps become silence)."""
    out: list[Phone] = []
    for phone in phones:
        if out and phone.start_s > out[-1].end_s + 1e-6:
            out.append(Phone(SILENCE, out[-1].end_s, phone.start_s))
        if out and phone.label == SILENCE and out[-1].label == SILENCE:
            out[-1] = Phone(SILENCE, out[-1].start_s, phone.end_s)
        else:
            out.append(phone)
    return out


def _align_pass(dec: Any, pcm: bytes, offset_s: float) -> list[Phone]:
    """Phone-level second pass over the word alignment of the last decode."""
    dec.set_alignment()
    _decode(dec, pcm)
    return _phones_from_alignment(dec, offset_s)


@_exclusive
def align_words(pcm: bytes, words: list[str], offset_s: float = 0.0) -> list[Phone]:
    """Force ``pcm`` onto ``words`` (all in the dictionary; see :func:`prepare_words`).

    Raises:
        RuntimeError: pocketsphinx could not align (e.g. the words do not fit the audio).
    """
    total_s = len(pcm) / 2 / 16000
    if not words:
        return [Phone(SILENCE, offset_s, offset_s + total_s)]
    dec = decoder("align")
    dec.set_align_text(" ".join(words))
    _decode(dec, pcm)
    if dec.hyp() is None:
        raise RuntimeError("forced alignment found no path through the words")
    segments = _segments(dec)
    try:
        phones = _align_pass(dec, pcm, offset_s)
    except RuntimeError:
        # The phone pass of pocketsphinx 5.1.1 can fail to reach its final state
        # (cmusphinx/pocketsphinx#468); spread each word's phones over its word span instead.
        log.debug("phone alignment failed; using word spans")
        phones = _phones_from_segments(segments, offset_s)
    if phones and phones[-1].end_s < offset_s + total_s:
        phones = merge_silences([*phones, Phone(SILENCE, phones[-1].end_s, offset_s + total_s)])
    return phones


@_exclusive
def recognise(pcm: bytes, offset_s: float = 0.0, *, align: bool = True) -> list[Phone]:
    """Recognise words with the LM, then align their pronunciations at the phone level.

    With ``align=False`` (fast mode) the search prunes harder, the phone pass is skipped and
    each word's phones are spread over the word's span in proportion to their typical
    durations (``data/phone_durations.json``).
    """
    dec = decoder("words" if align else "fast")
    _decode(dec, pcm)
    segments = _segments(dec)
    words = [word for word, *_ in segments if word]
    if not words:
        return [Phone(SILENCE, offset_s, offset_s + len(pcm) / 2 / 16000)]
    if align:
        try:
            return align_words(pcm, words, offset_s)
        except RuntimeError:
            log.debug("aligning the recognised words failed; using word spans")
    return _phones_from_segments(segments, offset_s)


def _segments(dec: Any) -> list[tuple[str, int, int, list[str]]]:
    """The last decode's word segments: (word, first frame, last frame, its phones)."""
    out = []
    for seg in dec.seg() or ():  # None when nothing was decoded
        word = _base_word(seg.word)
        pron = (dec.lookup_word(seg.word) or "").split() if word else []
        out.append((word, seg.start_frame, seg.end_frame, pron))
    return out


@lru_cache(maxsize=1)
def _durations() -> dict[str, float]:
    table = json.loads((_DATA / "phone_durations.json").read_text(encoding="utf-8"))
    return {phone: float(ms) for phone, ms in table["durations_ms"].items()}


def _phones_from_segments(
    segments: list[tuple[str, int, int, list[str]]], offset_s: float
) -> list[Phone]:
    phones: list[Phone] = []
    for word, first, last, pron in segments:
        start, end = offset_s + first * FRAME_S, offset_s + (last + 1) * FRAME_S
        if not pron:
            phones.append(Phone(SILENCE, start, end))
            continue
        typical = _durations()
        share = np.array([typical.get(p, 100.0) for p in pron])
        edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(share) / share.sum()])
        phones += [
            Phone(p, float(a), float(b), word)
            for p, a, b in zip(pron, edges[:-1], edges[1:], strict=True)
        ]
    return merge_silences(phones)


@_exclusive
def phone_loop(pcm: bytes, offset_s: float = 0.0) -> list[Phone]:
    """Decode phones directly with the phone bigram (~30x real time per core)."""
    dec = decoder("phones")
    _decode(dec, pcm)
    return merge_silences(loop_phones(dec, offset_s))


def loop_phones(dec: Any, offset_s: float = 0.0) -> list[Phone]:
    """A phone decoder's hypothesis as phones (its ``seg()``: after an utterance, or during
    one for a stream), times from ``offset_s``."""
    segments = dec.seg() or ()  # None when nothing was decoded
    return [Phone(_label(seg.word), offset_s + seg.start_frame * FRAME_S,
                  offset_s + (seg.end_frame + 1) * FRAME_S) for seg in segments]  # fmt: skip


# --- transcripts ---------------------------------------------------------------------------

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """Spell a non-negative integer below a billion in English words."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, name in ((1_000_000, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = number_words(n % size) if n % size else []
            return number_words(n // size) + [name] + rest
    raise ValueError(n)  # unreachable


#: Han (CJK) ideographs: written without spaces, one syllable each, so each is a word.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"


def normalise_transcript(text: str, spell_numbers: bool = True) -> list[str]:
    """Lower-case words for alignment: numbers spelled out in English (``spell_numbers``;
    else kept as digits, for a reader that says them in the transcript's language),
    punctuation dropped, ``&`` → and.

    Letters of any script are kept (``für``, ``бедняга``); Han characters, written without
    spaces, become one word each (one syllable).
    """
    text = text.lower().replace("&", " and ").replace("%", " percent ")
    text = re.sub(r"[\u2018\u2019`]", "'", text)
    text = re.sub(f"([{_HAN}])", r" \1 ", text)
    words: list[str] = []
    for token in re.findall(r"(?:[^\W_]|')+", re.sub(r"[-_/]", " ", text)):
        for part in re.split(r"(\d+)", token.strip("'")):
            if part.isdecimal() and not spell_numbers:
                words.append(part)
            elif part.isdecimal():
                words += (
                    number_words(int(part)) if len(part) < 10 else [_ONES[int(c)] for c in part]
                )
            elif part.strip("'"):
                words.append(part.strip("'"))
    return words


@lru_cache(maxsize=1)
def _transliteration() -> tuple[dict[str, str], str]:
    table = json.loads((_DATA / "transliteration.json").read_text(encoding="utf-8"))
    return table["letters"], table["han_syllable"]


def transliterate(word: str) -> str:
    """``word`` (lower case, any script) spelled with a-z for :func:`letter_to_sound`:
    table letters (Cyrillic, Greek, umlauts), then accents dropped (``é`` → ``e``), then each
    Han character as one open syllable (no pinyin without a dictionary)."""
    letters, han = _transliteration()
    spelled = "".join(letters.get(c, c) for c in word)
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", spelled) if not unicodedata.combining(c)
    )
    return re.sub(f"[{_HAN}]", han, plain)


@lru_cache(maxsize=1)
def _letter_rules() -> list[tuple[str, str]]:
    table = json.loads((_DATA / "letter_to_sound.json").read_text(encoding="utf-8"))["rules"]
    return sorted(table.items(), key=lambda kv: -len(kv[0]))


def merge_repeats(phones: list[str]) -> str:
    """``phones`` space-separated, a phone repeated across a boundary said once."""
    return " ".join(p for k, p in enumerate(phones) if k == 0 or p != phones[k - 1])


def greedy_phones(text: str, rules: list[tuple[str, str]]) -> str:
    """ARPAbet phones of ``text`` read left to right by ``rules`` (``(symbols, phones)``,
    longest first): the first rule that matches at each place wins, a symbol no rule reads is
    skipped, and a phone repeated across a boundary is merged."""
    phones: list[str] = []
    i = 0
    while i < len(text):
        for graph, sound in rules:
            if text.startswith(graph, i):
                phones += sound.split()
                i += len(graph)
                break
        else:
            i += 1
    return merge_repeats(phones)


def letter_to_sound(word: str) -> str:
    """A rough pronunciation for a word missing from the dictionary (greedy grapheme rules)."""
    letters = re.sub(r"[^a-z]", "", transliterate(word.lower()))
    if len(letters) > 3 and letters.endswith("e") and letters[-2] not in "aeiouy":
        letters = letters[:-1]  # silent final e
    return greedy_phones(letters, _letter_rules()) or "AH"


@_exclusive
def prepare_words(words: list[str], dec: Any) -> tuple[list[str], list[str]]:
    """Make every word alignable: dictionary words pass, compounds of two dictionary words and
    others get a pronunciation added (letter-to-sound). Returns ``(words, warnings)``."""
    distinct = list(dict.fromkeys(words))
    missing = [w for w in distinct if not dec.lookup_word(w)]
    for k, word in enumerate(missing):
        pron = _compound(word, dec) or letter_to_sound(word)
        dec.add_word(word, pron, update=k == len(missing) - 1)
        _GUESSED.add(word)
    # Words guessed by an earlier call are in the dictionary now; they are still guesses.
    guessed = [f"{w} /{dec.lookup_word(w).lower()}/" for w in distinct if w in _GUESSED]
    warnings = []
    if guessed:
        warnings.append(
            "transcript words not in the pronunciation dictionary were guessed: "
            + ", ".join(guessed)
        )
    return words, warnings


@_exclusive
def in_dictionary(word: str) -> bool:
    """Whether the English pronunciation dictionary knows ``word`` (before any guesses)."""
    return word not in _GUESSED and bool(decoder("align").lookup_word(word))


@_exclusive
def pronunciations(words: list[str]) -> dict[str, str]:
    """Each distinct word's pronunciation in this process's alignment dictionary (after
    :func:`prepare_words`), for worker processes whose dictionary lacks the guessed ones."""
    dec = decoder("align")
    return {w: dec.lookup_word(w) or "" for w in dict.fromkeys(words)}


@_exclusive
def add_pronunciations(prons: dict[str, str]) -> None:
    """Add the words of ``prons`` that this process's alignment dictionary lacks."""
    if not prons:
        return
    dec = decoder("align")
    missing = [(w, p) for w, p in prons.items() if p and not dec.lookup_word(w)]
    for k, (word, pron) in enumerate(missing):
        dec.add_word(word, pron, update=k == len(missing) - 1)


def _compound(word: str, dec: Any) -> str | None:
    for cut in range(len(word) - 2, 1, -1):
        head, tail = dec.lookup_word(word[:cut]), dec.lookup_word(word[cut:])
        if head and tail:
            return f"{head} {tail}"
    return None
