"""Bad *input* never escapes as a traceback (issue 11 point 3): audio, options, API, worker.

Each test replays a reproducer of ``../shared/docs/reliability_fuzz.md`` (A1–A7, O1–O3, O5,
O6, W1–W4) and asserts the typed error (API), exit 2 with one ``a2x: error:`` line (CLI) or an
``error`` event of an A2XError type (worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from a2x_core import errors
from a2x_core.api import Animator, animate
from a2x_core.audio.decode import MAX_SAMPLE_MAGNITUDE, RAW_FORMATS, audio_from_array, decode_audio
from a2x_core.errors import (
    A2XError,
    AudioDecodeError,
    AudioInvalidSamplesError,
    AudioNotFoundError,
    ModelError,
    OutputError,
    ParameterError,
)
from a2x_core.export.writers import write_result
from a2x_core.inputs import read_text_file
from a2x_core.models.emotion_input import load_emotion_track, parse_parameter_args
from a2x_core.models.registry import load_model
from a2x_core.options import InferenceOptions
from a2x_core.result import AnimationResult
from tests.a2e_folders import make_emotion_folder
from tests.a2f_folders import make_regression_folder
from tests.conftest import REPO, SAMPLE, run_cli
from tests.diffusion_folders import make_diffusion_folder

LONG_NAME = "x" * 300  # one path component over the 255-byte limit
ONNX = InferenceOptions(backend="onnxruntime")  # no GPU-engine probing (a torch import)


def _clean_cli_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("a2x: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def _speech_like(seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


@pytest.fixture(scope="module")
def regression_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models") / "mark"
    make_regression_folder(root, seed=3)
    return root / "model.json"


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "ok.wav"
    sf.write(path, _speech_like(1.0), 16000)
    return path


# ----------------------------------------------------------------------------------- A1


@pytest.mark.parametrize("rate", [16000, 44100])
def test_a1_finite_but_huge_samples_are_refused(tmp_path: Path, rate: int) -> None:
    data = np.zeros(rate, np.float32)
    data[100] = 3e38
    path = tmp_path / "spike.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    with pytest.raises(AudioInvalidSamplesError) as caught:
        decode_audio(path)
    assert "spike.wav" in str(caught.value) and "re-export" in str(caught.value)
    with pytest.raises(AudioInvalidSamplesError):
        audio_from_array(data, rate)


def test_a1_cli_never_writes_nan(tmp_path: Path) -> None:
    data = np.zeros(16000, np.float32)
    data[100] = 3e38
    spike = tmp_path / "spike.wav"
    sf.write(spike, data, 16000, subtype="FLOAT")
    proc = run_cli("animate", str(spike), "-o", str(tmp_path / "a.csv"), "-q")
    _clean_cli_error(proc, "spike.wav", "beyond full scale")
    assert not (tmp_path / "a.csv").exists()


def _loud_spikes() -> np.ndarray:
    """Float audio far over full scale but just under the limit."""
    samples = _speech_like(1.0)
    samples[100] = MAX_SAMPLE_MAGNITUDE * 0.999
    samples[5000:5100] = -MAX_SAMPLE_MAGNITUDE * 0.999
    return samples


@pytest.mark.parametrize("path", ["default", "regression", "regression+a2e"])
def test_a1_headroom_up_to_the_limit_animates_finite(
    tmp_path: Path, regression_json: Path, path: str
) -> None:
    """Every value the default, regression and regression + Audio2Emotion paths produce is
    finite (the regression solver used to fail with LinAlgError on such input)."""
    model = "default" if path == "default" else regression_json
    emotion_model = None
    if path.endswith("a2e"):
        emotion_model = make_emotion_folder(tmp_path / "a2e").folder / "model.json"
    animator = Animator(model, ONNX, emotion_model)
    result = animator.animate(audio_from_array(_loud_spikes()))
    assert not result.non_finite_arrays()
    assert np.all((result.weights >= 0) & (result.weights <= 1.5))


@pytest.mark.slow
def test_a1_headroom_up_to_the_limit_animates_finite_diffusion(tmp_path: Path) -> None:
    make_diffusion_folder(tmp_path / "claire")
    result = Animator(tmp_path / "claire" / "model.json").animate(audio_from_array(_loud_spikes()))
    assert not result.non_finite_arrays()
    assert np.all((result.weights >= 0) & (result.weights <= 1.5))


def test_a1_a_model_that_breaks_down_is_a_model_error(tmp_path: Path) -> None:
    """A model whose network yields NaN: a ModelError naming the model, not LinAlgError."""
    make_regression_folder(tmp_path / "nan", seed=3, bias=np.full(29, np.nan, np.float32))
    animator = Animator(tmp_path / "nan" / "model.json", ONNX)
    with pytest.raises(ModelError, match="NaN"):
        animator.animate(audio_from_array(_speech_like(1.0)))


@pytest.mark.parametrize("suffix", [".json", ".csv", ".npz"])
def test_a1_no_exporter_writes_nan(tmp_path: Path, suffix: str) -> None:
    weights = np.zeros((10, 52), np.float32)
    weights[3, 5] = np.nan
    result = AnimationResult(weights=weights, fps=Fraction(30))
    target = tmp_path / f"out{suffix}"
    with pytest.raises(OutputError, match="NaN") as caught:
        write_result(result, target)
    assert "weights" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp file


# ----------------------------------------------------------------------------------- A2


def test_a2_headerless_raw_needs_rate_and_format(tmp_path: Path) -> None:
    raw = tmp_path / "x.raw"
    raw.write_bytes(os.urandom(1000))
    with pytest.raises(AudioDecodeError, match="--raw-rate") as caught:
        decode_audio(raw)
    assert "x.raw" in str(caught.value) and "--raw-format" in str(caught.value)
    with pytest.raises(ParameterError, match="--raw-format is missing"):
        decode_audio(raw, raw_rate=16000)
    with pytest.raises(ParameterError, match="raw_format='mp3' is unknown"):
        decode_audio(raw, raw_rate=16000, raw_format="mp3")
    with pytest.raises(ParameterError, match="raw_rate"):
        decode_audio(raw, raw_rate=0, raw_format="s16le")
    proc = run_cli("animate", str(raw), "-o", str(tmp_path / "a.json"), "-q")
    _clean_cli_error(proc, "x.raw", "--raw-rate")
    pcm = tmp_path / "x.pcm"  # a name soundfile does not know: the hint still says how
    pcm.write_bytes(os.urandom(1000))
    with pytest.raises(AudioDecodeError, match="--raw-rate"):
        decode_audio(pcm)


@pytest.mark.parametrize("name", ["s16le", "s24be", "f32le", "u8"])
def test_a2_raw_formats_decode_like_the_wav(tmp_path: Path, name: str) -> None:
    samples = _speech_like(0.5, 22050)
    wav = tmp_path / "ref.wav"
    subtype, endian = RAW_FORMATS[name]
    sf.write(wav, samples, 22050, subtype=subtype)
    raw = tmp_path / "ref.pcm"
    sf.write(raw, samples, 22050, format="RAW", subtype=subtype, endian=endian)
    got = decode_audio(raw, raw_rate=22050, raw_format=name)
    want = decode_audio(wav)
    np.testing.assert_array_equal(got.samples, want.samples)
    assert got.source_rate == 22050


def test_a2_cli_raw_flags(tmp_path: Path) -> None:
    pcm = (_speech_like(1.0, 8000) * 32767).astype("<i2")
    raw = tmp_path / "line.raw"
    raw.write_bytes(pcm.tobytes())
    out = tmp_path / "a.json"
    proc = run_cli("animate", str(raw), "-o", str(out), "--raw-rate", "8000",
                   "--raw-format", "s16le", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["numFrames"] == 60


# ----------------------------------------------------------------------------------- A3, A4


def test_a3_damaged_frame_count_is_not_trusted(tmp_path: Path) -> None:
    """An MP3 whose Xing header claims 2**31 frames (4.5 TiB as one float32 read) decodes
    what is there."""
    ok = tmp_path / "ok.mp3"
    sf.write(ok, 0.3 * np.sin(np.arange(32000) / 16000 * 2 * np.pi * 220), 16000,
             format="MP3", subtype="MPEG_LAYER_III")  # fmt: skip
    data = bytearray(ok.read_bytes())
    xing = data.find(b"Xing")
    assert xing > 0
    data[xing + 8 : xing + 12] = (0x7FFFFFFF).to_bytes(4, "big")
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(bytes(data))
    with sf.SoundFile(str(bad)) as handle:
        assert handle.frames > 10**9  # the header does lie
    audio = decode_audio(bad)
    assert abs(audio.duration_s - 2.0) < 0.1


def test_a4_absurd_header_rate_is_refused(tmp_path: Path) -> None:
    """A 16 KB WAV whose header says 1 Hz would decode to 8,000 s of audio."""
    path = tmp_path / "one_hz.wav"
    sf.write(path, np.zeros(8000, np.int16), 1, subtype="PCM_16")
    with pytest.raises(AudioDecodeError, match="1 Hz") as caught:
        decode_audio(path)
    assert "one_hz.wav" in str(caught.value)


def test_a4_block_decoding_equals_one_shot_resampling(tmp_path: Path) -> None:
    """Decoding in blocks (several here) gives exactly the samples of resampling the whole
    signal at once, and a time range reads only that range."""
    import soxr

    rate = 44100
    stereo = np.stack([_speech_like(7.0, rate), _speech_like(7.0, rate)[::-1]], axis=1)
    path = tmp_path / "long.wav"
    sf.write(path, stereo, rate, subtype="FLOAT")
    want = soxr.resample(stereo.mean(axis=1).astype(np.float32), rate, 16000, quality="HQ")
    np.testing.assert_array_equal(decode_audio(path).samples, want)
    part = decode_audio(path, start_s=2.0, end_s=5.0)
    assert part.start_s == 2.0 and abs(part.duration_s - 3.0) < 1e-3


# ----------------------------------------------------------------------------------- A5, A6


def test_a5_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "p.wav"
    os.mkfifo(fifo)
    proc = run_cli("animate", str(fifo), "-o", str(tmp_path / "a.json"), "-q", timeout=60)
    _clean_cli_error(proc, "p.wav", "FIFO")
    with pytest.raises(AudioDecodeError, match="FIFO"):
        decode_audio(fifo)
    with pytest.raises(AudioDecodeError, match="device"):
        decode_audio("/dev/zero")


def test_a5_fifo_as_a_model_is_refused_at_once(tmp_path: Path, regression_json: Path) -> None:
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="FIFO"):
        load_model(fifo)
    with pytest.raises(ModelError, match="FIFO"):
        Animator(regression_json, ONNX, emotion_model=fifo)


def test_a6_over_long_paths_are_typed(tmp_path: Path, regression_json: Path) -> None:
    long_path = tmp_path / f"{LONG_NAME}.wav"
    with pytest.raises(AudioNotFoundError, match="too long"):
        decode_audio(long_path)
    with pytest.raises(ModelError, match="too long"):
        Animator(tmp_path / LONG_NAME / "model.json")
    with pytest.raises(ModelError, match="too long"):
        Animator(regression_json, ONNX, tmp_path / LONG_NAME / "model.json")
    with pytest.raises(ModelError, match="too long"):
        load_model(tmp_path / LONG_NAME)  # what `a2x info` and the worker load through
    with pytest.raises(ParameterError, match="too long"):
        load_emotion_track(tmp_path / f"{LONG_NAME}.json")
    with pytest.raises(ParameterError, match="too long"):
        read_text_file(tmp_path / f"{LONG_NAME}.txt", what="transcript", flag="--transcript-file")
    proc = run_cli("animate", str(long_path), "-o", str(tmp_path / "a.json"), "-q")
    _clean_cli_error(proc, "too long")


# ----------------------------------------------------------------------------------- A7


@pytest.mark.parametrize("rate", [0, -1, 0.5, float("nan"), "abc", 2**63 - 1, True, None])
def test_a7_array_sample_rate_is_checked(rate: Any) -> None:
    with pytest.raises(ParameterError, match="sample_rate"):
        audio_from_array(np.zeros(16000, np.float32), rate)


@pytest.mark.parametrize(
    "samples",
    [np.zeros(16000, np.complex64), np.array(["0.1"] * 16000), np.zeros(16000, bool),
     np.array([object()] * 16000)],
    ids=["complex", "text", "bool", "object"],
)  # fmt: skip
def test_a7_non_real_samples_are_refused(samples: np.ndarray) -> None:
    with pytest.raises(AudioDecodeError, match="not audio"):
        audio_from_array(samples, 16000)


def test_a7_unsigned_pcm_is_centred() -> None:
    pcm = (128 + np.round(100 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 5))).astype(np.uint8)
    audio = audio_from_array(pcm, 16000)
    assert abs(float(np.mean(audio.samples))) < 1e-3  # no +0.5 DC offset
    assert 0.75 < float(np.max(audio.samples)) < 0.8
    assert audio_from_array(np.zeros(16000, np.float32), 44100.0).source_rate == 44100


# ----------------------------------------------------------------------------------- O1–O3


def _run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from a2x_core.cli import main

    code = main(list(args))
    return code, capsys.readouterr().err


def test_o1_deep_json_is_typed(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 60000 + "]" * 60000
    with pytest.raises(ParameterError, match="too deeply"):
        parse_parameter_args([f"input_strength={deep}"])
    with pytest.raises(ParameterError, match="levels deep"):
        parse_parameter_args(["x=" + "[" * 40 + "1" + "]" * 40], flag="--emotion-param")
    track = tmp_path / "deep.json"
    track.write_text('{"keys": ' + deep + "}")
    with pytest.raises(ParameterError, match="deep.json"):
        load_emotion_track(track)
    huge_field = tmp_path / "deep.csv"  # beyond the csv module's field limit
    huge_field.write_text("time_s,joy\n0," + "9" * 140_000 + "\n")
    with pytest.raises(ParameterError, match="deep.csv: not a readable CSV"):
        load_emotion_track(huge_field)
    nested: Any = 1
    for _ in range(100):
        nested = [nested]
    with pytest.raises(ParameterError, match="parameters"):
        InferenceOptions(parameters={"input_strength": nested})
    code, err = _run_main(capsys, "animate", str(clip), "-o", str(tmp_path / "a.json"),
                          "--emotion-param", f"emotion_strength={deep}")  # fmt: skip
    assert code == 2 and "--emotion-param emotion_strength" in err


@pytest.mark.parametrize(
    ("name", "data"),
    [("latin1.txt", "caf\xe9 ask not\n".encode("latin-1")),
     ("utf16.txt", "ask not".encode("utf-16")), ("binary.txt", bytes(range(256)))],
)  # fmt: skip
def test_o2_non_utf8_text_files_are_typed(
    tmp_path: Path, clip: Path, name: str, data: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / name
    text.write_bytes(data)
    code, err = _run_main(capsys, "animate", str(clip), "-o", str(tmp_path / "a.json"),
                          "--transcript-file", str(text))  # fmt: skip
    assert code == 2 and "not UTF-8" in err and name in err
    track = tmp_path / "emotions.json"
    track.write_bytes(data)
    with pytest.raises(ParameterError, match="not UTF-8"):
        load_emotion_track(track)
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize(
    "flags",
    [["--start", "1e308"], ["--end", "1e308"], ["--seed", "-1"], ["--threads", "1000000000"],
     ["--start", "1e5"]],
)  # fmt: skip
def test_o3_huge_numbers_on_the_cli_are_typed(
    tmp_path: Path, clip: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run_main(capsys, "animate", str(clip), "-o", str(tmp_path / "a.json"), *flags)
    assert code == 2, err
    assert err.startswith("a2x: error: ")
    flag = flags[0].lstrip("-")
    assert flag in err or "past the end" in err
    if flag == "threads":
        assert "threads" in err and "network.onnx" not in err


@pytest.mark.parametrize("time_s", ["1e308", "9" * 400, "-1e308", '"1"', "true"])
def test_o3_emotion_key_times_are_typed(tmp_path: Path, time_s: str) -> None:
    track = tmp_path / "emotions.json"
    track.write_text(f'{{"keys": [{{"time_s": {time_s}, "emotions": {{"joy": 0.5}}}}]}}')
    with pytest.raises(ParameterError, match="key time") as caught:
        load_emotion_track(track)
    assert len(str(caught.value)) < 300  # a 400-digit number is shortened


def test_o3_emotion_values_too_large_for_a_float(tmp_path: Path) -> None:
    track = tmp_path / "emotions.json"
    track.write_text(f'{{"keys": [{{"time_s": 0, "emotions": {{"joy": {"9" * 400}}}}}]}}')
    with pytest.raises(ParameterError, match="joy"):
        load_emotion_track(track)


# ----------------------------------------------------------------------------------- O5, O6


@pytest.mark.parametrize(
    ("field", "value"),
    [("strength", "x"), ("strength", None), ("smoothing_s", "0.1"), ("start_s", "x"),
     ("end_s", [1]), ("start_s", 10**400), ("device", None), ("device", 0),
     ("device", "cuda:abc"), ("device", "cuda:"), ("backend", None), ("precision", 16),
     ("threads", "2"), ("threads", float("nan")), ("threads", float("inf")), ("threads", 1e30),
     ("threads", 1.5), ("threads", True), ("threads", 10**6), ("parameters", "x"),
     ("parameters", [("a", 1)]), ("parameters", {1: 2}), ("emotions", [1, 2]),
     ("emotions", "joy"), ("emotions", [(0, "joy")]), ("emotions", [("x", {"joy": 1})]),
     ("emotions", [(1e308, {"joy": 1})]), ("emotions", [(0, {"joy": "high"})]),
     ("emotions", {"joy": 1}), ("seed", "abc"), ("seed", 1.5), ("seed", -1), ("seed", None),
     ("seed", 2**64), ("seed", True), ("fast", "yes"), ("blinks", 1), ("geometry", None),
     ("compile_network", "true"), ("transcript", 5), ("emotion_mix", ["blend"]),
     ("emotion_parameters", "x"), ("emotion_window", 1.5), ("identity", 5), ("fps", True),
     ("fps", None)],
)  # fmt: skip
def test_o6_every_option_field_is_type_checked(field: str, value: Any) -> None:
    with pytest.raises(ParameterError) as caught:
        InferenceOptions(**{field: value})
    assert field in str(caught.value)


def test_o6_valid_values_are_normalised() -> None:
    options = InferenceOptions(threads=np.int64(4), seed=np.uint32(7), strength=np.float32(0.5),
                               device="cuda:1", emotions=[[0, {"joy": 1}]], start_s=1)  # fmt: skip
    assert type(options.threads) is int and type(options.seed) is int
    assert type(options.strength) is float and options.start_s == 1.0
    assert options.emotions == ((0, {"joy": 1}),)
    with pytest.raises(ParameterError, match="unknown option"):
        options.with_changes(strenght=1.0)
    with pytest.raises(ParameterError, match="unknown option"):
        animate(SAMPLE, fsp=30)


@pytest.mark.parametrize("model", [None, 5, [], {}, 1.5, object()], ids=repr)
def test_o5_animator_refuses_a_non_model_at_construction(model: Any) -> None:
    with pytest.raises(ParameterError, match="model must be"):
        Animator(model)


def test_o5_animator_checks_its_other_arguments(regression_json: Path) -> None:
    with pytest.raises(ParameterError, match="options must be"):
        Animator("default", {"fps": 30})  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="emotion_model must be"):
        Animator(regression_json, ONNX, emotion_model=5)  # type: ignore[arg-type]
    animator = Animator("default")
    with pytest.raises(ParameterError, match="list of audio paths"):
        animator.animate_many(str(SAMPLE))  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="must be a path"):
        animator.animate_many([5])  # type: ignore[list-item]


def test_o5_time_range_applies_to_decoded_audio(tmp_path: Path, regression_json: Path) -> None:
    """start_s/end_s with an ``Audio`` object: applied (not ignored), in seconds of the
    source, giving what decoding that range gives."""
    path = tmp_path / "line.wav"
    sf.write(path, _speech_like(3.0), 16000)
    animator = Animator(regression_json, InferenceOptions(fps=30, backend="onnxruntime"))
    whole = decode_audio(path)
    ranged = animator.animate(whole, start_s=0.5, end_s=2.0)
    decoded = animator.animate(decode_audio(path, start_s=0.5, end_s=2.0), start_s=0.5, end_s=2.0)
    assert ranged.start_s == 0.5 and abs(ranged.duration_s - 1.5) < 1e-6
    np.testing.assert_array_equal(ranged.weights, decoded.weights)
    assert animator.animate(whole).num_frames == 90
    with pytest.raises(ParameterError, match="past the end"):
        animator.animate(whole, start_s=5.0)


# ----------------------------------------------------------------------------------- W1–W4


def _serve_many(requests: list[str], close_stdin: bool = True) -> list[tuple[list[dict], int]]:
    """Run one worker per request at once; stdin closes after the request."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-m", "a2x_core.worker"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in requests
    ]  # fmt: skip
    answers = []
    for proc, request in zip(procs, requests, strict=True):
        out, err = proc.communicate(request + "\n", timeout=120)
        assert "Traceback" not in err, err
        answers.append(([json.loads(line) for line in out.splitlines()], proc.returncode))
    return answers


