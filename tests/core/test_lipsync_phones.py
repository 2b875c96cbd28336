"""Transcripts, pronunciations and pocketsphinx alignment on real speech (no mocks)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from a2x_core.audio.decode import decode_audio
from a2x_core.lipsync import phones as ph

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
JFK = SHARED / "data" / "speech_en" / "whisper_jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@pytest.fixture(scope="module")
def jfk_pcm() -> bytes:
    if not JFK.exists():
        pytest.skip("../shared/data/speech_en is absent")
    return ph.to_pcm16(decode_audio(JFK).samples)


def test_transcripts_are_normalised_for_the_dictionary() -> None:
    words = ph.normalise_transcript("Ask NOT, what 42 “robots” can't do -- & 7%!")
    assert words == [
        "ask",
        "not",
        "what",
        "forty",
        "two",
        "robots",
        "can't",
        "do",
        "and",
        "seven",
        "percent",
    ]
    assert ph.number_words(1961) == ["one", "thousand", "nine", "hundred", "sixty", "one"]


def test_transcripts_in_any_script_keep_their_words() -> None:
    """Umlauts do not split German words; Cyrillic is kept; Han characters are one word each."""
    assert ph.normalise_transcript("Das schwarze Stück Papier, Größe!") == [
        "das", "schwarze", "stück", "papier", "größe"]  # fmt: skip
    assert ph.normalise_transcript("Бедняга ребят — на его месте") == [
        "бедняга", "ребят", "на", "его", "месте"]  # fmt: skip
    assert ph.normalise_transcript("广州市 房地产。") == ["广", "州", "市", "房", "地", "产"]
    # Their guessed pronunciations keep the lip shapes that matter: bilabials and rounding.
    assert ph.letter_to_sound("бедняга").split()[0] == "B"
    assert ph.letter_to_sound("papier").split()[0] == "P"
    assert "UW" in ph.letter_to_sound("stück").split()
    assert ph.letter_to_sound("广") != ""
    dec = ph.decoder("align")
    words, warnings = ph.prepare_words(["месте", "广"], dec)
    assert dec.lookup_word("месте").startswith("M") and dec.lookup_word("广")
    assert "месте" in warnings[0]


def test_unknown_words_get_a_pronunciation_and_a_warning() -> None:
    dec = ph.decoder("align")
    words, warnings = ph.prepare_words(["hello", "thereunder", "zorblax"], dec)
    assert words == ["hello", "thereunder", "zorblax"]
    assert dec.lookup_word("thereunder") == "DH EH R AH N D ER"  # there + under
    assert dec.lookup_word("zorblax").startswith("Z")
    assert len(warnings) == 1 and "zorblax" in warnings[0] and "hello" not in warnings[0]
    assert ph.letter_to_sound("phish") == "F IH SH"


def test_forced_alignment_follows_the_transcript(jfk_pcm: bytes) -> None:
    words = ph.normalise_transcript(JFK_TEXT)
    phones = ph.align_words(jfk_pcm, words)
    spoken = [
        w for i, w in enumerate(p.word for p in phones) if w and (i == 0 or phones[i - 1].word != w)
    ]
    assert spoken == words
    assert phones[0].start_s == 0 and phones[-1].end_s == pytest.approx(
        len(jfk_pcm) / 32000, abs=0.011
    )
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in pairwise(phones))
    # "my" starts with its bilabial near 1 s (word decoding without the text agrees: 0.98 s).
    my = next(p for p in phones if p.word == "my")
    assert my.label == "M" and 0.85 < my.start_s < 1.15


@pytest.mark.slow
def test_recognition_finds_phones_without_a_transcript(jfk_pcm: bytes) -> None:
    phones = ph.recognise(jfk_pcm)
    labels = {p.label for p in phones}
    assert {"M", "K", "AE"} <= labels
    fast = ph.recognise(jfk_pcm, align=False)
    assert len(fast) > 30 and fast[-1].end_s == pytest.approx(phones[-1].end_s, abs=0.02)
    again = ph.recognise(jfk_pcm)
    assert again == phones, "decoding must not depend on earlier utterances"
