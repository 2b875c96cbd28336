"""English quality of the default model (issue 17 point 2): short open vowels open visibly, and
the Rhubarb Lip Sync baseline of ``benchmarks/lipsync_eval.py`` reads its shapes as intended."""

from __future__ import annotations

import dataclasses
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.audio.decode import decode_audio
from a2x_core.lipsync.coarticulation import open_nuclei
from a2x_core.lipsync.expressions import snap_quiet_phones
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.lipsync.phones import SILENCE, Phone
from a2x_core.lipsync.visemes import load_table, viseme_track
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from a2x_core.timing import frame_times_s, num_frames_for
from tests.core.test_lipsync_coarticulation import sequence

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO.parent / "shared" / "data" / "speech_en"
sys.path.insert(0, str(REPO / "benchmarks"))
import lipsync_eval  # noqa: E402
import rhubarb_baseline  # noqa: E402

JAW = ARKIT_52.index("jawOpen")
OPEN_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY")
FUNCTION_WORDS = {"a", "and", "can", "for", "of", "the", "to", "what", "your"}
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."  # noqa: E501
AUSTEN = "unless to be rather cold hearted and rather selfish is to be ill disposed"


def test_a_short_open_vowel_between_closures_reaches_its_nucleus_floor() -> None:
    """A 40 ms /ah/ between two /m/ (a "mum" said fast) opens to the long vowel's jaw."""
    table = load_table()
    phones = sequence((SILENCE, 0.2), ("M", 0.08), ("AH", 0.04), ("M", 0.08), (SILENCE, 0.2))
    times = frame_times_s(36, Fraction(60))
    track = viseme_track(phones, table)
    per_target, acoustic = np.full(len(times), 0.6), np.full(len(times), 0.05)
    vowel = (times >= 0.28) & (times <= 0.32)
    peaks = {}
    for share in (0.0, table.nucleus_share):
        jaw = np.zeros(len(times))
        open_nuclei(jaw, times, track, dataclasses.replace(table, nucleus_share=share),
                    per_target, acoustic)  # fmt: skip
        peaks[share] = jaw[vowel].max()
    long_vowel = table.targets[table.index("mid"), JAW] * 0.6 + 0.05
    assert peaks[0.0] == 0.0
    assert peaks[table.nucleus_share] >= 0.99 * table.nucleus_share * long_vowel
    # Only open-vowel visemes carry a nucleus; closures and close vowels do not.
    flagged = {table.names[v] for v in np.flatnonzero(table.nucleus)}
    assert "mid" in flagged and "open" in flagged
    assert not flagged & {"bilabial", "labiodental", "close_front", "round_close", "rest"}


def test_a_long_vowel_keeps_its_opening() -> None:
    """The floor lifts what coarticulation undershoots, not clear vowels: a 250 ms /aa/ peaks
    where it did without it (its blend already reaches the floor's share of the target)."""
    table = load_table()
    model = DefaultLipSyncModel()
    phones = sequence((SILENCE, 0.2), ("AA", 0.25), (SILENCE, 0.2))
    times = frame_times_s(39, Fraction(60))
    track = viseme_track(phones, table)
    loud, acoustic = np.full(len(times), 0.8), np.full(len(times), 0.3)
    with_nuclei, _ = model.mouth(times, track, loud, acoustic)
    model.table = dataclasses.replace(table, nucleus_share=0.0)
    without, _ = model.mouth(times, track, loud, acoustic)
    assert with_nuclei[:, JAW].max() == pytest.approx(without[:, JAW].max(), rel=0.02)
    assert np.abs(with_nuclei[:, JAW] - without[:, JAW]).max() < 0.06


