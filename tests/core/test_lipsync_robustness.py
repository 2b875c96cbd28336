"""The default model under long input, signals, ignored options, smoothing and other languages
(issue 11): long clips are cut into bounded pieces, helpers die with the CLI, options it does
not use warn, smoothing keeps closures and blinks, and non-English text is routed by language."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.audio.decode import audio_from_array, decode_audio
from a2x_core.cli import _build_parser
from a2x_core.lipsync import expressions as ex
from a2x_core.lipsync import parallel
from a2x_core.lipsync import phones as ph
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from a2x_core.postprocess.shaping import smooth_curves
from tests.conftest import REPO, SAMPLE, SAMPLE_TRANSCRIPT, SHARED, run_cli

C = {name: i for i, name in enumerate(ARKIT_52)}
RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The bundled 11 s JFK clip as 16 kHz samples."""
    return decode_audio(SAMPLE).samples


def _seconds(pieces: list[tuple[int, int]]) -> list[float]:
    return [(b - a) / RATE for a, b in pieces]


# --- 1. long input: bounded pieces ---------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_long_clips_are_cut_into_bounded_pieces_with_or_without_pauses(speech, workers) -> None:
    """Ten minutes of real speech, and ten minutes without a single pause (speech laid over
    itself), are cut into contiguous pieces no longer than MAX_PIECE_S for any worker count."""
    talk = np.tile(speech, 55)[: 600 * RATE]
    no_pause = talk + np.roll(talk, 7919)
    for samples in (talk, no_pause):
        pieces = parallel.plan_pieces(samples, workers)
        assert pieces[0][0] == 0 and pieces[-1][1] == len(samples)
        assert all(b0 == a1 for (_, b0), (a1, _) in zip(pieces, pieces[1:], strict=False))
        assert max(_seconds(pieces)) <= parallel.MAX_PIECE_S + 0.01
        assert len(pieces) >= 600 / parallel.MAX_PIECE_S


def test_one_worker_decodes_a_long_clip_piece_by_piece_here(speech) -> None:
    """With one worker nothing is sent to a pool: the pieces are decoded here, one by one."""
    parallel.shutdown()
    decoding = parallel.Decoding(np.tile(speech, 12), fast=False, workers=1)
    assert not decoding._futures and parallel._POOL is None
    assert len(decoding._pieces) > 1
    assert max(_seconds(decoding._pieces)) <= parallel.MAX_PIECE_S + 0.01


def test_feature_blocks_bound_memory_without_changing_results(speech, monkeypatch) -> None:
    """Loudness, F0 and openness are computed a block of frames at a time; the block size
    does not change a single value."""
    level = ex.normalised_loudness(ex.loudness_db(speech))
    whole = (ex.loudness_db(speech), ex.pitch_hz(speech, level), ex.openness(speech, level))
    monkeypatch.setattr(ex, "_BLOCK_HOPS", 37)
    blocks = (ex.loudness_db(speech), ex.pitch_hz(speech, level), ex.openness(speech, level))
    for a, b in zip(whole, blocks, strict=True):
        assert np.array_equal(a, b)


def test_a_long_transcript_is_shared_out_among_the_pieces() -> None:
    """Each piece of a long clip gets the words spoken in it, in order, none lost, even where
    the quick recognition pass got words wrong or missed them."""
    words = [f"w{k}" for k in range(100)]  # word k spoken from k + 0.1 s to k + 0.8 s
    heard = [(w if k % 7 else "wrong", k + 0.1, k + 0.8)
             for k, w in enumerate(words) if k % 11 != 3]  # fmt: skip
    cuts = [19.9, 40.0, 59.85, 79.95]  # in the pauses
    shared = parallel.plan_words(words, cuts, heard, 100.0)
    assert shared == [words[0:20], words[20:40], words[40:60], words[60:80], words[80:100]]
    # Nothing recognised: the words are spread evenly over the clip.
    even = parallel.plan_words(words, cuts, [], 100.0)
    assert [w for part in even for w in part] == words
    assert [len(part) for part in even] == [20, 20, 20, 20, 20]


LONG_SPEECH = ("pocketsphinx_librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
               "librispeech_1995-1837-0001.wav", "ljspeech_LJ050-0131.wav",
               "pocketsphinx_librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
               "timit_sample_LDC93S1.wav", "librispeech_61-70968-0002.wav",
               "pocketsphinx_librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
               "pocketsphinx_goforward.wav",
               "pocketsphinx_librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
               "pocketsphinx_cards/005.wav",
               "pocketsphinx_librivox/sense_and_sensibility_01_austen_64kb-0930.wav")  # fmt: skip


