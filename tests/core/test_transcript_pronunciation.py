"""Transcripts in languages without rules of their own: Mandarin through pinyin, the rest through
the espeak-ng program, and the fallback (letter by letter) named in the result when neither is
there."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from a2x_core.audio.decode import decode_audio
from a2x_core.lipsync import espeak, mandarin
from a2x_core.lipsync import language as lg
from a2x_core.lipsync import phones as ph
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from tests.conftest import REPO, SHARED, run_cli

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (make espeak-ng)")  # fmt: skip
needs_pinyin = pytest.mark.skipif(not mandarin.available(),
                                  reason="pypinyin is not installed (a dependency of a2x)")  # fmt: skip


# --- the tables (no tool needed) ---------------------------------------------------------------


@pytest.mark.parametrize(("ipa", "arpabet"), [
    ("bwˈenos", "B W EY N OW S"),  # Spanish buenos: stress dropped
    ("mˈɔ̃", "M AO"),  # French mon: the nasal tilde carries no mouth shape
    ("kˌo̞nnitɕˈihä", "K OW N IY CH IY HH AA"),  # Japanese: tɕ before t, repeats merged
    ("(en)ɡwɑː5(cmn)", "G W AA"),  # language switches, length and tone digits dropped
    ("vudʁˈɛ", "V UW D HH EH"),  # labiodental stays labiodental; uvular r rounds no lips
    ("pˈero", "P EY D OW"),  # a trilled r is the tongue tip, not English R's rounding
    ("ʘa", "AA"),  # a click the table lacks is skipped
    ("", ""),
])  # fmt: skip
def test_ipa_maps_to_the_phone_nearest_in_mouth_shape(ipa, arpabet) -> None:
    assert espeak.ipa_to_arpabet(ipa) == arpabet


@pytest.mark.parametrize(("syllable", "arpabet"), [
    ("guang", "G W AA NG"), ("fang", "F AA NG"), ("bo", "B W AO"), ("ma", "M AA"),
    ("shi", "SH ER"), ("si", "S IH"), ("ji", "JH IY"),  # the three i's
    ("ju", "JH UW"), ("lv", "L UW"), ("yue", "Y W EH"), ("jun", "JH Y UW N"),  # ü, rounded
    ("er", "ER"), ("wo", "W AO"), ("you", "Y OW"), ("zhong", "JH UH NG"),
    ("xyz", ""),  # not a syllable: nothing rather than a guess
])  # fmt: skip
def test_pinyin_syllables_map_to_mouth_shapes(syllable, arpabet) -> None:
    assert mandarin.syllable_phones(syllable) == arpabet


# --- Mandarin ----------------------------------------------------------------------------------


@needs_pinyin
def test_han_characters_are_read_in_the_phrase_they_stand_in() -> None:
    # 行 is háng in 银行 (bank) and xíng in 行走 (walk): one word each, read in context.
    assert mandarin.pronunciations(ph.normalise_transcript("银行"))["行"] == "HH AA NG"
    assert mandarin.pronunciations(ph.normalise_transcript("行走"))["行"] == "SH IY NG"
    prons = lg.transcript_pronunciations(ph.normalise_transcript("明天 我们 飞"), "zh")
    assert prons["明@zh"].startswith("M") and prons["飞@zh"].startswith("F")
    assert lg.pronunciation_source("zh") == "zh pinyin (pypinyin)"


@needs_pinyin
def test_a_mandarin_transcript_puts_teeth_on_the_lip_for_its_f_syllables() -> None:
    """广州市房地产中介协会分析 on its real recording: 房 fáng and 分 fēn are aligned as /f/
    and the lower lip rolls under the teeth in each (before: one neutral syllable a character,
    no /f/ at all)."""
    path = SHARED / "data" / "speech_non_en" / "zh_aishell_BAC009S0724W0121.wav"
    if not path.is_file():
        pytest.skip("speech_non_en is absent")
    text = "广州市房地产中介协会分析"
    result = DefaultLipSyncModel().animate(
        [decode_audio(path)], InferenceOptions(fps=60, transcript=text, blinks=False))[0]  # fmt: skip
    assert result.parameters["language"] == "zh"
    assert result.parameters["phones"] == "zh pinyin (pypinyin)"
    arrays = result.arrays
    assert set(filter(None, arrays["phone_words"])) <= set(text)  # the transcript's own words
    fs = [k for k, label in enumerate(arrays["phone_labels"]) if label == "F"]
    assert [arrays["phone_words"][k] for k in fs] == ["房", "分"]
    times = np.arange(len(result.weights)) / 60.0
    roll = result.weights[:, ARKIT_52.index("mouthRollLower")]
    for k in fs:
        span = (times >= arrays["phone_start_s"][k] - 0.025) & (times <= arrays["phone_end_s"][k] + 0.025)
        assert roll[span].max() >= 0.3, arrays["phone_words"][k]


# --- espeak-ng ---------------------------------------------------------------------------------


@needs_espeak
@pytest.mark.parametrize(("code", "text", "expected"), [
    ("es", "mi mamá bebe vino", {"mi": "M", "mamá": "M", "bebe": "B", "vino": "B"}),  # v is /b/
    ("fr", "bonjour ma voisine", {"bonjour": "B", "ma": "M", "voisine": "V"}),
    ("ja", "みなさん", {"みなさん": "M"}),
    ("ko", "바다", {"바다": "P"}),  # Hangul, which the letters could not spell (initial ㅂ is [p])
    ("ar", "مرحبا", {"مرحبا": "M"}),
])  # fmt: skip
def test_espeak_pronounces_languages_without_rules_of_their_own(code, text, expected) -> None:
    prons = lg.transcript_pronunciations(text.split(), code)
    for word, first in expected.items():
        assert prons[f"{word}@{code}"].split()[0] == first, (word, prons)
    assert lg.pronunciation_source(code).startswith("espeak-ng's")


@needs_espeak
def test_words_espeak_can_only_name_fall_back_instead_of_speaking_the_name() -> None:
    """Debian's Japanese voice reads a kanji as English "Chinese letter": that word takes the
    fallback (a neutral syllable), never the phones of the name; the kana beside it are read."""
    prons = lg.transcript_pronunciations(ph.normalise_transcript("日本 します"), "ja")
    assert prons["日@ja"] == prons["本@ja"] == "AH"
    assert prons["します@ja"].startswith("SH IY M")
    assert not espeak.pronunciations(["日"], "ja")


@needs_espeak
def test_numbers_are_said_in_the_transcript_s_language() -> None:
    """"21" in French is vingt-et-un (a /v/), in German einundzwanzig (no /w/ of "twenty"):
    the digits stay one word for espeak-ng's voice, also beside German's own rules."""
    for code, text, first in (("fr", "il a 21 ans", "V"), ("de", "er ist 21 jahre alt", "AA")):
        words = ph.normalise_transcript(text, spell_numbers=not lg.reads_numbers(code))
        assert "21" in words and "twenty" not in words
        assert lg.transcript_pronunciations(words, code)[f"21@{code}"].split()[0] == first
    assert not lg.reads_numbers("zh")  # Mandarin transcripts write numbers in characters


def test_without_a_reader_numbers_are_spelled_as_before(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("A2X_ESPEAK", str(tmp_path / "absent"))
    assert not lg.reads_numbers("fr")
    assert ph.normalise_transcript("il a 21 ans", spell_numbers=not lg.reads_numbers("fr")) == [
        "il", "a", "twenty", "one", "ans"]  # fmt: skip


@needs_espeak
def test_espeak_finds_regional_voices_and_skips_its_chinese_ones() -> None:
    assert espeak.voice("fr") == "fr-fr"  # only fr-fr, fr-be, fr-ch exist
    assert espeak.voice("pt") == "pt"
    assert espeak.voice("no") == "nb"
    assert espeak.voice("zh") is None  # Debian's cmn reads Han as English letter names


def _fake_espeak(tmp_path, body: str):
    script = tmp_path / "espeak-ng"
    script.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_chinese_voices_are_skipped_with_their_regional_variants(monkeypatch, tmp_path) -> None:
    """Older espeak-ng lists zh-yue, newer cmn-latn-pinyin: neither reads Mandarin transcripts
    or their numbers (pinyin does)."""
    listing = _fake_espeak(tmp_path, 'printf "Pty Language\\n 5 es x y z\\n 5 zh-yue x y z\\n'
                                     ' 5 cmn-latn-pinyin x y z\\n"\n')  # fmt: skip
    monkeypatch.setenv("A2X_ESPEAK", str(listing))
    espeak._voices.cache_clear()
    try:
        assert espeak.voice("es") == "es"
        assert espeak.voice("zh") is None and not lg.reads_numbers("zh")
    finally:
        espeak._voices.cache_clear()


def test_without_espeak_a_transcript_is_spelled_and_the_result_says_how(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("A2X_ESPEAK", str(tmp_path / "absent"))
    assert espeak.program() is None and espeak.voice("es") is None
    source = lg.pronunciation_source("es")
    assert "letter by letter" in source and "espeak-ng" in source
    prons = lg.transcript_pronunciations(["mamá"], "es")
    assert prons["mamá@es"].split()[0] == "M"  # the transliteration still closes the lips


def test_a_failing_espeak_falls_back_to_the_letters(monkeypatch, tmp_path, caplog) -> None:
    """An espeak-ng that lists its voices but then fails (or prints the wrong number of
    lines) costs the pronunciations, never the animation."""
    failing = _fake_espeak(tmp_path, 'case "$1" in --voices) printf "Pty Language\\n 5 es x y z\\n";;'
                                     ' *) echo broken >&2; exit 3;; esac\n')  # fmt: skip
    monkeypatch.setenv("A2X_ESPEAK", str(failing))
    espeak._voices.cache_clear()
    assert espeak.voice("es") == "es"
    with caplog.at_level("WARNING", logger="a2x_core"):
        assert espeak.pronunciations(["mamá", "bebe"], "es") == {}
    assert "espeak-ng failed" in caplog.text
    assert lg.transcript_pronunciations(["mamá"], "es")["mamá@es"].split()[0] == "M"
    short = _fake_espeak(tmp_path, 'case "$1" in --voices) printf "Pty Language\\n 5 es x y z\\n";;'
                                   ' *) echo "mama";; esac\n')  # fmt: skip
    os.environ["A2X_ESPEAK"] = str(short)
    espeak._voices.cache_clear()
    with caplog.at_level("WARNING", logger="a2x_core"):
        assert espeak.pronunciations(["mamá", "bebe"], "es") == {}
    assert "as 1 lines" in caplog.text
    espeak._voices.cache_clear()


def test_a2x_info_lists_who_pronounces_each_language(tmp_path) -> None:
    """``a2x info default`` tells a user, per language, what will read a transcript on this
    machine — and what to install when it is only the letters."""
    listing = json.loads(run_cli("info", "default", "--json").stdout)["transcript_pronunciations"]
    assert set(listing) == {f"{code} ({name})" for code, name in lg.LANGUAGES.items()}
    assert listing["de (German)"] == "de pronunciation rules"
    assert listing["en (English)"].startswith("English dictionary")
    if shutil.which("espeak-ng"):
        assert listing["ja (Japanese)"] == "espeak-ng's ja voice"
    absent = dict(os.environ, A2X_ESPEAK=str(tmp_path / "absent"))
    proc = subprocess.run([sys.executable, "-m", "a2x_core", "info", "default", "--json"],
                          cwd=REPO, env=dict(absent, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    listing = json.loads(proc.stdout)["transcript_pronunciations"]
    assert "install espeak-ng" in listing["ja (Japanese)"]


def test_the_panel_note_names_the_reader_only_where_a_transcript_is_read_in_another_language(
    monkeypatch, tmp_path
) -> None:
    assert lg.transcript_note("auto", True) is None
    assert lg.transcript_note("en", True) is None
    assert lg.transcript_note("fr", False) is None  # no transcript: the phone loop, no reading
    assert lg.transcript_note("klingon", True) is None  # Bake refuses it by name
    assert lg.transcript_note(" DE ", True) == "Transcript read by de pronunciation rules"
    monkeypatch.setenv("A2X_ESPEAK", str(tmp_path / "absent"))
    assert "install espeak-ng" in lg.transcript_note("fr", True)


def test_language_suggestions_for_the_dcc_fields() -> None:
    everything = lg.language_suggestions()
    assert everything[0][0] == "auto" and len(everything) == len(lg.LANGUAGES) + 1
    assert lg.language_suggestions("GER") == [("de", "German")]  # by name, any case
    assert ("zh", "Mandarin Chinese") in lg.language_suggestions("zh")  # by code
    assert lg.language_suggestions("klingon") == []
