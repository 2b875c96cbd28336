"""Quality of the default lip-sync model: per-phone-class hit rates and jawOpen correlation.

Usage::

    .venv/bin/python benchmarks/lipsync_eval.py [--data ../shared/data] [--fps 60] [--json OUT]
        [--only CONFIG ...] [--misses]

1. ``speech_en`` (exact transcripts in ``transcripts.tsv``; ``.raw`` duplicates skipped): the
   reference phones are pocketsphinx's forced alignment of the exact transcript. Each
   reference phone of a class is a hit when the animation shows the class's shape within the
   phone's span widened by ``TOLERANCE_S`` on both sides (definitions in ``HITS`` below and in
   docs/quality.md). False-positive rates check the opposite shape at the centre of phones
   where it must not appear, so that a constant pose cannot score.
2. ``arkit_pairs/nn_training_mediapipe``: Pearson correlation of jawOpen at 30 fps against the
   MediaPipe-tracked curve, at zero lag and at the best lag within +-10 frames.

3. The non-English clips (``emotional_speech/emodb``: 14 German, ``speech_non_en``: Russian,
   Mandarin): per-class hits against the transcript's phones force-aligned (see
   ``non_english_reference``), closures where none is spoken, for today's English routing
   ("before") and the language routing, audio only and with the transcript
   (``--clips non-english`` runs only these), plus the audio-only path on the English clips,
   the tuning set that its settings are chosen on (``TUNING_ROW``); ``--coverage`` adds how
   many of the non-English bilabials each pocketsphinx decoding hears (``decoder_coverage``).

Every configuration runs on the same data in the same run: transcript (forced alignment),
recognised (no transcript), streaming (``open_stream``, 20 ms pushes, no transcript; its
per-push compute time is reported too), fast, an amplitude-only baseline whose jaw follows
loudness, and Rhubarb Lip Sync without and with the dialog text (``rhubarb_baseline.py``;
skipped when its binary is absent: ``make rhubarb``). ``--only`` picks some of them.
``--misses`` lists the /p b m/ and /f v/ that the streaming and recognised rows score
differently, each with the stream's phones when its frame went out and later (see
:func:`stream_misses`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from a2x_core.audio.decode import Audio, decode_audio
from a2x_core.lipsync import expressions as ex
from a2x_core.lipsync import language as lg
from a2x_core.lipsync import phones as ph
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from a2x_core.timing import SAMPLE_RATE, frame_targets, num_frames_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rhubarb_baseline  # noqa: E402 (a sibling script, not a package)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: A shape counts if it appears within the phone's span widened by this on each side.
TOLERANCE_S = 0.025
#: Neighbourhood for the jaw-peak test: the phone's span widened by this on each side.
NEIGHBOURHOOD_S = 0.15
MAX_LAG = 10

CLASSES = {
    "bilabial closure": ("P", "B", "M"),
    "open-vowel jaw peak": ("AA", "AE", "AH", "AO", "AW", "AY"),
    "rounding": ("UW", "OW", "W"),
    "labiodental": ("F", "V"),
    "dental tongue": ("TH", "DH"),
}
#: False-positive checks: (name, phone set, shape test) evaluated at the phone's centre frame.
FALSE_POSITIVES = {
    "closure in open vowels": (CLASSES["open-vowel jaw peak"], "closed"),
    "rounding in spread vowels": (("IY", "IH", "EY", "EH", "AE"), "rounded"),
    "lip-to-teeth in open vowels": (CLASSES["open-vowel jaw peak"], "labiodental"),
}

_C = {name: i for i, name in enumerate(ARKIT_52)}


def _mean(w: np.ndarray, *names: str) -> np.ndarray:
    return w[:, [_C[n] for n in names]].mean(axis=1)


def shapes(w: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame booleans for the shapes the classes test (the exact definitions)."""
    jaw = w[:, _C["jawOpen"]]
    lip_open = _mean(
        w, "mouthUpperUpLeft", "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight"
    )
    return {
        # Lips meet: jaw opening cancelled by mouthClose, lips not pulled apart or funnelled,
        # and pressed together (an active closure, not just a mouth at rest).
        "closed": (jaw - w[:, _C["mouthClose"]] <= 0.05)
        & (lip_open <= 0.1)
        & (w[:, _C["mouthFunnel"]] <= 0.2)
        & (_mean(w, "mouthPressLeft", "mouthPressRight") >= 0.2),
        "rounded": np.maximum(w[:, _C["mouthFunnel"]], w[:, _C["mouthPucker"]]) >= 0.25,
        # Lower lip rolled in under the upper teeth with the jaw nearly closed.
        "labiodental": (w[:, _C["mouthRollLower"]] >= 0.3) & (jaw <= 0.2),
        "tongue": w[:, _C["tongueOut"]] >= 0.3,
    }