@pytest.mark.slow
def test_a_long_transcript_aligns_piece_by_piece() -> None:
    """53 s of real speech (several speakers) with its transcript: a whole forced alignment
    fails from about 2 minutes and its memory grows with the clip, so it is aligned piece by
    piece, each piece's words placed by a quick recognition pass; the words come out in
    order."""
    from difflib import SequenceMatcher

    from a2x_core.lipsync import phones as ph

    folder = SHARED / "data" / "speech_en"
    table = folder / "transcripts.tsv"
    if not table.exists():
        pytest.skip("../shared/data/speech_en is absent")
    texts = dict(line.split("\t")[:2] for line in table.read_text(encoding="utf-8").splitlines())
    samples = np.concatenate([decode_audio(folder / name).samples for name in LONG_SPEECH])
    words, _ = ph.prepare_words(ph.normalise_transcript(" ".join(texts[n] for n in LONG_SPEECH)),
                                ph.decoder("align"))  # fmt: skip
    aligning = parallel.Aligning(samples, words, workers=1, pronunciations=ph.pronunciations(words))
    phones = aligning.result()
    assert len(aligning._pieces) > 1
    assert max(_seconds(aligning._pieces)) <= parallel.MAX_PIECE_S + 0.01
    assert [w for part in aligning._words_per_piece for w in part] == words
    spoken = [p.word for k, p in enumerate(phones) if p.word and (k == 0 or phones[k - 1].word != p.word)]
    assert SequenceMatcher(None, spoken, words, autojunk=False).ratio() > 0.9, aligning.warnings
    assert phones[-1].end_s == pytest.approx(len(samples) / RATE, abs=0.02)


