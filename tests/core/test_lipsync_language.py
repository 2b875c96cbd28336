"""The default model in every language (issue 17 point 1): ``--language`` routing, the
language-independent phone path without a transcript, per-language pronunciations with one."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from a2x_core.audio.decode import decode_audio
from a2x_core.errors import ParameterError
from a2x_core.lipsync import language as lg
from a2x_core.lipsync import phones as ph
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from tests.conftest import SAMPLE, SAMPLE_TRANSCRIPT, run_cli

_C = {name: i for i, name in enumerate(ARKIT_52)}


@pytest.fixture(scope="module")
def model() -> DefaultLipSyncModel:
    return DefaultLipSyncModel()


# --- routing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transcript", "code"),
    [
        (SAMPLE_TRANSCRIPT, "en"),
        ("Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.", "de"),
        ("Der Lappen liegt auf dem Eisschrank", "de"),  # no umlaut: German words
        ("Das will sie am Mittwoch abgeben.", "de"),  # 4 of 6 words are in cmudict
        ("Ils sont dans le jardin avec elle", "fr"),
        ("бедняга ребят на его месте должен был быть я", "ru"),
        ("广州市房地产中介协会分析", "zh"),
        ("Ο καιρός είναι ωραίος σήμερα", "el"),
        ("zut alors quelle journée formidable", "und"),  # Latin, not English, not German
        ("Dzień dobry, jak się masz? To jest mój kot.", "pl"),
        ("Dobrý den, jak se máš? Já jsem doma.", "cs"),
        ("Hej, jag heter Anna och jag bor i Stockholm.", "sv"),
        ("Jeg hedder Anna og jeg bor i København.", "da"),
        ("Hei, minä olen Anna ja asun Helsingissä.", "fi"),
        ("Merhaba, ben Ayşe. Bugün hava çok güzel.", "tr"),
        ("Jó napot, hogy van? Én jól vagyok.", "hu"),
        ("Bună ziua, eu sunt Ana și locuiesc în București.", "ro"),
        ("Selamat pagi, saya tinggal di Jakarta dan saya suka makan.", "id"),
        ("Xin chào, tôi là Anna và tôi sống ở Hà Nội.", "vi"),
        ("Привіт, як справи? Я живу в Києві.", "uk"),  # Ukrainian letters, not Russian
        ("Szczęśliwego Łódź żółć", "pl"),  # no function word: Polish letters
        ("I think I saw him there, I was so happy.", "en"),  # "i" is English, not Swedish
        ("Łukasz said hello to everyone in the room.", "en"),  # a Polish name in English
    ],
)
def test_auto_reads_the_language_off_the_transcript(transcript, code) -> None:
    choice = lg.choose("auto", transcript)
    assert (choice.code, choice.decided_by) == (code, "transcript")
    assert choice.english == (code == "en")


def test_an_explicit_language_wins_and_auto_without_text_stays_english() -> None:
    assert lg.choose("de", SAMPLE_TRANSCRIPT) == lg.LanguageChoice(
        "de", False, "option", with_transcript=True
    )
    assert lg.choose("en", "бедняга ребят").english
    default = lg.choose("auto", None)
    assert (default.code, default.english, default.decided_by) == ("en", True, "default")
    assert lg.choose("auto", "  42 ... ").decided_by == "default"  # no letters, no evidence


@pytest.mark.parametrize("bad", ["xx", "german", "", "de-DE", 7, None])
def test_unknown_language_codes_are_refused_with_the_list(bad) -> None:
    with pytest.raises(ParameterError) as caught:
        InferenceOptions(language=bad)
    assert repr(bad) in str(caught.value)
    assert "auto" in caught.value.hint and "de, ru, zh" in caught.value.hint


def test_language_codes_are_case_insensitive() -> None:
    assert InferenceOptions(language=" DE ").language == "de"


def test_the_cli_refuses_an_unknown_language_with_exit_2(tmp_path) -> None:
    done = run_cli("animate", str(SAMPLE), "-o", str(tmp_path / "out.json"), "--language", "xx")
    assert done.returncode == 2, done.stderr
    assert "'xx'" in done.stderr and "ru" in done.stderr
    assert not (tmp_path / "out.json").exists()


def test_german_rules_keep_lips_where_the_spelling_puts_them() -> None:
    assert lg.pronounce("papier", "de").split()[:3] == ["P", "AA", "P"]
    assert lg.pronounce("schwarze", "de").startswith("SH V")
    assert lg.pronounce("stück", "de").split() == ["SH", "T", "UW", "K"]
    assert lg.pronounce("месте", "ru").split() == ["M", "EH", "S", "T", "EH"]
    assert lg.pronounce("anything", "fr") == ""  # no rules: the caller transliterates


# --- the model on real speech --------------------------------------------------------------


def _emodb(shared_data) -> dict[str, tuple[str, str]]:
    labels = shared_data / "emotional_speech" / "emodb" / "labels.csv"
    if not labels.is_file():
        pytest.skip("emodb is absent")
    with open(labels, newline="", encoding="utf-8") as handle:
        return {r["file"]: (str(labels.parent / r["file"]), r["transcript_de"])
                for r in csv.DictReader(handle)}  # fmt: skip


def test_every_shared_transcript_routes_to_its_language(shared_data) -> None:
    """The real transcripts: every EmoDB sentence is German, every speech_en one English
    (the function-word and letter tables for more languages must not pull them away)."""
    german = {text for _path, text in _emodb(shared_data).values()}
    with open(shared_data / "speech_en" / "transcripts.tsv", newline="", encoding="utf-8") as handle:
        english = [r["transcript"] for r in csv.DictReader(handle, delimiter="\t")]
    assert german and english
    assert {lg.choose("auto", t).code for t in german} == {"de"}
    assert {lg.choose("auto", t).code for t in english} == {"en"}


def _closed(weights: np.ndarray) -> np.ndarray:
    """Lips closed, as benchmarks/lipsync_eval.py's ``shapes`` defines it."""
    lips = weights[:, [_C[n] for n in ("mouthUpperUpLeft", "mouthUpperUpRight",
                                       "mouthLowerDownLeft", "mouthLowerDownRight")]]  # fmt: skip
    press = weights[:, [_C["mouthPressLeft"], _C["mouthPressRight"]]].mean(axis=1)
    return ((weights[:, _C["jawOpen"]] - weights[:, _C["mouthClose"]] <= 0.05)
            & (lips.mean(axis=1) <= 0.1) & (weights[:, _C["mouthFunnel"]] <= 0.2)
            & (press >= 0.2))  # fmt: skip