def _span(times: np.ndarray, start: float, end: float) -> slice:
    return slice(int(np.searchsorted(times, start)), int(np.searchsorted(times, end, side="right")))


def class_hits(
    w: np.ndarray, times: np.ndarray, reference: list[ph.Phone]
) -> dict[str, list[bool]]:
    """Hit (True/False) per reference phone of each class, and per false-positive check."""
    shape = shapes(w)
    jaw = w[:, _C["jawOpen"]]
    out: dict[str, list[bool]] = {name: [] for name in [*CLASSES, *FALSE_POSITIVES]}
    test = {"bilabial closure": "closed", "rounding": "rounded", "labiodental": "labiodental",
            "dental tongue": "tongue"}  # fmt: skip
    for phone in reference:
        window = _span(times, phone.start_s - TOLERANCE_S, phone.end_s + TOLERANCE_S)
        for name, labels in CLASSES.items():
            if phone.label not in labels:
                continue
            if name == "open-vowel jaw peak":
                # Peak jawOpen in the (widened) vowel >= 0.15 and >= 0.08 above the lowest
                # jawOpen within 150 ms around the vowel.
                around = _span(
                    times, phone.start_s - NEIGHBOURHOOD_S, phone.end_s + NEIGHBOURHOOD_S
                )
                peak = float(jaw[window].max(initial=0.0))
                floor = float(jaw[around].min(initial=0.0))
                out[name].append(peak >= 0.15 and peak - floor >= 0.08)
            else:
                out[name].append(bool(shape[test[name]][window].any()))
        centre = int(np.argmin(np.abs(times - 0.5 * (phone.start_s + phone.end_s))))
        for name, (labels, shape_name) in FALSE_POSITIVES.items():
            if phone.label in labels:
                out[name].append(bool(shape[shape_name][centre]))
    return out


def baseline_weights(audio: Audio, fps: Fraction) -> np.ndarray:
    """Amplitude-only baseline: jawOpen = 0.6 x normalised loudness, everything else at rest."""
    frames = num_frames_for(len(audio.samples), fps)
    times = frame_targets(frames, fps) / SAMPLE_RATE
    w = np.zeros((frames, len(ARKIT_52)), np.float32)
    w[:, _C["jawOpen"]] = 0.6 * ex.at_times(
        ex.normalised_loudness(ex.loudness_db(audio.samples)), times
    )
    return w


#: Rhubarb's configurations (present when its binary is found) and whether they take the text.
RHUBARB_CONFIGS = {"rhubarb": False, "rhubarb + dialog": True}
#: Configurations that need the transcript (left out where a clip has none).
NEEDS_TRANSCRIPT = ("transcript", "rhubarb + dialog")


def _configs(
    model: DefaultLipSyncModel, rhubarb: Path | None = None
) -> dict[str, Callable[[Audio, Fraction, str | None], np.ndarray]]:
    def run(**kw: object) -> Callable[[Audio, Fraction, str | None], np.ndarray]:
        def animate(audio: Audio, fps: Fraction, transcript: str | None) -> np.ndarray:
            opts = InferenceOptions(fps=fps, blinks=False, **kw)  # type: ignore[arg-type]
            return model.animate([audio], opts)[0].weights

        return animate

    def with_transcript(audio: Audio, fps: Fraction, transcript: str | None) -> np.ndarray:
        opts = InferenceOptions(fps=fps, blinks=False, transcript=transcript)
        return model.animate([audio], opts)[0].weights

    def streamed(audio: Audio, fps: Fraction, transcript: str | None) -> np.ndarray:
        opts = InferenceOptions(fps=fps, blinks=False)
        return stream_weights(model, audio, opts, PUSH_TIMES_MS, STREAM_TRACE)

    def by_rhubarb(dialog: bool) -> Callable[[Audio, Fraction, str | None], np.ndarray]:
        def animate(audio: Audio, fps: Fraction, transcript: str | None) -> np.ndarray:
            assert rhubarb is not None
            text = transcript if dialog else None
            return rhubarb_baseline.rhubarb_weights(rhubarb, audio, fps, text)

        return animate

    configs = {
        "transcript": with_transcript,
        "recognised": run(),
        "streaming": streamed,
        "fast": run(fast=True),
        "loudness baseline": lambda audio, fps, transcript: baseline_weights(audio, fps),
    }
    if rhubarb is not None:
        configs |= {name: by_rhubarb(dialog) for name, dialog in RHUBARB_CONFIGS.items()}
    return configs


