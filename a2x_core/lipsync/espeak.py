"""Pronunciations of transcript words in any of espeak-ng's ~130 languages.

A transcript in a language without rules of its own (``grapheme_to_phone.json``: German,
Russian) used to be spelled letter by letter, and a script without Latin letters (Japanese,
Korean, Arabic, Hindi...) became one neutral syllable per word: no closures, no rounding. The
``espeak-ng`` program (Debian's and most distributions' ``espeak-ng`` package; ``A2X_ESPEAK``
names another binary) knows each language's spelling; its IPA is mapped to the English
model's ARPAbet phones nearest in mouth shape (``data/ipa_to_arpabet.json``).

espeak-ng runs as a separate program (one call per transcript), so it stays an optional tool
the user installs, not a library linked into a2x. Without it the generic transliteration is
used, and the result says which one spoke.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import unicodedata
from functools import lru_cache
from pathlib import Path

from .phones import greedy_phones

log = logging.getLogger("a2x_core")

_DATA = Path(__file__).with_name("data")
#: Seconds one espeak-ng call may take (a long transcript is phonemised in well under one).
TIMEOUT_S = 20.0
#: espeak-ng's voice for a language code where its own name differs.
VOICE_ALIASES = {"no": "nb", "fil": "tl"}
#: Voice families not used, regional variants included (cmn-latn-pinyin, zh-yue): Debian's
#: espeak-ng (1.51) lacks the full Chinese dictionaries, and reads Han characters as pinyin
#: spelled with English letter names (Mandarin: :mod:`.mandarin`).
SKIPPED_VOICES = frozenset({"cmn", "yue", "hak", "zh"})


#: espeak-ng's mark of a switch to another language's voice inside its IPA.
SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")


def program() -> str | None:
    """The espeak-ng binary: ``A2X_ESPEAK`` if set, else ``espeak-ng`` on PATH (None: absent)."""
    named = os.environ.get("A2X_ESPEAK")
    if named:
        return named if Path(named).is_file() and os.access(named, os.X_OK) else None
    return shutil.which("espeak-ng")


@lru_cache(maxsize=4)
def _voices(binary: str) -> frozenset[str]:
    try:
        listing = subprocess.run([binary, "--voices"], capture_output=True, text=True,
                                 timeout=TIMEOUT_S, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("espeak-ng (%s) could not list its voices: %s", binary, exc)
        return frozenset()
    # "Pty Language Age/Gender VoiceName File Other Languages": the second column.
    return frozenset(line.split()[1].lower() for line in listing.splitlines()[1:]
                     if len(line.split()) > 1)  # fmt: skip


def voice(code: str) -> str | None:
    """espeak-ng's voice for language ``code`` (``es``, ``ja``, ``pt-br``), None without one
    (or without espeak-ng)."""
    binary = program()
    return None if binary is None else _voice(binary, code)


def _voice(binary: str, code: str) -> str | None:
    voices = {v for v in _voices(binary) if v.split("-")[0] not in SKIPPED_VOICES}
    name = VOICE_ALIASES.get(code, code).lower()
    if name in voices:
        return name
    base = name.split("-")[0]
    if base in voices:
        return base
    # Only regional voices (fr-fr, fr-be): the language's own region first (fr-fr, pt-pt).
    regional = sorted(v for v in voices if v.startswith(base + "-"))
    return f"{base}-{base}" if f"{base}-{base}" in regional else (regional[0] if regional else None)


@lru_cache(maxsize=1)
def _table() -> tuple[list[tuple[str, str]], frozenset[str]]:
    table = json.loads((_DATA / "ipa_to_arpabet.json").read_text(encoding="utf-8"))
    symbols = sorted(table["symbols"].items(), key=lambda item: -len(item[0]))
    return symbols, frozenset(table["ignore"])


def ipa_to_arpabet(ipa: str) -> str:
    """ARPAbet phones (space-separated, repeats merged) of espeak-ng's IPA for one word.

    Language-switch marks (``(en)``), stress, length, tones and diacritics carry no mouth
    shape and are dropped; a symbol the table lacks is skipped.
    """
    symbols, ignore = _table()
    text = re.sub(r"\([^)]*\)", "", unicodedata.normalize("NFD", ipa))
    text = "".join(c for c in text if not unicodedata.combining(c)
                   and unicodedata.category(c) != "Cf" and c not in ignore and not c.isspace())  # fmt: skip
    return greedy_phones(text, symbols)


def pronunciations(words: list[str], code: str) -> dict[str, str]:
    """Word → ARPAbet for each distinct word, by espeak-ng's voice for ``code``; {} when
    espeak-ng or its voice is absent or it fails (the caller falls back, and says so).

    The words go in one call, one clause each (``word,`` per line), so that espeak-ng prints
    one line per word; a word it reads as several (a number, an abbreviation) is one line too.
    """
    binary = program()
    name = None if binary is None else _voice(binary, code)
    distinct = list(dict.fromkeys(w for w in words if w.strip()))
    if name is None or not distinct:
        return {}
    text = "".join(f"{w.replace(',', ' ')},\n" for w in distinct)
    try:
        done = subprocess.run([binary, "-q", "--ipa", "-v", name], input=text, capture_output=True,
                              text=True, encoding="utf-8", timeout=TIMEOUT_S, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("espeak-ng failed on the %s transcript (%s); spelling it letter by letter",
                    code, exc)  # fmt: skip
        return {}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if len(lines) != len(distinct):
        log.warning("espeak-ng read the %s transcript's %d words as %d lines; spelling it letter "
                    "by letter", code, len(distinct), len(lines))  # fmt: skip
        return {}
    out = {}
    for word, line in zip(distinct, lines, strict=True):
        # A switch to another voice, "(en)...(ja)", is espeak-ng naming what it cannot read
        # (a Japanese kanji becomes English "Chinese letter"): such a word is left to the
        # fallback rather than given the phones of the name.
        if SWITCH.search(line):
            log.info("espeak-ng cannot read %r in %s; spelling it", word, code)
            continue
        pron = ipa_to_arpabet(line)
        if pron:
            out[word] = pron
    return out