def test_fast_mode_puts_a_stop_closure_on_the_silence_inside_its_word() -> None:
    """Typical durations drew "clubs"' /b/ over its /z/ (pocketsphinx_cards/001.wav in fast
    mode); the closure's silence 60 ms earlier is where the lips meet."""
    words = [("K", 0.45, 0.54), ("L", 0.54, 0.63), ("AH", 0.63, 0.78), ("B", 0.78, 0.88),
             ("Z", 0.88, 0.96)]  # fmt: skip
    phones = [Phone("SIL", 0.0, 0.45), *(Phone(p, a, b, "clubs") for p, a, b in words)]
    level = np.full(100, 0.8)
    level[:45] = 0.0
    level[70:75] = 0.05  # the closure, 0.70-0.75 s
    snapped = snap_quiet_phones(phones, level)
    b = snapped[4]
    assert (b.label, b.end_s - b.start_s) == ("B", pytest.approx(0.1))
    assert b.start_s <= 0.70 + 1e-9 and b.end_s >= 0.75
    # Neighbours in the word absorb the move; the word's edges and order stay.
    assert [(p.start_s, p.end_s) for p in snapped[:3]] == [(p.start_s, p.end_s) for p in phones[:3]]
    assert snapped[3].end_s == b.start_s and snapped[5].start_s == b.end_s
    assert snapped[5].end_s == 0.96 and snapped[3].end_s - snapped[3].start_s >= 0.02
    # Without a quieter stretch nearby nothing moves; a word-initial /b/ never moves.
    assert snap_quiet_phones(phones, np.full(100, 0.8)) == phones
    initial = [Phone("B", 0.45, 0.5, "but"), Phone("AH", 0.5, 0.6, "but")]
    assert snap_quiet_phones(initial, level) == initial


def speech(name: str):
    path = SPEECH / name
    if not path.exists():
        pytest.skip("../shared/data/speech_en is absent")
    return decode_audio(path)


@pytest.fixture(scope="module")
def model() -> DefaultLipSyncModel:
    return DefaultLipSyncModel()


def _vowel_peaks(
    model: DefaultLipSyncModel, name: str, text: str
) -> list[tuple[str, float, float]]:
    """``(word, duration, jaw peak within the vowel's own span)`` of every reference open
    vowel (the transcript forced-aligned, as ``lipsync_eval`` scores it)."""
    audio = speech(name)
    result = model.animate([audio], InferenceOptions(fps=60, blinks=False, transcript=text))[0]
    jaw, times = result.weights[:, JAW], result.times_s
    out = []
    for phone in lipsync_eval.reference_phones(audio, text):
        if phone.label in OPEN_VOWELS:
            inside = (times >= phone.start_s) & (times <= phone.end_s)
            out.append((phone.word, phone.end_s - phone.start_s, float(jaw[inside].max())))
    return out


def test_weak_vowels_of_function_words_open_visibly(model: DefaultLipSyncModel) -> None:
    """'to', 'and', 'can', 'what', 'your' (30-100 ms) open the jaw visibly, within the
    vowel's own span: >= 0.2 (the scorer's jaw peak needs 0.15), and in JFK (whose stressed
    vowels are clear) at least half as far as the clip's clear vowels (>= 120 ms). Before
    the nucleus floor: 'to' 0.14, 'can' 0.45 of the clear vowels."""
    jfk = _vowel_peaks(model, "whisper_jfk.flac", JFK)
    austen = _vowel_peaks(
        model, "pocketsphinx_librivox/sense_and_sensibility_01_austen_64kb-0890.wav", AUSTEN
    )
    clear = float(np.median([peak for _, duration, peak in jfk if duration >= 0.12]))
    weak = [(w, d, p) for w, d, p in jfk + austen if w in FUNCTION_WORDS and d <= 0.11]
    assert {"to", "and", "can", "what", "your"} <= {w for w, _, _ in weak}
    assert all(peak >= 0.2 for _, _, peak in weak), weak
    jfk_weak = [peak for w, d, peak in jfk if w in FUNCTION_WORDS and d <= 0.11]
    assert min(jfk_weak) >= 0.5 * clear, (jfk_weak, clear)


