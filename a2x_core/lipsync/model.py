"""The embedded default model: speech → phones → visemes → coarticulated ARKit-52 curves.

CPU only, no download: pocketsphinx (en-US models from its wheel) gives phones with timings,
either recognised or forced onto the user's transcript; :mod:`.coarticulation` turns them into
curves; loudness scales the jaw; blinks and pitch-accent brows are added on top.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..audio.decode import SILENCE_PEAK, Audio
from ..errors import ParameterError
from ..head.motion import alive_face, head_and_gaze, head_style, limit_jaw
from ..jobs import CancelToken, Progress, ProgressCallback, ProgressScale
from ..models.emotion_input import track_emotion_keys
from ..names import ARKIT_52
from ..options import EmotionKey, InferenceOptions
from ..result import AnimationResult
from ..timing import SAMPLE_RATE, frame_targets, num_frames_for
from ..version import __version__
from . import expressions as ex
from . import language as lg
from . import phones as ph
from .acoustic import PhoneDecoding
from .coarticulation import apply_critical, blend, open_nuclei
from .parallel import Aligning, Decoding, cpu_count, stop_pending
from .stream import LOOKAHEAD_SAMPLES, DefaultStream
from .visemes import DEFAULT_TABLE, VisemeTrack, load_table, viseme_track

log = logging.getLogger("a2x_core")

#: jawOpen gain = JAW_FLOOR + (1 - JAW_FLOOR) * loudness: quiet syllables open less.
JAW_FLOOR = 0.3
#: Share of jawOpen taken from the acoustic estimate (loudness x F1 openness) rather than
#: from the phones' targets, and that estimate's full-scale value.
JAW_ACOUSTIC = 0.5
JAW_ACOUSTIC_SCALE = 0.6
#: Overall jawOpen gain after the mix (the mix halves each source's range).
JAW_GAIN = 1.5
#: The jaw, a heavy articulator, moves ahead of the sound it shapes: the acoustic estimate at
#: time t is read at t + this.
JAW_LEAD_S = 0.04
#: Outer brows follow the inner brow at this ratio.
OUTER_BROW = 0.7

_COL = {name: i for i, name in enumerate(ARKIT_52)}


#: Warn when more than this share of the loud audio falls outside the transcript's words
#: (0-9 % for the speech_en transcripts, 40-90 % for unrelated text).
MISMATCH_SHARE = 0.25


def _transcript_mismatch(phones: list[ph.Phone], level: np.ndarray, path: str) -> list[str]:
    """A warning if the aligned transcript leaves much of the loud audio as silence."""
    grid = np.arange(len(level)) * ex.ANALYSIS_S
    # +1 where a silence starts, -1 where it ends: one pass, however many phones.
    change = np.zeros(len(level) + 1, np.int64)
    for phone in phones:
        if phone.label == ph.SILENCE:
            lo, hi = np.searchsorted(grid, [phone.start_s, phone.end_s])
            change[lo] += 1
            change[hi] -= 1
    silent = np.cumsum(change[:-1]) > 0
    loud = level >= 0.5
    share = float((silent & loud).sum() / max(int(loud.sum()), 1))
    if share <= MISMATCH_SHARE:
        return []
    message = (
        f"{path or 'audio'}: {share:.0%} of the speech fell outside the transcript's words; "
        "check that the transcript matches the audio (or leave it out to recognise the speech)"
    )
    log.warning("%s", message)
    return [message]


#: Engine options that only Audio2Face-3D models use, with their defaults.
_ENGINE_OPTIONS = (("--engine", "backend", "auto"), ("--device", "device", "auto"),
                   ("--precision", "precision", "fp32"))  # fmt: skip


#: The default model's own settings, as named in the note on ignored ``--param`` keys: a
#: clip's (``animate``, ``batch``) and a stream's (``live``, ``serve``: no transcript, one
#: decoder per stream).
CLIP_SETTINGS = "--transcript, --language, --fast, --seed, --no-blinks and --threads"
STREAM_SETTINGS = "--language, --seed, --no-blinks and --head-motion"


def default_model_notes(options: InferenceOptions, streaming: bool = False) -> list[str]:
    """Warnings for options the default model does not use (they used to pass silently and
    be recorded as if applied): every ``--param`` key, and the GPU engine options."""
    notes = []
    if options.parameters:
        keys = ", ".join(sorted(map(str, options.parameters)))
        settings = STREAM_SETTINGS if streaming else CLIP_SETTINGS
        notes.append(
            f"--param {keys}: the default model has no such parameters and ignored them (its "
            f"settings are {settings}; --param applies to Audio2Face-3D models)"
        )
    unused = [flag for flag, field, default in _ENGINE_OPTIONS
              if getattr(options, field) != default]  # fmt: skip
    if unused:
        notes.append(
            f"{', '.join(unused)} only apply to Audio2Face-3D models; the default model runs "
            "pocketsphinx on the CPU"
        )
    return notes


#: With --language en, warn that the transcript looks like another language when more than
#: this share of its words are in another script or missing from the English dictionary.
NOT_ENGLISH_SHARE = 0.5
ENGLISH_ONLY = (
    "aligned as English because --language en was given; pass the transcript's language "
    "(--language de, ru, ...; or auto) to align it with that language's pronunciations"
)


def _not_english(text: str, words: list[str]) -> str:
    """A warning when a transcript is mostly not English, else ""."""
    tokens = re.findall(r"[^\W\d_]+", text)
    foreign = [t for t in tokens if not t.isascii()]
    if not tokens:
        return ""
    unknown = [t for t in tokens if t.isascii()
               and not all(ph.in_dictionary(w) for w in ph.normalise_transcript(t))]  # fmt: skip
    share = (len(foreign) + len(unknown)) / len(tokens)
    if share <= NOT_ENGLISH_SHARE:
        return ""
    return (f"{share:.0%} of the transcript's words are not English (aligned with guessed "
            f"pronunciations: rough lip-sync); {ENGLISH_ONLY}")  # fmt: skip


def exported_words(phones: list[ph.Phone], aligned: bool) -> np.ndarray:
    """The ``phone_words`` array: a word only where the model has evidence for it, i.e. the
    user's transcript aligned to the audio. Recognised words are left out ("" per phone): the
    English recogniser invents English words for other languages and mishears some English,
    and an exported word reads as a fact. The phones themselves are kept."""
    return np.array([p.word if aligned else "" for p in phones], dtype=str)


class DefaultLipSyncModel:
    """The ``--model default`` lip-sync model (implements ``AnimationModel``)."""

    name = "default"
    kind = "default"
    version = f"{__version__}+lipsync.4"  # .4: transcripts read by pinyin / espeak-ng
    emotion_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.table = load_table()

    def info(self) -> dict[str, Any]:
        """Facts for ``a2x info default``."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            recogniser = f"pocketsphinx {version('pocketsphinx')} (en-US models from its wheel)"
        except PackageNotFoundError:
            recogniser = "pocketsphinx (not installed)"
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "description": "embedded lip-sync: pocketsphinx phones -> visemes -> ARKit-52 (CPU)",
            "language": "any: English through word recognition (pocketsphinx en-US); other "
            "languages (--language CODE, or auto from the transcript) through a "
            "language-independent phone loop, or their transcript's pronunciations "
            "(see transcript_pronunciations)",
            "transcript_pronunciations": {
                f"{code} ({name})": "English dictionary (cmudict)" if code == lg.ENGLISH
                else lg.pronunciation_source(code)
                for code, name in lg.LANGUAGES.items()
            },
            "recogniser": recogniser,
            "viseme_table": str(DEFAULT_TABLE),
            "visemes": list(self.table.names),
            "outputs": f"{len(ARKIT_52)} ARKit blendshapes (Audio2Face order)",
            "parameters": {
                "transcript": "exact words spoken: forced alignment instead of recognition",
                "language": "ISO 639-1 code or auto (see language)",
                "fast": "harder pruning, no phone alignment pass: ~2x faster, less exact (previews)",
                "seed": "blink pattern",
                "blinks": "procedural blinks on/off",
                "head_motion": "amplitude of the voice-driven head motion and gaze (0 = none)",
                "threads": f"worker processes for long clips (default {cpu_count()})",
            },
        }

    #: Audio past a frame's time that a stream may need before the frame comes out (< 0.3 s;
    #: :data:`.stream.LOOKAHEAD_SAMPLES`).
    stream_lookahead_s = LOOKAHEAD_SAMPLES / SAMPLE_RATE

    def open_stream(self, options: InferenceOptions) -> DefaultStream:
        """A stream: push audio as it arrives, get each frame once the audio
        :attr:`stream_lookahead_s` past it has arrived (``docs/streaming.md``).

        ``language`` routes the stream as it routes ``animate`` without a transcript: English
        word recognition (``auto``, ``en``), or for another language the language-independent
        phone loop (:mod:`.acoustic`), decoded live.

        Raises:
            ParameterError: ``transcript`` or ``start_s``/``end_s`` set (not usable live).
        """
        return DefaultStream(self, options)

    def animate(
        self,
        tracks: Sequence[Audio],
        options: InferenceOptions,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        *,
        track_emotions: Sequence[tuple[EmotionKey, ...]] | None = None,
    ) -> list[AnimationResult]:
        """Animate each track; tracks are independent, so batches equal single runs.

        Raises:
            ParameterError: ``track_emotions`` holds keys (this model takes no emotion input;
                None or empty tuples are accepted, as every model takes them).
        """
        if any(track_emotion_keys(track_emotions, (), len(tracks))):
            raise ParameterError(
                f"the {self.name} model takes no emotion input (track_emotions has keys)",
                hint="use an Audio2Face-3D model for emotions, or pass track_emotions=None",
            )
        results = []
        for k, audio in enumerate(tracks):
            scale = ProgressScale(progress, k / len(tracks), (k + 1) / len(tracks))
            results.append(self._animate_one(audio, options, scale, cancel))
        if progress is not None:
            progress(Progress(1.0, "done"))
        return results

    def _phones(
        self, audio: Audio, options: InferenceOptions
    ) -> tuple[Decoding | Aligning | PhoneDecoding | list[ph.Phone], list[str]]:
        """Start recognition or transcript alignment (collected later with ``result()``).

        The language (``options.language``, :func:`.language.choose`) routes it: English as
        before; another language aligns the transcript with its own pronunciations, or
        without one decodes language-independent phones (:mod:`.acoustic`).
        """
        samples = audio.samples
        if len(samples) == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK:
            return [ph.Phone(ph.SILENCE, 0.0, len(samples) / SAMPLE_RATE)], []
        choice = lg.choose(options.language, options.transcript)
        # Not English is worth a line in the result; English is the default and stays quiet.
        warnings: list[str] = [] if choice.english else [choice.describe()]
        log.info("%s", choice.describe())
        workers = options.threads or cpu_count()
        if not choice.english:
            words = ph.normalise_transcript(options.transcript or "",
                                            spell_numbers=not lg.reads_numbers(choice.code))
            if words:
                prons = lg.transcript_pronunciations(words, choice.code)
                keyed = list(lg.keyed_words(words, choice.code))
                return Aligning(samples, keyed, workers=workers, pronunciations=prons), warnings
            return PhoneDecoding(samples), warnings
        if options.transcript is not None:
            words = ph.normalise_transcript(options.transcript)
            english = _not_english(options.transcript, words)
            if english:
                log.warning("%s", english)
                warnings.append(english)
            if words:
                words, guessed = ph.prepare_words(words, ph.decoder("align"))
                for message in guessed:
                    log.warning("%s", message)
                warnings += guessed
                prons = ph.pronunciations(words)
                return Aligning(samples, words, workers=workers, pronunciations=prons), warnings
            if not english:
                message = "the transcript has no words; recognised the speech instead"
                log.warning("%s", message)
                warnings.append(message)
        return Decoding(samples, fast=options.fast, workers=workers), warnings

    def _collect(
        self,
        started: Decoding | Aligning | PhoneDecoding | list[ph.Phone],
        audio: Audio,
        options: InferenceOptions,
        warnings: list[str],
        on_progress: Any,
        cancel: CancelToken | None,
    ) -> tuple[list[ph.Phone], bool]:
        """Phones from a started decoding/alignment; ``True`` when they follow the transcript.

        An alignment that finds no path through the words falls back to recognition.
        """
        if isinstance(started, list):
            return started, False
        if isinstance(started, Aligning):
            try:
                phones = started.result(cancel, on_progress)
                for message in started.warnings:
                    log.warning("%s", message)
                warnings += started.warnings
                return phones, True
            except RuntimeError as error:
                message = (
                    f"{audio.path or 'audio'}: the transcript could not be aligned ({error}); "
                    "recognised the speech instead — check that the text matches the audio"
                )
                log.warning("%s", message)
                warnings.append(message)
                workers = options.threads or cpu_count()
                if lg.choose(options.language, options.transcript).english:
                    started = Decoding(audio.samples, fast=options.fast, workers=workers)
                else:  # not English: the English recogniser would invent words and closures
                    started = PhoneDecoding(audio.samples)
        return started.result(cancel, on_progress), False

    def _animate_one(
        self,
        audio: Audio,
        options: InferenceOptions,
        progress: ProgressCallback,
        cancel: CancelToken | None,
    ) -> AnimationResult:
        if cancel is not None:
            cancel.check()
        stage = "aligning transcript" if options.transcript else "recognising phones"
        progress(Progress(0.0, stage))
        started, warnings = self._phones(audio, options)
        try:
            samples = audio.samples
            fps = options.fps
            frames = num_frames_for(len(samples), fps)
            times = frame_targets(frames, fps) / SAMPLE_RATE
            # Acoustic features while the workers decode.
            level_db = ex.loudness_db(samples)
            level = ex.normalised_loudness(level_db)
            f0 = ex.pitch_hz(samples, level)
            opening = ex.openness(samples, level)
            # Head and gaze need only the loudness: computed while the workers decode.
            head, eyes = head_and_gaze(level, times, options.seed, head_style(options))
            phones, aligned = self._collect(
                started, audio, options, warnings,
                lambda done: progress(Progress(0.8 * done, stage)), cancel,
            )  # fmt: skip
        except BaseException:
            # Ctrl-C or an error while the workers decode: an exiting interpreter would wait
            # for every piece still queued; stop them now.
            stop_pending()
            raise
        if aligned:
            warnings += _transcript_mismatch(phones, level, audio.path)
            phones = lg.unkeyed(phones)
        elif options.fast:
            # No phone alignment pass in fast mode: place lip closures by the sound (issue 17).
            phones = ex.snap_quiet_phones(phones, level)
        if cancel is not None:
            cancel.check()
        progress(Progress(0.8, "animating"))
        weights, share = self.curves(phones, times, level, f0, opening, options)
        weights = alive_face(weights, times, ex.at_times(level, times), eyes, options.seed)
        # The whole clip is known: the jaw may start opening early (no jumps; issue 17).
        limit_jaw(weights, float(fps.denominator / fps.numerator), ahead=True)
        arrays = {
            "phone_labels": np.array([p.label for p in phones]),
            "phone_words": exported_words(phones, aligned),
            "phone_start_s": np.array([p.start_s for p in phones]) + audio.start_s,
            "phone_end_s": np.array([p.end_s for p in phones]) + audio.start_s,
            "loudness": ex.at_times(level, times),
            "f0_hz": ex.at_times(f0, times),
            "viseme_weights": share.astype(np.float32),
            "viseme_names": np.array(self.table.names),
        }
        progress(Progress(1.0, "animating"))
        return AnimationResult(
            weights=weights,
            fps=fps,
            audio_path=audio.path,
            start_s=audio.start_s,
            duration_s=audio.duration_s,
            model=self.name,
            model_version=self.version,
            options=options,
            parameters={"fast": options.fast, "transcript": options.transcript is not None,
                        **lg.choose(options.language, options.transcript).as_parameters()},
            head_rotations=head,
            eye_rotations=eyes,
            arrays=arrays,
            warnings=warnings,
        )

    def curves(
        self,
        phones: list[ph.Phone],
        times_s: np.ndarray,
        level: np.ndarray,
        f0: np.ndarray,
        opening: np.ndarray,
        options: InferenceOptions,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Curves from phones and the 100 Hz loudness, F0 and openness tracks.

        Returns:
            ``(weights [frames, 52], viseme_share [frames, visemes])``, float32.
        """
        if len(times_s) == 0:
            empty = np.zeros((0, len(ARKIT_52)), np.float32)
            return empty, np.zeros((0, len(self.table.names)), np.float32)
        track = viseme_track(phones, self.table)
        acoustic = acoustic_jaw(level, f0, opening)
        weights, share = self.mouth(
            times_s, track, ex.at_times(level, times_s), ex.at_times(acoustic, times_s + JAW_LEAD_S)
        )
        blink = ex.blink_curve(times_s, options.seed) if options.blinks else None
        brow = ex.brow_curve(times_s, ex.pitch_accents(f0, level))
        return add_eyes_and_brows(weights, blink, brow), share

    def mouth(
        self,
        times_s: np.ndarray,
        track: VisemeTrack,
        loud: np.ndarray,
        acoustic: np.ndarray,
        frame_s: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The mouth and jaw at ``times_s`` from viseme segments, loudness and the acoustic
        jaw estimate (both already read at the frame times; ``acoustic`` at ``t + JAW_LEAD_S``).

        Shared by the offline run and the stream (:mod:`.stream`), which calls it on a few
        frames at a time and so passes the frame period (``frame_s``) instead of letting
        :func:`.apply_critical` read it off ``times_s``.
        """
        weights, share = blend(times_s, track, self.table)
        # The jaw = per_target x the blended phone target + the acoustic part.
        per_target = JAW_GAIN * (1.0 - JAW_ACOUSTIC) * (JAW_FLOOR + (1.0 - JAW_FLOOR) * loud)
        acoustic_part = JAW_GAIN * JAW_ACOUSTIC * JAW_ACOUSTIC_SCALE * acoustic
        jaw = per_target * weights[:, _COL["jawOpen"]] + acoustic_part
        # Short open vowels open visibly (issue 17): a floor from the vowel's own target.
        open_nuclei(jaw, times_s, track, self.table, per_target, acoustic_part, frame_s)
        weights[:, _COL["jawOpen"]] = jaw
        apply_critical(weights, times_s, track, self.table, frame_s)
        return weights, share


def acoustic_jaw(level: np.ndarray, f0: np.ndarray, opening: np.ndarray) -> np.ndarray:
    """The acoustic jaw estimate on the 100 Hz grid (before ``JAW_ACOUSTIC_SCALE``).

    Loudness x F1 openness, gated by voicing so that noise and breaths leave the jaw at rest,
    and averaged over 50 ms: the spectrum's frame-to-frame jitter is not jaw motion.
    """
    voicing = np.clip(2.0 * ex.moving_mean((f0 > 0).astype(np.float64), 15), 0.0, 1.0)
    return ex.moving_mean(level * opening * voicing, 5)


def add_eyes_and_brows(
    weights: np.ndarray, blink: np.ndarray | None, brow: np.ndarray
) -> np.ndarray:
    """Blinks (``None``: off) and the brow raise on top of the mouth, clipped to [0, 1]."""
    for side in ("eyeBlinkLeft", "eyeBlinkRight"):
        if blink is not None:
            weights[:, _COL[side]] = np.maximum(weights[:, _COL[side]], blink)
    weights[:, _COL["browInnerUp"]] = np.maximum(weights[:, _COL["browInnerUp"]], brow)
    for side in ("browOuterUpLeft", "browOuterUpRight"):
        weights[:, _COL[side]] = np.maximum(weights[:, _COL[side]], OUTER_BROW * brow)
    return np.clip(weights, 0.0, 1.0).astype(np.float32)