_BAD_REQUESTS = [
    "[1]", "5", '"animate"', "null", "true", "[" * 100000 + "]" * 100000,
    '{"command": ' + "[" * 50 + "]" * 50 + "}",
    '{"command": "info", "options": []}', '{"command": "info", "options": null}',
    '{"command": "info", "options": {"strength": "x"}}',
    '{"command": "info", "options": {"smoothing_s": null}}',
    '{"command": "info", "options": {"start_s": "1"}}',
    '{"command": "info", "options": {"threads": "2"}}',
    '{"command": "info", "options": {"device": 0}}',
    '{"command": "info", "options": {"emotions": 5}}',
    '{"command": "info", "options": {"emotions": ["x", {}]}}',
    '{"command": "info", "options": {"emotions": [[0]]}}',
    '{"command": "info", "options": {"parameters": [1]}}',
    '{"command": "info", "options": {"seed": "abc"}}',
    '{"command": "info", "options": {"seed": 1.5}}',
    '{"command": "info", "model": null}', '{"command": "info", "model": 5}',
    '{"command": "info", "model": ["default"]}', '{"command": 5}',
    '{"command": "info", "emotion_model": 5}', '{"command": "animate", "audio": 5}',
    '{"command": "animate", "audio": [5]}', '{"protocol": true, "command": "info"}',
]  # fmt: skip


