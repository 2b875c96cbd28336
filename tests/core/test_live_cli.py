"""``a2x live`` end to end in subprocesses: the file source (the microphone's code path) at
full speed, stdin PCM, Live Link packets on a loopback socket, the recorded take against
``a2x animate`` of the same audio, and the typed errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from a2x_core.audio.decode import decode_audio
from a2x_core.live.outputs import (
    LIVELINK_PACKET_NAMES,
    PERFECT_SYNC_52,
    VMC_BLEND_APPLY,
    VMC_BLEND_VALUE,
    decode_livelink,
    decode_osc,
)
from a2x_core.names import ARKIT_52
from tests.a2e_folders import make_emotion_folder
from tests.a2f_folders import make_regression_folder
from tests.conftest import REPO, SAMPLE, run_cli


@pytest.fixture(scope="module")
def regression_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_regression_folder(tmp_path_factory.mktemp("live") / "model", seed=3).model_json


def _weights(path: Path) -> np.ndarray:
    return np.asarray(json.loads(path.read_text())["weightMat"], dtype=np.float64)


def _animate(tmp_path: Path, *args: str) -> np.ndarray:
    out = tmp_path / "offline.json"
    done = run_cli("animate", *args, "-o", str(out), "-q", "--engine", "onnxruntime")
    assert done.returncode == 0, done.stderr
    return _weights(out)


class _Listener:
    """A UDP socket on 127.0.0.1 that collects every datagram on a thread while the CLI runs."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # VMC: ~2.5 kB/frame
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(self.socket.recv(65536))
            except TimeoutError:
                continue

    def close(self) -> list[bytes]:
        self._stop.set()
        self._thread.join()
        self.socket.close()
        return self.packets


@pytest.mark.slow
def test_default_model_file_source_jsonl_and_record(tmp_path: Path) -> None:
    jsonl, take = tmp_path / "frames.jsonl", tmp_path / "take.json"
    done = run_cli("live", "--source", str(SAMPLE), "--as-fast-as-possible", "--jsonl", str(jsonl),
                   "--record", str(take), "--fps", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    recorded = _weights(take)
    assert [line["index"] for line in lines] == list(range(len(lines)))
    assert len(recorded) == len(lines)
    assert lines[-1]["time_s"] == pytest.approx((len(lines) - 1) / 30)
    # The default model's stream differs from its offline run in values, not in frame count.
    assert len(_animate(tmp_path, str(SAMPLE), "--fps", "30")) == len(lines)
    assert np.allclose([line["weights"]["jawOpen"] for line in lines],
                       recorded[:, ARKIT_52.index("jawOpen")], atol=1e-6)  # fmt: skip
    assert "latency p50" in done.stderr and f"{len(lines)} sent" in done.stderr


def test_language_streams_the_phone_loop_like_animate(tmp_path: Path) -> None:
    """``a2x live --language de``: the default model streams the language-independent phone
    loop, the path ``a2x animate --language de`` takes (no transcript): the same frame count
    and jaw, other closures than the English word stream, the language in the take."""
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, decode_audio(SAMPLE).samples[: 5 * 16000], 16000)
    takes = {}
    for language in ("de", "en"):
        take = tmp_path / f"take_{language}.json"
        done = run_cli("live", "--source", str(clip), "--as-fast-as-possible", "--language",
                       language, "--record", str(take), "--fps", "30", "--no-blinks")  # fmt: skip
        assert done.returncode == 0, done.stderr
        route = "language-independent phone loop" if language == "de" else "English word recognition"
        assert f"live: language {language}: {route}" in done.stderr  # said before the take
        takes[language] = _weights(take)
    assert json.loads((tmp_path / "take_de.json").read_text())["a2x"]["options"]["language"] == "de"
    offline = _animate(tmp_path, str(clip), "--language", "de", "--fps", "30", "--no-blinks")
    jaw = ARKIT_52.index("jawOpen")
    assert takes["de"].shape == offline.shape
    assert np.corrcoef(takes["de"][:, jaw], offline[:, jaw])[0, 1] > 0.8
    assert not np.allclose(takes["de"], takes["en"], atol=0.05)


