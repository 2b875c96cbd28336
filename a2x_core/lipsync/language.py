"""The spoken language: ``--language`` codes, ``auto`` detection, and pronunciations of
transcript words in languages other than English.

The default model's recogniser (pocketsphinx en-US) knows English words only; for any other
language it invents English words and so invents and drops lip closures. So the model routes
by language: English goes through word recognition / cmudict alignment as before; any other
language goes through the language-independent phone path (:mod:`.acoustic`) without a
transcript, and with one through the transcript's own pronunciations
(:func:`pronunciation_source`): per-language grapheme-to-phone rules
(``data/grapheme_to_phone.json``, German and Russian), pinyin for Mandarin (:mod:`.mandarin`),
espeak-ng for the rest where it is installed (:mod:`.espeak`), else a generic transliteration.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ParameterError

if TYPE_CHECKING:
    from .phones import Phone

_DATA = Path(__file__).with_name("data")

AUTO = "auto"
ENGLISH = "en"
#: ISO 639-1 codes ``--language`` accepts (with ``auto``). A transcript is pronounced as
#: :func:`pronunciation_source` says; without a transcript every non-English language takes
#: the same language-independent path.
LANGUAGES: dict[str, str] = {
    "en": "English", "de": "German", "ru": "Russian", "zh": "Mandarin Chinese",
    "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese", "nl": "Dutch",
    "pl": "Polish", "uk": "Ukrainian", "cs": "Czech", "sv": "Swedish", "da": "Danish",
    "no": "Norwegian", "fi": "Finnish", "tr": "Turkish", "el": "Greek", "hu": "Hungarian",
    "ro": "Romanian", "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "he": "Hebrew",
    "hi": "Hindi", "id": "Indonesian", "vi": "Vietnamese", "th": "Thai",
}  # fmt: skip
#: A Latin-script transcript with at most this share of its words in the English dictionary
#: counts as another language.
ENGLISH_WORD_SHARE = 0.5
#: Frequent short words per Latin-script language: a transcript with more of another
#: language's than of English's is in that language (cmudict alone cannot tell: it lists
#: "die", "das", "will", "sie", "am", "heute"..., so half of the EmoDB sentences would pass as
#: English). Words in the English list never count for another language.
_FUNCTION_WORDS = {
    "en": "the a an and of to is are you that it he she we they this these with for not have "
          "has had be been my your his her our their what which who there from by at on or "
          "but if do does can could would should i me was were",
    "de": "der die das und ist nicht ich sie wir er es ein eine einen dem den des mit sich "
          "auf zu von wird werden sind bin hat haben auch noch nach wie wo was für im ins vom "
          "zum zur aber oder wenn dann immer sein kann will heute ihm ihr jetzt schon nur über "
          "unter bei",
    "fr": "le la les et est un une des du de je tu il elle nous vous ils pas que qui dans pour "
          "sur avec ce cette au aux mais ou",
    "es": "el la los las y es un una de del que en por con para no se su lo como pero muy está",
    "it": "il lo la gli le e è un una di del che non per con si sono ma come",
    "nl": "de het een en is niet ik je hij zij wij van dat die op te met voor zijn maar ook",
    "pt": "o a os as e é um uma de do da que não em para com se por mas",
    "pl": "w na z że się nie jest jak co ale po tak od za dla jestem być mnie jego jej",
    "cs": "v na se že je s z jak co ale po tak od za pro jsem být mě jeho její není",
    "sv": "och att det som en på är av för med till den har de inte om ett jag du vi hon",
    "da": "og at det som en på er af for med til den har de ikke om et jeg du vi hun",
    "no": "og at det som en på er av for med til den har de ikke om et jeg du vi hun",
    "fi": "ja ei se että hän minä sinä mutta kun niin myös tämä joka ovat oli olen",
    "tr": "ve bir bu da için ile ne çok daha gibi ama ben sen biz var yok değil",
    "hu": "az és hogy nem egy van volt de meg már csak mint vagy ez azt én te ő",
    "ro": "și în la cu pe nu că este un să din care ce mai sunt eu tu el ea",
    "id": "dan yang di ini itu dengan untuk tidak dari dalam akan ada saya kamu kami mereka juga",
    "vi": "và là của có không được cho một những các người này tôi bạn anh em",
}  # fmt: skip
#: Letters only one of the languages writes (Latin script: after the function words and the
#: English dictionary share; Cyrillic: Ukrainian's beside Russian's): the language with most.
_LANGUAGE_LETTERS = {
    "de": "äöüß", "pl": "ąęłńśźż", "cs": "řěů", "hu": "őű", "tr": "ığ", "ro": "ășț",
    "vi": "ơưđạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ", "fr": "œ",
    "uk": "іїєґ",
}  # fmt: skip
#: Unicode script (first word of a letter's name) → the language code it implies.
_SCRIPTS = {"CYRILLIC": "ru", "CJK": "zh", "GREEK": "el", "HIRAGANA": "ja", "KATAKANA": "ja",
            "HANGUL": "ko", "ARABIC": "ar", "HEBREW": "he", "DEVANAGARI": "hi",
            "THAI": "th"}  # fmt: skip


@dataclass(frozen=True)
class LanguageChoice:
    """The language the model used and why: ``code`` (ISO 639-1, or ``"und"`` for "not
    English, not identified"), ``english`` (route through the English recogniser), and
    ``decided_by`` (``"option"``, ``"transcript"``, ``"default"``)."""

    code: str
    english: bool
    decided_by: str
    detail: str = ""
    with_transcript: bool = False

    def as_parameters(self) -> dict[str, str]:
        """The result's ``parameters`` entries that record the choice."""
        return {"language": self.code, "language_decided_by": self.decided_by,
                "phones": self.phones()}  # fmt: skip

    def phones(self) -> str:
        """Where the phones come from."""
        if self.with_transcript:
            return "English dictionary" if self.english else pronunciation_source(self.code)
        return "English word recognition" if self.english else "language-independent phone loop"

    def describe(self) -> str:
        """One line for the result's warnings / metadata."""
        name = LANGUAGES.get(self.code, "not English")
        how = {"option": "as --language asked", "transcript": "detected from the transcript",
               "default": "by default"}[self.decided_by]  # fmt: skip
        extra = f" ({self.detail})" if self.detail else ""
        return f"language {self.code} ({name}), {how}{extra}: phones from {self.phones()}"


def language_suggestions(typed: str = "") -> list[tuple[str, str]]:
    """``(code, name)`` for a DCC's language field: ``auto`` and every code whose code or name
    contains what was typed (case-insensitive), codes first in the table's order."""
    needle = typed.strip().lower()
    choices = [(AUTO, "from the transcript; English without one"), *LANGUAGES.items()]
    return [(code, name) for code, name in choices
            if not needle or needle in code or needle in name.lower()]  # fmt: skip


def check_language(code: object) -> str:
    """``code`` lower-cased when it is ``auto`` or one of :data:`LANGUAGES`.

    Raises:
        ParameterError: anything else, naming the accepted codes.
    """
    if isinstance(code, str) and (code.strip().lower() == AUTO
                                  or code.strip().lower() in LANGUAGES):  # fmt: skip
        return code.strip().lower()
    raise ParameterError(
        f"language {code!r} is not a known language code",
        hint=f"use auto or one of: {', '.join(LANGUAGES)} (ISO 639-1)",
    )


def _script(char: str) -> str:
    try:
        return unicodedata.name(char).split(" ", 1)[0]
    except ValueError:
        return ""


def transcript_language(text: str, in_dictionary: Callable[[str], bool]) -> tuple[str, str]:
    """``(code, reason)`` for a transcript: its script when not Latin; else the language of
    most of its function words when that is not English; else English when more than
    :data:`ENGLISH_WORD_SHARE` of its words are in the English dictionary (``in_dictionary``);
    else German when it has German letters, else ``"und"``."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return ENGLISH, "no letters"
    scripts: dict[str, int] = {}
    for c in letters:
        scripts[_script(c)] = scripts.get(_script(c), 0) + 1
    main = max(scripts, key=lambda s: scripts[s])
    if main == "CYRILLIC" and _lettered(text) == "uk":
        return "uk", "cyrillic script with Ukrainian letters"
    if main != "LATIN":
        return _SCRIPTS.get(main, "und"), f"{main.lower()} script"
    words = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text.lower())
    english_function = _function_words()["en"]
    counts = {code: sum(w in vocab for w in words) for code, vocab in _function_words().items()}
    rival = max((c for c in counts if c != ENGLISH), key=lambda c: counts[c])
    if counts[rival] > counts[ENGLISH]:
        found = sorted({w for w in words if w in _function_words()[rival]})
        return rival, f"{', '.join(found[:4])}: {LANGUAGES[rival]} words"
    english = sum(1 for w in words if w.isascii() and (w in english_function or in_dictionary(w)))
    share = english / max(len(words), 1)
    if share > ENGLISH_WORD_SHARE:
        return ENGLISH, f"{share:.0%} of its words in the English dictionary"
    reason = f"only {share:.0%} of its words in the English dictionary"
    lettered = _lettered(text)
    if lettered not in (None, "uk"):
        return lettered, f"{reason}; {LANGUAGES[lettered]} letters"
    return "und", reason


def _lettered(text: str) -> str | None:
    """The language whose own letters (:data:`_LANGUAGE_LETTERS`) ``text`` has most of."""
    lower = text.lower()
    counts = {code: sum(lower.count(c) for c in letters) for code, letters in _LANGUAGE_LETTERS.items()}
    best = max(counts, key=lambda code: counts[code])
    return best if counts[best] else None


@lru_cache(maxsize=1)
def _function_words() -> dict[str, frozenset[str]]:
    english = frozenset(_FUNCTION_WORDS[ENGLISH].split())
    return {code: frozenset(text.split()) - (frozenset() if code == ENGLISH else english)
            for code, text in _FUNCTION_WORDS.items()}  # fmt: skip


@lru_cache(maxsize=1)
def _rules() -> dict[str, list[tuple[str, str, bool, bool]]]:
    table = json.loads((_DATA / "grapheme_to_phone.json").read_text(encoding="utf-8"))
    out = {}
    for code, rules in table["languages"].items():
        parsed = [(g.strip("^$"), p, g.startswith("^"), g.endswith("$")) for g, p in rules.items()]
        out[code] = sorted(parsed, key=lambda r: -len(r[0]))
    return out


def has_rules(code: str) -> bool:
    """Whether ``code`` has its own grapheme-to-phone rules."""
    return code in _rules()


def pronounce(word: str, code: str) -> str:
    """ARPAbet pronunciation of a lower-case transcript ``word`` in language ``code`` (its
    rules; "" when the language has none: the caller uses the generic transliteration)."""
    from .phones import merge_repeats

    rules = _rules().get(code)
    if rules is None:
        return ""
    phones: list[str] = []
    i = 0
    while i < len(word):
        for graph, sound, at_start, at_end in rules:
            if ((at_start and i != 0) or (at_end and i + len(graph) != len(word))
                    or not word.startswith(graph, i)):  # fmt: skip
                continue
            phones += sound.split()
            i += len(graph)
            break
        else:
            i += 1  # a letter without a rule (punctuation left in, a foreign letter)
    return merge_repeats(phones)


@lru_cache(maxsize=16)  # one animation asks up to three times (route, fallback, metadata)
def choose(language: str, transcript: str | None) -> LanguageChoice:
    """The language to animate ``transcript`` (or the audio alone) in, for ``--language``.

    ``auto`` without a transcript stays English: neither measure tried (the word decoder's
    path score per frame against the phone loop's, and the frame agreement of their phones)
    separated the German/Russian/Mandarin clips from the English ones (docs/quality.md), so
    the audio's language is not guessed; ``--language`` picks the language-independent path.
    """
    has_text = transcript is not None and any(c.isalpha() for c in transcript)
    if language != AUTO:
        return LanguageChoice(language, language == ENGLISH, "option", with_transcript=has_text)
    if transcript is not None and has_text:
        from .phones import in_dictionary, normalise_transcript

        def english_word(word: str) -> bool:
            return all(in_dictionary(w) for w in normalise_transcript(word))

        code, reason = transcript_language(transcript, english_word)
        return LanguageChoice(code, code == ENGLISH, "transcript", reason, with_transcript=True)
    return LanguageChoice(ENGLISH, True, "default",
                          "no transcript: the audio's language is not detected; "
                          "pass --language for other languages")  # fmt: skip


#: Transcript words of another language enter pocketsphinx's (English) dictionary under this
#: separator and their language code (``die@de``), so that they never take or shadow the
#: English word's pronunciation.
KEY = "@"


def keyed_words(words: list[str], code: str) -> list[str]:
    """``words`` as the dictionary keys of language ``code`` (see :data:`KEY`)."""
    return [f"{w}{KEY}{code}" for w in words]


def pronunciation_source(code: str) -> str:
    """What pronounces a transcript in language ``code``: its own rules (German, Russian),
    pinyin for Mandarin, espeak-ng's voice for the language, else the letters themselves."""
    from . import espeak, mandarin

    if has_rules(code):
        return f"{code} pronunciation rules"
    if code == "zh":
        if mandarin.available():
            return "zh pinyin (pypinyin)"
        return "one neutral syllable per Han character (pip install pypinyin reads them)"
    voice = espeak.voice(code)
    if voice is not None:
        return f"espeak-ng's {voice} voice"
    return f"{code} spelled letter by letter (install espeak-ng to pronounce it)"


def reads_numbers(code: str) -> bool:
    """Whether a transcript's digits can be said in language ``code`` (espeak-ng's voice;
    none for Mandarin); otherwise they are spelled as English words, as before."""
    from . import espeak

    return espeak.voice(code) is not None


def transcript_note(language: str, has_transcript: bool) -> str | None:
    """One line for a DCC panel under its Language field: what reads the transcript in the
    language chosen (None for auto, English, no transcript or a code that is not a language)."""
    code = language.strip().lower()
    if not has_transcript or code in (AUTO, ENGLISH, "") or code not in LANGUAGES:
        return None
    return f"Transcript read by {pronunciation_source(code)}"


def transcript_pronunciations(words: list[str], code: str) -> dict[str, str]:
    """Keyed word → ARPAbet for every distinct word (:func:`pronunciation_source`): the
    language's rules, Mandarin's pinyin or espeak-ng's voice, and for any word they leave the
    generic transliteration and letter-to-sound rules (any script)."""
    from . import espeak, mandarin
    from .phones import letter_to_sound

    if code == "zh":
        spoken = mandarin.pronunciations(words)
    elif has_rules(code):  # the rules read letters; digits are said by espeak-ng's voice
        spoken = espeak.pronunciations([w for w in words if w.isdecimal()], code)
    else:
        spoken = espeak.pronunciations(words, code)
    return {
        key: spoken.get(word) or pronounce(word, code) or letter_to_sound(word)
        for word, key in zip(words, keyed_words(words, code), strict=True)
    }


def unkeyed(phones: list[Phone]) -> list[Phone]:
    """Phones whose words carry the language key, with the transcript's own words back."""
    return [replace(p, word=p.word.split(KEY, 1)[0]) if KEY in p.word else p for p in phones]