@pytest.mark.parametrize(
    ("shape", "closed", "rounded", "labiodental", "jaw_peak"),
    [("A", True, False, False, False), ("B", False, False, False, False),
     ("C", False, False, False, True), ("D", False, False, False, True),
     ("E", False, True, False, True), ("F", False, True, False, False),
     ("G", False, False, True, False), ("H", False, False, False, True),
     ("X", False, False, False, False)],
)  # fmt: skip
def test_rhubarb_shapes_pass_exactly_the_scorer_tests_they_stand_for(
    shape: str, closed: bool, rounded: bool, labiodental: bool, jaw_peak: bool
) -> None:
    times = np.array([0.0, 0.05, 0.1, 0.15])
    cues = [{"start": 0.0, "end": 0.1, "value": "X"}, {"start": 0.1, "end": 0.2, "value": shape}]
    w = rhubarb_baseline.weights_from_cues(cues, times)
    assert not w[:2].any()  # X (rest) is held until the next cue
    tests = lipsync_eval.shapes(w[2:])
    assert (bool(tests["closed"].all()), bool(tests["rounded"].all()),
            bool(tests["labiodental"].all())) == (closed, rounded, labiodental)  # fmt: skip
    assert (w[2, JAW] >= 0.15) == jaw_peak


def test_the_rhubarb_rows_are_skipped_without_its_binary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not SPEECH.is_dir():
        pytest.skip("../shared/data/speech_en is absent")
    monkeypatch.setenv("A2X_RHUBARB", str(REPO / "no-such-rhubarb"))
    assert rhubarb_baseline.find_binary() is None
    assert lipsync_eval.main(["--only", "rhubarb", "rhubarb + dialog"]) == 0
    assert "Rhubarb Lip Sync not found" in capsys.readouterr().err


@pytest.mark.slow
def test_rhubarb_runs_with_and_without_the_dialog() -> None:
    """The real binary (``make rhubarb``) on real speech ("go forward ten meters"): every frame
    holds one of its shapes, the jaw opens on the vowels, and with the dialog text the F and
    the M become the scorer's lip-to-teeth and closure."""
    binary = rhubarb_baseline.find_binary()
    if binary is None:
        pytest.skip("Rhubarb Lip Sync is absent (make rhubarb)")
    audio = speech("pocketsphinx_goforward.wav")
    poses = rhubarb_baseline.weights_from_cues(
        [{"start": k, "end": k + 1, "value": v} for k, v in enumerate(rhubarb_baseline.SHAPES)],
        np.arange(len(rhubarb_baseline.SHAPES)) + 0.5,
    )
    for dialog in (None, "go forward ten meters"):
        w = rhubarb_baseline.rhubarb_weights(binary, audio, Fraction(60), dialog)
        assert w.shape == (num_frames_for(len(audio.samples), Fraction(60)), len(ARKIT_52))
        assert all((poses == frame).all(axis=1).any() for frame in w)
        assert w[:, JAW].max() >= 0.3
    tests = lipsync_eval.shapes(w)
    assert tests["closed"].any() and tests["labiodental"].any()


def test_stream_misses_names_each_differing_consonant_with_the_streams_phones() -> None:
    """``lipsync_eval.py --misses``: a /b/ the stream missed and offline hit is listed with the
    stream's phones when its frame went out and its latest ones; phones scored alike are not."""
    reference = [Phone("B", 0.50, 0.56, "be"), Phone("M", 1.00, 1.05, "me"),
                 Phone("F", 1.50, 1.60, "fee")]  # fmt: skip
    offline = {"bilabial closure": [True, True], "labiodental": [True]}
    streamed = {"bilabial closure": [False, True], "labiodental": [True]}
    then = [Phone("D", 0.48, 0.57, "dee"), Phone(SILENCE, 0.57, 0.9)]
    later = [Phone("B", 0.49, 0.56, "be"), Phone("IY", 0.56, 0.7, "be")]
    trace = [(0, 40, 13000, then), (40, 80, 30000, later)]  # frames 0-39 out at 0.81 s heard
    lines = lipsync_eval.stream_misses("clip.wav", reference, offline, streamed, trace,
                                       Fraction(60))  # fmt: skip
    assert len(lines) == 1
    assert lines[0].startswith("clip.wav bilabial closure: be/B 0.50-0.56 s, stream missed")
    assert "emitted (heard 0.81 s): D(dee) SIL" in lines[0]
    assert "latest (heard 1.88 s): B(be) IY(be)" in lines[0]