def test_regression_record_equals_animate_and_livelink_packets(
    tmp_path: Path, regression_json: Path
) -> None:
    listener, vmc = _Listener(), _Listener()
    take = tmp_path / "take.json"
    try:
        done = run_cli("live", "--source", str(SAMPLE), "--as-fast-as-possible", "--model",
                       str(regression_json), "--engine", "onnxruntime", "--fps", "30",
                       "--livelink", f"127.0.0.1:{listener.port}", "--record", str(take),
                       "--vmc", f"127.0.0.1:{vmc.port}")  # fmt: skip
    finally:
        packets, bundles = listener.close(), vmc.close()
    assert done.returncode == 0, done.stderr
    recorded = _weights(take)
    offline = _animate(tmp_path, str(SAMPLE), "--model", str(regression_json), "--fps", "30")
    assert recorded.shape == offline.shape
    assert np.abs(recorded - offline).max() <= 1e-5
    decoded = [decode_livelink(packet) for packet in packets]
    assert [d["frame_number"] for d in decoded] == list(range(len(recorded)))
    assert {(d["rate_numerator"], d["rate_denominator"]) for d in decoded} == {(30, 1)}
    column = {name.lower(): i for i, name in enumerate(ARKIT_52)}
    for d in decoded[::25]:
        row = recorded[d["frame_number"]]
        for name in LIVELINK_PACKET_NAMES[:52]:
            assert d["curves"][name] == pytest.approx(row[column[name.lower()]], abs=1e-6)
    assert len(bundles) == len(recorded)
    for index in (0, len(bundles) // 2, len(bundles) - 1):
        messages = decode_osc(bundles[index])
        values = {args[0]: args[1] for address, _, args in messages if address == VMC_BLEND_VALUE}
        assert list(values) == list(PERFECT_SYNC_52) and messages[-1][0] == VMC_BLEND_APPLY
        for name, value in values.items():
            assert value == pytest.approx(recorded[index, column[name.lower()]], abs=1e-6)


def test_stdin_pcm_equals_the_same_raw_file(tmp_path: Path, regression_json: Path) -> None:
    pcm = (np.clip(decode_audio(SAMPLE).samples[:48000], -1, 1) * 32767).astype("<i2").tobytes()
    raw = tmp_path / "speech.raw"
    raw.write_bytes(pcm)
    jsonl, take = tmp_path / "frames.jsonl", tmp_path / "take.npz"
    done = subprocess.run(
        [sys.executable, "-m", "a2x_core", "live", "--source", "-", "--raw-rate", "16000",
         "--raw-format", "s16le", "--model", str(regression_json), "--engine", "onnxruntime",
         "--fps", "30", "--jsonl", str(jsonl), "--record", str(take)],
        input=pcm, capture_output=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    with np.load(take) as arrays:
        recorded = arrays["weights"]
    offline = _animate(tmp_path, str(raw), "--raw-rate", "16000", "--raw-format", "s16le",
                       "--model", str(regression_json), "--fps", "30")  # fmt: skip
    assert len(jsonl.read_text().splitlines()) == len(recorded) == len(offline)
    assert np.abs(recorded - offline).max() <= 1e-5


def test_ctrl_c_stops_cleanly_with_the_tail_and_the_record(
    tmp_path: Path, regression_json: Path
) -> None:
    """Real-time pace, SIGINT once frames flow: the stream is closed (its tail frames sent), the
    take written, exit 130; the take equals the offline run of the audio received."""
    jsonl, take = tmp_path / "frames.jsonl", tmp_path / "take.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "a2x_core", "live", "--source", str(SAMPLE), "--model",
         str(regression_json), "--engine", "onnxruntime", "--fps", "30", "--jsonl", str(jsonl),
         "--record", str(take)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while process.poll() is None and (
            not jsonl.exists() or len(jsonl.read_text().splitlines()) < 15
        ):
            threading.Event().wait(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    received = float(stderr.split(" frames from ")[1].split(" s of audio")[0])
    assert 0 < received < 10  # stopped well before the clip's 11 s
    recorded = _weights(take)
    assert len(jsonl.read_text().splitlines()) == len(recorded)
    offline = _animate(tmp_path, str(SAMPLE), "--end", f"{received:.2f}", "--model",
                       str(regression_json), "--fps", "30")  # fmt: skip
    assert recorded.shape == offline.shape
    assert np.abs(recorded - offline).max() <= 1e-5


def test_emotion_model_take_equals_animate(tmp_path: Path, regression_json: Path) -> None:
    """--emotion-model on a live take: Audio2Emotion streams beside the face and its keys
    drive it as offline (the face waits for them)."""
    a2e = make_emotion_folder(tmp_path / "a2e").model_json
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, decode_audio(SAMPLE).samples[:64000], 16000, subtype="FLOAT")
    take = tmp_path / "take.npz"
    common = ("--model", str(regression_json), "--emotion-model", str(a2e), "--fps", "30")
    done = run_cli("live", "--source", str(clip), "--as-fast-as-possible", "--engine",
                   "onnxruntime", "--record", str(take), *common)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with np.load(take) as arrays:
        recorded, emotions = arrays["weights"], arrays["emotions"]
    offline = _animate(tmp_path, str(clip), *common)
    assert recorded.shape == offline.shape
    assert np.abs(recorded - offline).max() <= 1e-5
    assert np.ptp(emotions, axis=0).max() > 0.01  # detected, not the default
    done = run_cli("live", "--source", str(clip), "--emotion", "joy=1", *common)
    assert done.returncode == 2 and "--emotion" in done.stderr


def test_bad_input_is_a_typed_error_and_nothing_is_clobbered(tmp_path: Path) -> None:
    done = run_cli("live", "--source", "-", "--raw-format", "s16le")
    assert done.returncode == 2 and "--raw-rate is missing" in done.stderr
    done = run_cli("live", "--source", "-", "--raw-rate", "16000", "--raw-format", "s17le")
    assert done.returncode == 2 and "s17le" in done.stderr
    take = tmp_path / "take.json"
    take.write_text("the artist's take")
    done = run_cli("live", "--source", str(SAMPLE), "--as-fast-as-possible", "--record", str(take))
    assert done.returncode == 2 and str(take) in done.stderr
    assert take.read_text() == "the artist's take"
    done = run_cli("live", "--source", str(tmp_path / "missing.wav"), "--as-fast-as-possible")
    assert done.returncode == 2 and "missing.wav" in done.stderr


def _sounddevice_usable() -> bool:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def test_microphone_without_portaudio_says_what_to_install(tmp_path: Path) -> None:
    """sounddevice raises OSError at import when the PortAudio library is missing; a module of
    that name doing the same stands in for a machine without it (this one has it)."""
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    done = subprocess.run(
        [sys.executable, "-m", "a2x_core", "live", "--jsonl", "-"], capture_output=True,
        text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}"),
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "libportaudio2" in done.stderr and "a2x[live]" in done.stderr
    assert "Traceback" not in done.stderr


#: ALSA's file plugin as PortAudio devices: ``a2xmic`` captures the bytes of ``infile`` (as
#: fast as they are read: the null slave has no clock), ``a2xspk`` writes what is played.
_ASOUNDRC = """
pcm.a2xmic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{mic}"; format "raw" }}
pcm.a2xspk {{ type file; slave.pcm "null"; file "{speaker}"; format "raw" }}
"""


def virtual_sound_devices(home: Path, mic_samples: np.ndarray) -> dict[str, str]:
    """An environment whose ALSA configuration (``$HOME/.asoundrc``) holds a virtual
    microphone playing ``mic_samples`` (float32 at the device's 44.1 kHz) and a virtual speaker
    writing ``home/speaker.raw``; skips when PortAudio is not installed."""
    if not _sounddevice_usable():
        pytest.skip("sounddevice/PortAudio not installed (make test installs libportaudio2)")
    home.mkdir(parents=True, exist_ok=True)
    mic = home / "mic.raw"
    mic.write_bytes(np.asarray(mic_samples, dtype="<f4").tobytes())
    (home / ".asoundrc").write_text(_ASOUNDRC.format(mic=mic, speaker=home / "speaker.raw"))
    return dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))