#: The streaming configuration pushes real-time-sized blocks of this many samples (20 ms).
PUSH_SAMPLES = 320
#: Compute time of every streaming push (milliseconds), for the p50/p99 in the report.
PUSH_TIMES_MS: list[float] = []
#: ``--misses``: the streaming configuration's ``DefaultStream.trace`` of the current clip.
STREAM_TRACE: list | None = None


def stream_weights(
    model: DefaultLipSyncModel, audio: Audio, options: InferenceOptions, times_ms: list[float],
    trace: list | None = None,
) -> np.ndarray:
    """Weights of the clip pushed through ``model.open_stream`` in 20 ms blocks, then closed;
    the compute time of every push (not the close) is appended to ``times_ms``; ``trace``: a
    list to receive the stream's trace (the phones every frame was computed from)."""
    stream = model.open_stream(options)
    stream.trace = trace
    frames = []
    for start in range(0, len(audio.samples), PUSH_SAMPLES):
        began = time.perf_counter()
        frames += stream.push(audio.samples[start : start + PUSH_SAMPLES])
        times_ms.append(1e3 * (time.perf_counter() - began))
    frames += stream.close()
    return np.stack([f.weights for f in frames]) if frames else np.zeros((0, len(ARKIT_52)))


def reference_phones(audio: Audio, transcript: str) -> list[ph.Phone]:
    """The reference: forced alignment of the exact transcript."""
    words, _ = ph.prepare_words(ph.normalise_transcript(transcript), ph.decoder("align"))
    return ph.align_words(ph.to_pcm16(audio.samples), words)


# --- non-English clips (issue 17 point 1) --------------------------------------------------

#: The EmoDB sentences by text code (EmoDB documentation; ``emodb/labels.csv`` repeats those
#: of its 14 clips).
EMODB_SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
#: The Mandarin clip's reference, written by hand: the pinyin of 广州市房地产中介协会分析
#: (guang zhou shi fang di chan zhong jie xie hui fen xi), one syllable per entry, in the
#: ARPAbet phones nearest in mouth shape. The model itself never sees this (its Han fallback
#: is one neutral syllable per character).
MANDARIN_REFERENCE = {
    "zh_aishell_BAC009S0724W0121.wav": [
        "G W AA NG", "JH OW", "SH ER", "F AA NG", "D IY", "CH AA N", "JH UH NG", "JH Y EH",
        "SH Y EH", "HH W EY", "F AH N", "SH IY",
    ],
}
NON_EN_CLASSES = {
    "bilabial closure": CLASSES["bilabial closure"],
    "labiodental": CLASSES["labiodental"],
    "rounding": ("UW", "UH", "OW", "W"),
    "open-vowel jaw peak": CLASSES["open-vowel jaw peak"],
}