# --- 2. signals: helpers die with the CLI --------------------------------------------------


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.update(children)
            todo += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_cli_with_helpers(tmp_path: Path, speech: np.ndarray) -> tuple[subprocess.Popen, set[int]]:
    """The CLI on a 2-minute clip, with pipes as a caller has them, once its helpers run."""
    import soundfile as sf

    clip = tmp_path / "long.wav"
    sf.write(clip, np.tile(speech, 11), RATE, subtype="PCM_16")
    process = subprocess.Popen(
        [sys.executable, "-m", "a2x_core", "animate", str(clip), "-o", str(tmp_path / "a.json"),
         "--threads", "2"],
        env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    helpers: set[int] = set()
    while time.monotonic() < deadline and process.poll() is None:
        helpers = _descendants(process.pid)
        if len(helpers) >= 2:
            time.sleep(1.0)  # let them start decoding
            return process, _descendants(process.pid)
        time.sleep(0.05)
    process.kill()
    process.communicate()
    pytest.fail(f"the CLI started no helper processes ({helpers}, exit {process.returncode})")


def _assert_gone(helpers: set[int], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in helpers):
        time.sleep(0.1)
    survivors = [pid for pid in helpers if _alive(pid)]
    for pid in survivors:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"helper processes {survivors} outlived the CLI"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_helpers_die_with_the_cli_and_release_its_pipes(tmp_path, speech, signum) -> None:
    """SIGTERM, SIGKILL or Ctrl-C while the workers decode: ``communicate()`` returns (no
    helper holds the pipes) and no helper survives; no output is written."""
    process, helpers = _start_cli_with_helpers(tmp_path, speech)
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _assert_gone(helpers | _descendants(process.pid))
        pytest.fail("communicate() did not return: helpers kept the CLI's pipes open")
    _assert_gone(helpers)
    # the CLI turns SIGTERM into a clean cancellation (exit 143), as Ctrl-C (130)
    expected = {signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL, signal.SIGINT: 130}
    assert process.returncode == expected[signum], stderr
    assert not (tmp_path / "a.json").exists()


@pytest.mark.slow
def test_cancel_kills_the_pieces_under_way(speech) -> None:
    """A cancelled decoding does not wait for the pieces the workers are decoding: the pool
    is stopped, and the next call starts a fresh one that works."""
    from a2x_core.errors import CancelledError
    from a2x_core.jobs import CancelToken

    token = CancelToken()
    decoding = parallel.Decoding(np.tile(speech, 4), fast=False, workers=2)
    assert decoding._futures
    pids = parallel.worker_pids()
    token.cancel()
    with pytest.raises(CancelledError):
        decoding.result(token)
    assert parallel._POOL is None
    _assert_gone(set(pids), within_s=10)
    again = parallel.Decoding(speech, fast=True, workers=2).result()
    assert any(p.label != "SIL" for p in again)


@pytest.mark.slow
def test_workers_started_by_a_background_job_outlive_its_thread(speech) -> None:
    """The parent-death signal follows the thread that started a worker; a DCC's background
    job ends its thread, and the pool it started must still serve the next job."""
    parallel.shutdown()
    parallel.decode_in_workers_only(None)
    animator = Animator("default", InferenceOptions(fps=30, blinks=False))
    first = animator.start([audio_from_array(speech[: 3 * RATE])]).result(timeout=120)[0]
    pids = parallel.worker_pids()
    assert pids
    time.sleep(2 * parallel.PARENT_POLL_S)
    assert all(_alive(pid) for pid in pids)
    second = animator.start([audio_from_array(speech[: 3 * RATE])]).result(timeout=120)[0]
    assert parallel.worker_pids() == pids
    assert np.array_equal(first.weights, second.weights)


# --- 3. options the default model does not use --------------------------------------------


def test_unknown_params_and_engine_options_warn(tmp_path) -> None:
    short = audio_from_array(decode_audio(SAMPLE, end_s=2.0).samples)
    options = InferenceOptions(parameters={"foo": 1, "input_strength": 99}, device="cuda:1",
                               precision="fp16", blinks=False)  # fmt: skip
    result = Animator("default", options).animate(short)
    joined = " | ".join(result.warnings)
    assert "--param foo, input_strength" in joined and "ignored" in joined
    assert "--device, --precision only apply to Audio2Face-3D models" in joined
    plain = Animator("default", InferenceOptions(blinks=False)).animate(short)
    assert not [w for w in plain.warnings if "--param" in w or "--device" in w]
    run = run_cli("animate", str(SAMPLE), "-o", str(tmp_path / "a.json"), "--end", "2",
                  "--param", "foo=1", "--engine", "torch")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "--param foo" in run.stderr
    assert "--engine only apply to Audio2Face-3D models" in run.stderr


def test_a_stream_names_its_own_settings_when_it_ignores_a_param() -> None:
    """A stream (a2x live, serve) has no transcript, fast mode or worker threads: its note on
    an ignored --param names the settings a stream has, not a clip's."""
    from a2x_core.lipsync.model import CLIP_SETTINGS, STREAM_SETTINGS, DefaultLipSyncModel

    stream = DefaultLipSyncModel().open_stream(InferenceOptions(parameters={"foo": 1}, blinks=False))
    joined = " | ".join(stream.warnings)
    assert "--param foo" in joined and STREAM_SETTINGS in joined
    assert "--transcript" not in joined and "--threads" not in joined
    clip = Animator("default", InferenceOptions(parameters={"foo": 1}, blinks=False)).animate(
        audio_from_array(decode_audio(SAMPLE, end_s=1.0).samples))  # fmt: skip
    assert CLIP_SETTINGS in " | ".join(clip.warnings)


# --- 4. smoothing keeps closures and blinks -----------------------------------------------


def _closures(result) -> tuple[list[float], list[float], list[float]]:
    """Per /p b m/: the strongest lip press and the smallest jaw opening beyond mouthClose;
    per /f v/: the strongest lower-lip roll."""
    press, gap, roll = [], [], []
    times = result.times_s
    for label, start, end in zip(result.arrays["phone_labels"], result.arrays["phone_start_s"],
                                 result.arrays["phone_end_s"], strict=True):  # fmt: skip
        window = (times >= start - 0.025) & (times <= end + 0.025)
        w = result.weights[window]
        if label in ("P", "B", "M"):
            press.append(float(w[:, C["mouthPressLeft"]].max()))
            gap.append(float((w[:, C["jawOpen"]] - w[:, C["mouthClose"]]).min()))
        if label in ("F", "V"):
            roll.append(float(w[:, C["mouthRollLower"]].max()))
    return press, gap, roll


def test_smoothing_keeps_bilabial_closures_and_blinks() -> None:
    """Real speech aligned to its transcript: at 0.05 s and 0.1 s of smoothing every /p b m/
    still presses and closes the lips, and every blink still closes the eyes; plain Gaussian
    smoothing (the old behaviour) loses them all."""
    animator = Animator("default", InferenceOptions(fps=30, transcript=SAMPLE_TRANSCRIPT))
    audio = decode_audio(SAMPLE)
    raw = animator.animate(audio)
    press, gap, roll = _closures(raw)  # "my", "Americans"; "fellow", "for", "of" ...
    assert len(press) >= 2 and min(press) > 0.5 and max(gap) <= 0.05
    assert len(roll) >= 3 and min(roll) > 0.3
    blink = raw.weights[:, C["eyeBlinkLeft"]]
    assert blink.max() > 0.9
    for smoothing in (0.05, 0.1):
        smooth = animator.animate(audio, smoothing_s=smoothing)
        press, gap, roll = _closures(smooth)
        assert min(press) > 0.5 and max(gap) <= 0.05 and min(roll) > 0.3, smoothing
        assert smooth.weights[:, C["eyeBlinkLeft"]].max() >= 0.95 * blink.max()
        assert smooth.weights[:, C["eyeBlinkRight"]].max() >= 0.95 * blink.max()
        # Smoothing still smooths: the jaw's frame-to-frame motion is smaller.
        jaw = smooth.weights[:, C["jawOpen"]]
        assert np.abs(np.diff(jaw)).sum() < np.abs(np.diff(raw.weights[:, C["jawOpen"]])).sum()
        plain = smooth_curves(raw.weights, Fraction(30), smoothing)
        assert plain[:, C["mouthPressLeft"]].max() < 0.5 and plain[:, C["eyeBlinkLeft"]].max() < 0.8


def test_smoothing_help_states_the_safe_range() -> None:
    help_text = _build_parser()._subparsers._group_actions[0].choices["animate"].format_help()
    assert "blinks are kept" in " ".join(help_text.split())


# --- 5. English only -----------------------------------------------------------------------

NON_EN = SHARED / "data" / "speech_non_en"


def _non_english() -> list[tuple[Path, str]]:
    table = NON_EN / "transcripts.tsv"
    if not table.exists():
        pytest.skip("../shared/data/speech_non_en is absent")
    rows = [line.split("\t") for line in table.read_text(encoding="utf-8").splitlines()[1:]]
    return [(NON_EN / row[0], row[2]) for row in rows if row and (NON_EN / row[0]).exists()]


def test_a_non_english_transcript_is_aligned_in_its_language() -> None:
    """Russian and Mandarin transcripts are kept (they used to be discarded as "no words"),
    their language is read off the script (issue 17: they used to be aligned as English with
    an "English-only" warning) and aligned with that language's pronunciations; the exported
    words are the transcript's own."""
    model = DefaultLipSyncModel()
    clips = _non_english()
    assert clips
    for path, transcript in clips:  # Russian, Mandarin
        audio = decode_audio(path)
        result = model.animate([audio], InferenceOptions(fps=30, transcript=transcript))[0]
        assert any("detected from the transcript" in w for w in result.warnings), (
            path.name, result.warnings)  # fmt: skip
        assert result.parameters["language"] in ("ru", "zh"), path.name
        assert not any("recognised the speech instead" in w for w in result.warnings)
        assert result.weights.shape[0] > 0
        words = [w for w in result.arrays["phone_words"] if w]
        assert words and set(words) <= set(ph.normalise_transcript(transcript)), path.name
    english = model.animate([decode_audio(SAMPLE, end_s=3.0)],
                            InferenceOptions(transcript="And so my fellow Americans"))[0]  # fmt: skip
    assert not any("English" in w for w in english.warnings)


def test_a_mostly_non_english_latin_transcript_warns() -> None:
    """A Latin-script transcript with few English words is not aligned as English: German
    here (issue 17; it used to warn "English-only"); forced to English, the warning stays."""
    audio = decode_audio(SAMPLE, end_s=3.0)
    text = "ich habe heute leider keine zeit für dich"
    result = DefaultLipSyncModel().animate([audio], InferenceOptions(transcript=text))[0]
    assert any("language de (German), detected from the transcript" in w
               for w in result.warnings)  # fmt: skip
    forced = DefaultLipSyncModel().animate(
        [audio], InferenceOptions(transcript=text, language="en"))[0]  # fmt: skip
    assert any("not English" in w and "--language" in w for w in forced.warnings)


def test_help_and_info_name_the_languages() -> None:
    help_text = _build_parser()._subparsers._group_actions[0].choices["animate"].format_help()
    assert "--language CODE" in help_text and "ISO 639-1" in " ".join(help_text.split())
    assert "--language" in DefaultLipSyncModel().info()["language"]
