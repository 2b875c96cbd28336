"""Pronunciations of Mandarin transcript words (Han characters) through their pinyin.

Han characters carry no pronunciation a rule could read: without a dictionary each became one
neutral syllable (no closure for 房 fáng's /f/, 明 míng's /m/, no rounding). ``pypinyin`` (MIT,
pure Python, a dependency) reads them in context (polyphones by the phrase they
stand in), and ``data/pinyin_to_arpabet.json`` maps each syllable to the English model's
ARPAbet phones nearest in mouth shape. Without pypinyin the neutral syllables stay, and the
result says so.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from .phones import merge_repeats

_DATA = Path(__file__).with_name("data")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def available() -> bool:
    """Whether pypinyin is installed (a dependency; a host that installed a2x without its
    dependencies may lack it)."""
    try:
        import pypinyin  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    table = json.loads((_DATA / "pinyin_to_arpabet.json").read_text(encoding="utf-8"))
    table["initial_order"] = sorted(table["initials"], key=len, reverse=True)
    return table


def syllable_phones(syllable: str) -> str:
    """ARPAbet phones of one toneless pinyin syllable (``guang`` → ``G W AA NG``); "" for a
    syllable the table cannot read."""
    table = _table()
    syllable = syllable.lower().replace("ü", "v")
    initial = next((i for i in table["initial_order"] if syllable.startswith(i)), "")
    final = syllable[len(initial):]
    if not final:
        return table["initials"].get(initial, "")
    if final == "i" and initial in table["retroflex_i_after"]:
        vowel = table["retroflex_i"]
    elif final == "i" and initial in table["apical_i_after"]:
        vowel = table["apical_i"]
    elif final == "o" and initial in table["labial_o_after"]:
        vowel = table["labial_o"]
    elif initial in table["umlaut_after"] and final in table["umlaut_finals"]:
        vowel = table["umlaut_finals"][final]
    else:
        vowel = table["finals"].get(final, "")
    if not vowel:
        return ""
    return merge_repeats((table["initials"].get(initial, "") + " " + vowel).split())


def pronunciations(words: list[str]) -> dict[str, str]:
    """Word → ARPAbet for each distinct word that has Han characters; {} without pypinyin.

    The transcript's words (one Han character each, :func:`..phones.normalise_transcript`)
    are read together, so that a character takes the reading of the phrase it stands in.
    """
    if not available():
        return {}
    from pypinyin import lazy_pinyin

    han = [w for w in words if _HAN.search(w)]
    if not han:
        return {}
    out: dict[str, str] = {}
    for word in dict.fromkeys(han):
        if len(word) > 1:  # a run of characters written as one word
            out[word] = " ".join(filter(None, (syllable_phones(s) for s in lazy_pinyin(word))))
    # Single characters in context: the whole transcript's characters read at once.
    singles = [w for w in han if len(w) == 1]
    readings = lazy_pinyin("".join(singles), errors=lambda chars: [""] * len(chars))
    if len(readings) == len(singles):
        for word, reading in zip(singles, readings, strict=True):
            out.setdefault(word, syllable_phones(reading))
    return {word: pron for word, pron in out.items() if pron}