def test_german_audio_only_exports_no_invented_words(model, shared_data) -> None:
    path, _ = _emodb(shared_data)["09a05Tb.wav"]  # "Das schwarze Stück Papier ..."
    audio = decode_audio(path)
    result = model.animate([audio], InferenceOptions(fps=30, language="de", blinks=False))[0]
    assert not any(result.arrays["phone_words"]), result.arrays["phone_words"]
    assert result.parameters["language"] == "de"
    assert result.parameters["phones"] == "language-independent phone loop"
    assert any("language de (German), as --language asked" in w for w in result.warnings)
    labels = set(result.arrays["phone_labels"])
    assert labels - {ph.SILENCE}, "no phones at all"


def test_a_german_transcript_is_aligned_with_german_pronunciations(model, shared_data) -> None:
    """auto + a German transcript: German rules (no English-only guess warning), the
    transcript's own words exported, and the lips close on the spoken bilabials."""
    path, text = _emodb(shared_data)["03a01Nc.wav"]  # "Der Lappen liegt auf dem Eisschrank."
    audio = decode_audio(path)
    result = model.animate([audio], InferenceOptions(fps=60, transcript=text, blinks=False))[0]
    assert result.parameters["language"] == "de"
    assert result.parameters["language_decided_by"] == "transcript"
    assert not any("English-only" in w or "guessed" in w for w in result.warnings)
    words = [w for w in result.arrays["phone_words"] if w]
    assert set(words) <= set(ph.normalise_transcript(text)) and "lappen" in words
    closed = _closed(result.weights)
    times = np.arange(len(closed)) / 60.0
    arrays = result.arrays
    bilabials = [k for k, label in enumerate(arrays["phone_labels"]) if label in ("P", "B", "M")]
    assert len(bilabials) == 2  # lapPen, deM
    for k in bilabials:
        span = (times >= arrays["phone_start_s"][k] - 0.025) & (
            times <= arrays["phone_end_s"][k] + 0.025
        )
        assert closed[span].any(), (arrays["phone_words"][k], arrays["phone_labels"][k])