#: One request of each class (W1 list, W2 nesting, W3 wrong type, W4 seed and protocol).
_REPRESENTATIVE = [_BAD_REQUESTS[i] for i in (0, 5, 9, 19, 25, 27)]


def _assert_typed_error_events(requests: list[str]) -> None:
    for request, (events, code) in zip(requests, _serve_many(requests), strict=True):
        shown = request[:60]
        assert events[0]["event"] == "hello", shown
        last = events[-1]
        assert last["event"] == "error", (shown, last)
        kind = getattr(errors, last["type"], None)
        assert isinstance(kind, type) and issubclass(kind, A2XError), (shown, last)
        assert code == 2, (shown, last)


def test_w1_w4_malformed_requests_are_typed_error_events() -> None:
    _assert_typed_error_events(_REPRESENTATIVE)


@pytest.mark.slow
def test_w1_w4_every_malformed_request_of_the_fuzz_run() -> None:
    _assert_typed_error_events([r for r in _BAD_REQUESTS if r not in _REPRESENTATIVE])


def test_worker_reports_the_real_error_when_stdin_closes(tmp_path: Path) -> None:
    """A client that writes its request and closes stdin hears about the missing audio, not
    a CancelledError."""
    request = json.dumps({"command": "animate", "model": "default",
                          "audio": [str(tmp_path / "missing.wav")], "options": {}})  # fmt: skip
    ((events, code),) = _serve_many([request])
    assert events[-1]["event"] == "error" and events[-1]["type"] == "AudioNotFoundError"
    assert "missing.wav" in events[-1]["message"] and code == 2


def test_worker_options_keep_every_emotion_key() -> None:
    """Over 100 keys (a per-frame track) travel in full: exports summarise them as a string,
    which the worker would refuse."""
    from a2x_core.worker import options_from_json, options_to_json

    keys = tuple((i / 30, {"joy": (i % 10) / 10}) for i in range(150))
    options = InferenceOptions(emotions=keys)
    assert options_from_json(json.loads(json.dumps(options_to_json(options)))) == options


@pytest.mark.parametrize(
    "keywords", [{"threads": 10**9}, {"threads": "2"}, {"device": "cuda:abc"}, {"backend": None}]
)
def test_o5_load_model_checks_its_engine_keywords(regression_json: Path, keywords: dict) -> None:
    """``load_model``'s keywords get the options' checks (threads bounded, so 10**9 threads
    are not reported as a broken network.onnx)."""
    with pytest.raises(ParameterError, match=next(iter(keywords))):
        load_model(regression_json, **{"backend": "onnxruntime", **keywords})