def non_english_clips(data: Path) -> list[tuple[Path, str, str]]:
    """``(audio, transcript, language code)`` of the German, Russian and Mandarin clips."""
    clips = []
    emodb = data / "emotional_speech" / "emodb"
    if (emodb / "labels.csv").is_file():
        with open(emodb / "labels.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                clips.append((emodb / row["file"], EMODB_SENTENCES[row["text_code"]], "de"))
    other = data / "speech_non_en" / "transcripts.tsv"
    if other.is_file():
        with open(other, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                code = "zh" if row["file"].startswith("zh_") else "ru"
                clips.append((other.parent / row["file"], row["transcript"], code))
    return clips


_REFERENCE_DECODER: list[object] = []


def non_english_reference(audio: Audio, transcript: str, code: str) -> list[ph.Phone]:
    """The reference phones: the transcript's phones (the language's grapheme rules in
    ``lipsync/data/grapheme_to_phone.json``; the Mandarin clip's hand-written pinyin) forced
    onto the audio by pocketsphinx's English acoustic model, with a wider beam than the
    model's aligner (fast emotional German needs it). Never the model's audio-only path."""
    from pocketsphinx import Decoder

    if not _REFERENCE_DECODER:
        _REFERENCE_DECODER.append(Decoder(loglevel="FATAL", lm=None, bestpath=False,
                                          beam=1e-60, wbeam=1e-50, pbeam=1e-60))  # fmt: skip
    dec = _REFERENCE_DECODER[0]
    hand = MANDARIN_REFERENCE.get(Path(audio.path).name)
    if hand is not None:
        words = [f"ref{k}@zh" for k in range(len(hand))]
        prons = dict(zip(words, hand, strict=True))
    else:
        raw = ph.normalise_transcript(transcript)
        words = [f"ref_{w}" for w in lg.keyed_words(raw, code)]
        prons = {f"ref_{k}": p for k, p in lg.transcript_pronunciations(raw, code).items()}
    for word, pron in prons.items():
        if not dec.lookup_word(word):
            dec.add_word(word, pron, update=True)
    saved = ph._DECODERS.get("align")
    ph._DECODERS["align"] = dec
    try:
        return ph.align_words(ph.to_pcm16(audio.samples), words)
    finally:
        if saved is None:
            ph._DECODERS.pop("align", None)
        else:
            ph._DECODERS["align"] = saved


def closure_events(w: np.ndarray, times: np.ndarray) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of each run of frames whose lips are closed (``shapes``)."""
    closed = shapes(w)["closed"].astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], closed, [0]])))
    return [(float(times[a]), float(times[b - 1])) for a, b in zip(edges[::2], edges[1::2],
                                                                     strict=True)]  # fmt: skip


def non_english_hits(
    w: np.ndarray, times: np.ndarray, reference: list[ph.Phone]
) -> dict[str, list[bool]]:
    """Per-class hits as :func:`class_hits` (rounding includes UH: German ö, ü), plus one
    trial per closure the animation makes: ``false closure`` is True when the closure
    overlaps no reference bilabial (widened by ``TOLERANCE_S``): lips closed where none is
    spoken."""
    hits = class_hits(w, times, reference)
    hits["rounding"] = class_hits(
        w, times, [replace(p, label="UW") if p.label == "UH" else p for p in reference]
    )["rounding"]
    out = {name: hits[name] for name in NON_EN_CLASSES}
    spans = [(p.start_s - TOLERANCE_S, p.end_s + TOLERANCE_S)
             for p in reference if p.label in CLASSES["bilabial closure"]]  # fmt: skip
    out["false closure"] = [
        not any(a <= end and start <= b for a, b in spans) for start, end in closure_events(w, times)
    ]
    out["closure in open vowels"] = hits["closure in open vowels"]
    return out


#: Non-English configurations: today's English routing (``language="en"``) as the "before"
#: rows, then the language routing (``auto`` with the transcript; the clip's code without).
NON_EN_CONFIGS = {
    "before: audio only (English recogniser)": {"language": "en", "transcript": False},
    "before: transcript (English aligner)": {"language": "en", "transcript": True},
    "audio only (--language CODE)": {"language": None, "transcript": False},
    "transcript (--language auto)": {"language": "auto", "transcript": True},
    "streaming, audio only (--language CODE)": {"language": None, "transcript": False,
                                                 "stream": True},
}


def evaluate_non_english(
    model: DefaultLipSyncModel, data: Path, fps: Fraction, configs: list[str] | None = None
) -> dict[str, dict[str, list[int]]]:
    """``{config: {class: [hits, trials]}}`` over the non-English clips."""
    chosen = {k: v for k, v in NON_EN_CONFIGS.items() if configs is None or k in configs}
    tally: dict[str, dict[str, list[bool]]] = {c: {} for c in chosen}
    for path, transcript, code in non_english_clips(data):
        audio = decode_audio(path)
        reference = non_english_reference(audio, transcript, code)
        times = frame_targets(num_frames_for(len(audio.samples), fps), fps) / SAMPLE_RATE
        for name, how in chosen.items():
            opts = InferenceOptions(
                fps=fps, blinks=False, language=how["language"] or code,
                transcript=transcript if how["transcript"] else None,
            )
            if how.get("stream"):
                weights = stream_weights(model, audio, opts, NON_EN_PUSH_TIMES_MS)
            else:
                weights = model.animate([audio], opts)[0].weights
            for key, values in non_english_hits(weights, times, reference).items():
                tally[name].setdefault(key, []).extend(values)
    return {c: {k: [int(sum(v)), len(v)] for k, v in t.items()} for c, t in tally.items()}


#: Compute time of every push of the non-English streaming row (milliseconds).
NON_EN_PUSH_TIMES_MS: list[float] = []


#: The language-independent path run on English clips (``--language de`` forces it), scored
#: the same way against the English dictionary's forced alignment: the **tuning set** for that
#: path, so that its settings are chosen without looking at the non-English clips.
TUNING_ROW = "tuning set: English clips, language-independent path"


def english_tuning_clips(data: Path) -> list[tuple[Path, str]]:
    """``(audio, transcript)`` of the English clips with exact transcripts: ``speech_en``
    (``.raw`` duplicates skipped) and the 15 RAVDESS clips (acted emotional English, as EmoDB
    is acted emotional German)."""
    clips = []
    speech = data / "speech_en" / "transcripts.tsv"
    if speech.is_file():
        with open(speech, newline="", encoding="utf-8") as handle:
            clips += [(speech.parent / r["file"], r["transcript"])
                      for r in csv.DictReader(handle, delimiter="\t")
                      if not r["file"].endswith(".raw")]  # fmt: skip
    ravdess = data / "emotional_speech" / "ravdess_actor01" / "labels.csv"
    if ravdess.is_file():
        with open(ravdess, newline="", encoding="utf-8") as handle:
            clips += [(ravdess.parent / r["file"], r["statement"]) for r in csv.DictReader(handle)]
    return clips


def evaluate_tuning_set(
    model: DefaultLipSyncModel, data: Path, fps: Fraction
) -> dict[str, list[int]]:
    """``{class: [hits, trials]}`` of the language-independent path on the English clips
    (:data:`TUNING_ROW`), with the non-English scorer."""
    tally: dict[str, list[bool]] = {}
    for path, transcript in english_tuning_clips(data):
        audio = decode_audio(path)
        reference = reference_phones(audio, transcript)
        times = frame_targets(num_frames_for(len(audio.samples), fps), fps) / SAMPLE_RATE
        opts = InferenceOptions(fps=fps, blinks=False, language="de")
        weights = model.animate([audio], opts)[0].weights
        for key, values in non_english_hits(weights, times, reference).items():
            tally.setdefault(key, []).extend(values)
    return {k: [int(sum(v)), len(v)] for k, v in tally.items()}


#: Phone-loop language weights whose reference bilabials ``--coverage`` counts (the model's
#: path uses lw 2, ``phones.PHONE_SEARCH``).
COVERAGE_LOOP_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _loop_with_weight(weight: float) -> Callable[[bytes], list[ph.Phone]]:
    import os

    from pocketsphinx import Decoder

    allphone = os.path.join(ph._model_path(), "en-us", "en-us-phone.lm.bin")
    dec = Decoder(loglevel="FATAL", lm=None, allphone=allphone,
                  **{**ph.PHONE_SEARCH, "lw": weight})  # fmt: skip

    def decode(pcm: bytes) -> list[ph.Phone]:
        ph._decode(dec, pcm)
        return ph.merge_silences([
            ph.Phone(ph._label(seg.word), seg.start_frame * ph.FRAME_S,
                     (seg.end_frame + 1) * ph.FRAME_S)
            for seg in dec.seg() or ()
        ])  # fmt: skip

    return decode


def decoder_coverage(data: Path) -> dict[str, list[int]]:
    """How many reference bilabials of the non-English clips each pocketsphinx decoding
    hears as P/B/M (its phone within the reference phone's span +- ``TOLERANCE_S``), and all
    of them together: the ceiling of any vote or union over these decoders (issue 17)."""
    decoders: dict[str, Callable[[bytes], list[ph.Phone]]] = {
        f"phone loop lw {w:g}": _loop_with_weight(w) for w in COVERAGE_LOOP_WEIGHTS
    }
    decoders["English words"] = ph.recognise
    decoders["English words, fast"] = lambda pcm: ph.recognise(pcm, align=False)
    heard: dict[str, list[bool]] = {name: [] for name in [*decoders, "any of them"]}
    bilabial = CLASSES["bilabial closure"]
    for path, transcript, code in non_english_clips(data):
        audio = decode_audio(path)
        reference = [p for p in non_english_reference(audio, transcript, code)
                     if p.label in bilabial]  # fmt: skip
        pcm = ph.to_pcm16(audio.samples)
        found = []
        for name, decode in decoders.items():
            spans = [(p.start_s, p.end_s) for p in decode(pcm) if p.label in bilabial]
            hits = [any(a <= r.end_s + TOLERANCE_S and r.start_s - TOLERANCE_S <= b
                        for a, b in spans) for r in reference]  # fmt: skip
            heard[name] += hits
            found.append(hits)
        heard["any of them"] += [any(column) for column in zip(*found, strict=True)]
    return {name: [sum(v), len(v)] for name, v in heard.items()}


def non_english_markdown(tally: dict[str, dict[str, list[int]]]) -> str:
    """The non-English table for docs/quality.md (rows = configurations)."""
    keys = [*NON_EN_CLASSES, "false closure", "closure in open vowels"]
    head = ["bilabial", "labiodental", "rounded", "open vowel",
            "closures where none is spoken", "closure in open vowels"]  # fmt: skip
    first = next(iter(tally.values()), {})
    counts = [f"{h} ({first.get(k, [0, 0])[1]})" if k not in ("false closure",) else h
              for h, k in zip(head, keys, strict=True)]  # fmt: skip
    lines = ["| non-English (16 clips) | " + " | ".join(counts) + " |",
             "|---" * (len(keys) + 1) + "|"]  # fmt: skip
    for name, row in tally.items():
        cells = []
        for key in keys:
            hit, n = row.get(key, [0, 0])
            # The tuning row's clips differ from the header's counts: each cell shows its own.
            counted = key == "false closure" or name == TUNING_ROW
            cells.append((f"{hit / n:.2f}" + (f" ({hit}/{n})" if counted else "")) if n else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: ``--misses`` lists the phones of these classes that the streaming and recognised rows score
#: differently.
MISS_CLASSES = ("bilabial closure", "labiodental")


def _phones_near(phones: list[ph.Phone], around: ph.Phone, reach_s: float = 0.15) -> str:
    """``LABEL(word)`` of the phones within ``reach_s`` of ``around``."""
    return " ".join(f"{p.label}({p.word})" if p.word else p.label for p in phones
                    if p.end_s > around.start_s - reach_s and p.start_s < around.end_s + reach_s)  # fmt: skip


def stream_misses(
    name: str, reference: list[ph.Phone], offline: dict[str, list[bool]],
    streamed: dict[str, list[bool]], trace: list, fps: Fraction,
) -> list[str]:  # fmt: skip
    """One entry per reference phone of :data:`MISS_CLASSES` that the stream misses and offline
    recognition hits (or the other way round), with the stream's phones around it when its
    frame was emitted (``heard``: the audio received then) and the latest hypothesis the stream
    held for that time (its trace keeps the phones about 1.2 s behind the newest frame): a
    consonant missing from both is a recognition error, one only in the latest is a partial
    hypothesis that settled after the frame was out."""
    lines = []
    for cls in MISS_CLASSES:
        phones = [p for p in reference if p.label in CLASSES[cls]]
        for phone, hit_off, hit_str in zip(phones, offline[cls], streamed[cls], strict=True):
            if hit_off == hit_str:
                continue
            centre = 0.5 * (phone.start_s + phone.end_s)
            frame = int(centre * fps)
            emitted = next((t for t in trace if t[0] <= frame < t[1]), None)
            latest = [t for t in trace if t[3] and t[3][0].start_s <= centre <= t[3][-1].end_s]
            entry = (f"{name} {cls}: {phone.word}/{phone.label} {phone.start_s:.2f}-"
                     f"{phone.end_s:.2f} s, stream {'hit' if hit_str else 'missed'}, offline "
                     f"{'hit' if hit_off else 'missed'}")  # fmt: skip
            if emitted is not None:
                entry += (f"\n    emitted (heard {emitted[2] / SAMPLE_RATE:.2f} s): "
                          f"{_phones_near(emitted[3], phone)}")  # fmt: skip
            if latest:
                entry += (f"\n    latest (heard {latest[-1][2] / SAMPLE_RATE:.2f} s): "
                          f"{_phones_near(latest[-1][3], phone)}")  # fmt: skip
            lines.append(entry)
    return lines


def jaw_correlation(pred: np.ndarray, tracked: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Pearson r at lag 0 and the best lag k in [-10, 10] frames: r(pred[i], tracked[i + k]);
    k > 0 means the animation leads the tracked face."""
    n = min(len(pred), len(tracked))
    pred, tracked, valid = pred[:n], tracked[:n], valid[:n]

    def r_at(k: int) -> float:
        a = pred[max(0, -k) : n - max(0, k)]
        b = tracked[max(0, k) : n - max(0, -k)]
        m = valid[max(0, k) : n - max(0, -k)]
        return float(np.corrcoef(a[m], b[m])[0, 1])

    lags = {k: r_at(k) for k in range(-MAX_LAG, MAX_LAG + 1)}
    best = max(lags, key=lambda k: lags[k])
    return {"r_lag0": lags[0], "best_lag_frames": best, "r_best": lags[best]}


def load_tracked(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(folder / "blendshapes_30fps_derived.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    jaw = np.array([float(r["jawOpen"]) for r in rows])
    valid = np.array([r["has_face"].strip().lower() in ("1", "true") for r in rows])
    return jaw, valid


def main(argv: list[str] | None = None) -> int:
    global TOLERANCE_S  # noqa: PLW0603 (--tolerance sets the scorer's module-level setting)
    default_tolerance = TOLERANCE_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--fps", default="60", help="frame rate for the phone-class hits")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--verbose", action="store_true", help="list every miss")
    parser.add_argument("--misses", action="store_true",
                        help="list the /p b m/ and /f v/ the streaming and recognised rows score "
                             "differently, with the stream's hypothesis then and later")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=default_tolerance, metavar="S",
                        help="widen each phone's span by S seconds on each side (default "
                             f"{default_tolerance}; 0 = the phone's own span)")  # fmt: skip
    parser.add_argument("--only", nargs="+", metavar="CONFIG",
                        help="run only these configurations (e.g. recognised streaming)")  # fmt: skip
    parser.add_argument("--clips", choices=("english", "non-english", "all"), default="all",
                        help="which clips: speech_en, the German/Russian/Mandarin ones, or both")  # fmt: skip
    parser.add_argument("--coverage", action="store_true",
                        help="also count the non-English clips' bilabials each pocketsphinx "
                             "decoding hears (and all of them together)")  # fmt: skip
    args = parser.parse_args(argv)
    TOLERANCE_S = args.tolerance
    fps = Fraction(args.fps)
    model = DefaultLipSyncModel()
    non_english = None
    if args.clips != "english":
        non_english = evaluate_non_english(model, args.data, fps)
        if english_tuning_clips(args.data):
            non_english[TUNING_ROW] = evaluate_tuning_set(model, args.data, fps)
        print(non_english_markdown(non_english) + "\n")
        if NON_EN_PUSH_TIMES_MS:
            print(f"non-English streaming row: {len(NON_EN_PUSH_TIMES_MS)} pushes of 20 ms, "
                  f"compute p50 {np.percentile(NON_EN_PUSH_TIMES_MS, 50):.1f} ms, p99 "
                  f"{np.percentile(NON_EN_PUSH_TIMES_MS, 99):.1f} ms\n")  # fmt: skip
        if args.coverage:
            coverage = decoder_coverage(args.data)
            non_english["decoder coverage"] = coverage  # type: ignore[assignment]
            print("| reference bilabials heard as P/B/M by | share |\n|---|---|")
            for name, (hit, n) in coverage.items():
                print(f"| {name} | {hit / max(n, 1):.2f} ({hit}/{n}) |")
            print()
        if args.clips == "non-english":
            if args.json:
                args.json.write_text(json.dumps({"non_english": non_english}, indent=2))
            return 0
    speech = args.data / "speech_en"
    if not speech.is_dir():
        print(f"{speech}: not found; pass --data", file=sys.stderr)
        return 2
    rhubarb = rhubarb_baseline.find_binary()
    if rhubarb is None:
        print("Rhubarb Lip Sync not found (make rhubarb, or set A2X_RHUBARB): its rows are "
              "skipped", file=sys.stderr)  # fmt: skip
    configs = _configs(model, rhubarb)
    if args.only:
        unknown = set(args.only) - set(configs) - set(RHUBARB_CONFIGS)
        if unknown:
            print(f"--only {', '.join(sorted(unknown))}: not one of {', '.join(configs)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        configs = {name: configs[name] for name in configs if name in args.only}
        if not configs:
            print("nothing to run (--only named only skipped configurations)", file=sys.stderr)
            return 0
    global STREAM_TRACE  # noqa: PLW0603 (--misses: the streaming row records its trace)
    list_misses = args.misses and {"streaming", "recognised"} <= set(configs)
    tally: dict[str, dict[str, list[bool]]] = {c: {} for c in configs}
    with open(speech / "transcripts.tsv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if not r["file"].endswith(".raw")]
    for row in rows:
        audio = decode_audio(speech / row["file"])
        reference = reference_phones(audio, row["transcript"])
        times = frame_targets(num_frames_for(len(audio.samples), fps), fps) / SAMPLE_RATE
        STREAM_TRACE = [] if list_misses else None
        clip_hits = {}
        for name, animate in configs.items():
            hits = clip_hits[name] = class_hits(animate(audio, fps, row["transcript"]), times,
                                                reference)  # fmt: skip
            for key, values in hits.items():
                tally[name].setdefault(key, []).extend(values)
            if args.verbose and name == "recognised":
                misses = [p for p in reference if p.label in CLASSES["bilabial closure"]]
                print(
                    row["file"],
                    "bilabials:",
                    [(p.word, p.label, round(p.start_s, 2)) for p in misses],
                )
        if list_misses:
            for line in stream_misses(row["file"], reference, clip_hits["recognised"],
                                      clip_hits["streaming"], STREAM_TRACE or [], fps):  # fmt: skip
                print(line)
        STREAM_TRACE = None
    mediapipe = args.data / "arkit_pairs" / "nn_training_mediapipe"
    correlations: dict[str, dict[str, float]] = {}
    if mediapipe.is_dir():
        audio = decode_audio(mediapipe / "extracted_audio.wav")
        tracked, valid = load_tracked(mediapipe)
        for name, animate in configs.items():
            if name in NEEDS_TRANSCRIPT:
                continue  # no transcript for this clip
            pred = animate(audio, Fraction(30), None)[:, _C["jawOpen"]]
            correlations[name] = jaw_correlation(pred, tracked, valid)
    report = {"tally": {c: {k: [int(sum(v)), len(v)] for k, v in t.items()} for c, t in tally.items()},
              "jaw": correlations, "fps": str(fps), "tolerance_s": TOLERANCE_S}  # fmt: skip
    if non_english is not None:
        report["non_english"] = non_english
    if rhubarb is not None and set(configs) & set(RHUBARB_CONFIGS):
        report["rhubarb"] = f"Rhubarb Lip Sync {rhubarb_baseline.version(rhubarb)} ({rhubarb})"
    if PUSH_TIMES_MS:
        report["stream"] = {
            "lookahead_s": model.stream_lookahead_s, "push_samples": PUSH_SAMPLES,
            "pushes": len(PUSH_TIMES_MS),
            "push_ms_p50": float(np.percentile(PUSH_TIMES_MS, 50)),
            "push_ms_p99": float(np.percentile(PUSH_TIMES_MS, 99)),
            "push_ms_max": float(np.max(PUSH_TIMES_MS)),
        }  # fmt: skip
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def markdown(report: dict) -> str:
    """The tables for docs/quality.md."""
    configs = list(report["tally"])
    lines = ["| phone class (n) | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
    first = report["tally"][configs[0]]
    for key in first:
        n = first[key][1]
        cells = []
        for c in configs:
            hit, total = report["tally"][c].get(key, [0, 0])
            cells.append(f"{100 * hit / total:.1f} %" if total else "-")
        label = f"{key} ({n})" + (" *false positive*" if key in FALSE_POSITIVES else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "streaming" in configs and "recognised" in configs:
        gaps = []
        for key in first:
            if key in FALSE_POSITIVES:
                continue
            (s_hit, s_n), (r_hit, r_n) = (
                report["tally"][c][key] for c in ("streaming", "recognised")
            )
            gaps.append(f"{key} {100 * (s_hit / s_n - r_hit / r_n):+.1f}")
        lines += ["", "streaming - recognised (points): " + ", ".join(gaps)]
    if "stream" in report:
        st = report["stream"]
        lines.append(
            f"streaming look-ahead {1e3 * st['lookahead_s']:.0f} ms; compute per "
            f"{st['push_samples']}-sample push over {st['pushes']} pushes: p50 "
            f"{st['push_ms_p50']:.2f} ms, p99 {st['push_ms_p99']:.2f} ms, max {st['push_ms_max']:.1f} ms"
        )
    if "rhubarb" in report:
        lines += ["", f"rhubarb: {report['rhubarb']}"]
    if report["jaw"]:
        lines += ["", "| jawOpen vs MediaPipe (30 fps) | r at lag 0 | best lag (frames) | r at best lag |",
                  "|---|---|---|---|"]  # fmt: skip
        for name, r in report["jaw"].items():
            lines.append(
                f"| {name} | {r['r_lag0']:.3f} | {r['best_lag_frames']:+d} | {r['r_best']:.3f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