def test_russian_audio_only_closes_the_lips_somewhere_and_invents_no_words(model) -> None:
    from tests.conftest import SHARED

    path = SHARED / "data" / "speech_non_en" / "ru_deepspeech_smoke_test.wav"
    if not path.is_file():
        pytest.skip("speech_non_en is absent")
    result = model.animate([decode_audio(path)], InferenceOptions(language="ru", blinks=False))[0]
    assert not any(result.arrays["phone_words"])
    assert _closed(result.weights).any()  # бедняга, был, быть: there are bilabials to close


def test_english_output_is_unchanged_by_auto(model) -> None:
    """auto routes English transcripts and transcript-less audio to the English path, and
    the result is the same as with language="en"."""
    audio = decode_audio(SAMPLE, end_s=3.0)
    for transcript in (None, "And so my fellow Americans"):
        auto = model.animate([audio], InferenceOptions(transcript=transcript))[0]
        english = model.animate([audio], InferenceOptions(transcript=transcript,
                                                          language="en"))[0]  # fmt: skip
        np.testing.assert_array_equal(auto.weights, english.weights)
        assert auto.parameters["language"] == "en" and not auto.warnings


def test_a_stream_takes_the_route_animate_takes_without_a_transcript(model) -> None:
    """``language`` routes a stream as it routes ``animate`` without a transcript: English
    words for ``auto`` and ``en``, the language-independent phone loop for any other code."""
    for language, english in (("auto", True), ("en", True), ("de", False), ("zh", False)):
        stream = model.open_stream(InferenceOptions(language=language))
        offline = lg.choose(language, None)
        assert (stream.language.english, stream.language.code) == (english, offline.code)
        assert stream.language.phones() == offline.phones()
        stream.close()


def test_the_phone_loop_s_vowels_open_where_the_spectrum_says_the_jaw_is_open(shared_data) -> None:
    """Language-independent path: a vowel the loop heard as close or mid becomes AA exactly
    when loudness x F1 openness over it reaches ``OPEN_VOWEL`` (tuned on English clips,
    docs/quality.md); consonants, rounded and already open vowels keep their labels."""
    from a2x_core.lipsync import acoustic as ac
    from a2x_core.lipsync import expressions as ex

    path, _ = _emodb(shared_data)["03a04Ad.wav"]  # "Heute abend könnte ich es ihm sagen."
    samples = decode_audio(path).samples
    loop = ph.merge_silences(ph.phone_loop(ph.to_pcm16(samples)))
    level_db = ex.loudness_db(samples)
    out = ac.open_vowels(loop, samples, level_db)
    level = ex.normalised_loudness(level_db)
    open_track = level * ex.openness(samples, level)
    relabelled = 0
    for before, after in zip(loop, out, strict=True):
        assert (before.start_s, before.end_s) == (after.start_s, after.end_s)
        lo = int(before.start_s / ex.ANALYSIS_S)
        hi = max(lo + 1, int(before.end_s / ex.ANALYSIS_S))
        opens = before.label in ac._OPENABLE and open_track[lo:hi].mean() >= ac.OPEN_VOWEL
        assert after.label == ("AA" if opens else before.label), (before, after)
        relabelled += opens
    assert relabelled, "an angry German sentence has open vowels the loop heard as mid"