def test_microphone_path_through_portaudio_equals_animate(
    tmp_path: Path, regression_json: Path
) -> None:
    """The real microphone code (PortAudio input stream, callback, queue) on a virtual ALSA
    device: 3 s captured at the device's 44.1 kHz equal ``a2x animate`` of the same samples."""
    import soxr

    speech = soxr.resample(decode_audio(SAMPLE).samples[:64000], 16000, 44100).astype(np.float32)
    env = virtual_sound_devices(tmp_path / "home", speech)
    take = tmp_path / "take.npz"
    done = subprocess.run(
        [sys.executable, "-m", "a2x_core", "live", "--device", "a2xmic", "--duration", "3",
         "--model", str(regression_json), "--engine", "onnxruntime", "--fps", "30",
         "--record", str(take)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    captured = tmp_path / "captured.wav"
    soundfile.write(captured, speech[:3 * 44100], 44100, subtype="FLOAT")
    with np.load(take) as arrays:
        recorded = arrays["weights"]
    offline = _animate(tmp_path, str(captured), "--model", str(regression_json), "--fps", "30")
    assert recorded.shape == offline.shape == (90, 52)
    assert np.abs(recorded - offline).max() <= 1e-5


def test_delay_audio_plays_the_input_late_on_an_output_device(tmp_path: Path) -> None:
    """--delay-audio through PortAudio on a virtual ALSA speaker: what was played is the
    input after exactly the asked delay of silence, and the take ran as usual."""
    env = virtual_sound_devices(tmp_path / "home", np.zeros(16, np.float32))
    clip = tmp_path / "clip.wav"
    speech = decode_audio(SAMPLE).samples[:32000]
    soundfile.write(clip, speech, 16000, subtype="FLOAT")
    done = subprocess.run(
        [sys.executable, "-m", "a2x_core", "live", "--source", str(clip), "--as-fast-as-possible",
         "--delay-audio", "250", "--audio-out", "a2xspk", "--jsonl", str(tmp_path / "f.jsonl")],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "played back 250 ms late" in done.stderr
    played = np.frombuffer((tmp_path / "home" / "speaker.raw").read_bytes(), dtype="<f4")
    assert len(played) >= 4000 + len(speech)
    assert not played[:4000].any()
    np.testing.assert_array_equal(played[4000:4000 + len(speech)], speech)
    done = run_cli("live", "--source", str(clip), "--audio-out", "a2xspk")
    assert done.returncode == 2 and "--delay-audio" in done.stderr


def test_preview_of_a_take_has_the_sound_that_was_heard(tmp_path: Path) -> None:
    """``live --preview``: an MP4 of the take with both streams, as long as the audio heard
    (here stdin PCM: no file the preview could take the sound from)."""
    av = pytest.importorskip("av")
    pcm = (np.clip(decode_audio(SAMPLE).samples[:40000], -1, 1) * 32767).astype("<i2").tobytes()
    video = tmp_path / "take.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "a2x_core", "live", "--source", "-", "--raw-rate", "16000",
         "--raw-format", "s16le", "--fps", "30", "--preview", str(video)],
        input=pcm, capture_output=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    with av.open(str(video)) as container:
        assert container.streams.video and container.streams.audio
        audio = container.streams.audio[0]
        heard = sum(frame.samples for frame in container.decode(audio=0)) / audio.rate
    assert heard == pytest.approx(2.5, abs=0.05)
    video.write_bytes(b"the artist's cut")
    done = subprocess.run(
        [sys.executable, "-m", "a2x_core", "live", "--source", "-", "--raw-rate", "16000",
         "--raw-format", "s16le", "--preview", str(video)],
        input=pcm, capture_output=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and video.read_bytes() == b"the artist's cut"


def test_block_ms_sets_the_source_block_and_is_checked() -> None:
    """``--block-ms``: a frame waits up to one block for its audio, so shorter blocks lower
    the latency; the file source hands over blocks of that length; out of range is exit 2."""
    from a2x_core.errors import ParameterError
    from a2x_core.live.runner import BLOCK_S, check_block_ms, open_source

    for block_ms, size in ((10, 160), (20, 320)):
        blocks = open_source(str(SAMPLE), real_time=False, block_s=check_block_ms(block_ms))
        lengths = [len(samples) for samples, _ in blocks]
        assert set(lengths[:-1]) == {size} and sum(lengths) == len(decode_audio(SAMPLE).samples)
    # the default (10 ms: the latency targets of docs/live.md need it) is one value everywhere
    default = {len(samples) for samples, _ in open_source(str(SAMPLE), real_time=False)}
    assert max(default) == round(BLOCK_S * 16000) == 160
    assert "default 10;" in run_cli("live", "--help").stdout
    with pytest.raises(ParameterError, match="--block-ms 2 is not 5..100 ms"):
        check_block_ms(2)
    done = run_cli("live", "--source", str(SAMPLE), "--as-fast-as-possible", "--block-ms", "500")
    assert done.returncode == 2 and "--block-ms 500" in done.stderr


def test_int8_take_is_close_to_fp32_and_refused_where_it_does_not_apply(
    tmp_path: Path, regression_json: Path
) -> None:
    """``--int8 SPEECH``: the regression network quantised on that speech runs the take (its
    weights move a little from fp32's, the frame count does not); the default model and a
    missing speech file get a one-line error."""
    common = ["live", "--source", str(SAMPLE), "--model", str(regression_json), "--duration",
              "3", "--as-fast-as-possible", "--engine", "onnxruntime", "--threads", "1",
              "--fps", "30", "--block-ms", "10", "-q"]  # fmt: skip
    fp32, int8 = tmp_path / "fp32.json", tmp_path / "int8.json"
    for out, extra in ((fp32, []), (int8, ["--int8", str(SAMPLE)])):
        done = run_cli(*common, *extra, "--record", str(out), timeout=300)
        assert done.returncode == 0, done.stderr
    want, got = _weights(fp32), _weights(int8)
    assert got.shape == want.shape
    assert 0 < np.abs(got - want).max() < 0.05
    done = run_cli("live", "--source", str(SAMPLE), "--as-fast-as-possible", "--int8", str(SAMPLE))
    assert done.returncode == 2 and "--int8 applies to Audio2Face-3D regression" in done.stderr
    done = run_cli(*common, "--int8", str(tmp_path / "none.wav"))
    assert done.returncode == 2 and "none.wav" in done.stderr
