"""The live session a UI polls (issue 13 point 3, core side): real audio files through real
model streams on the session's thread; the recorded take against the offline run, the newest
frame for a poller, stop/cancel leaving no thread behind, and errors surfaced, not swallowed."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile

from a2x_core.audio.decode import Audio, decode_audio
from a2x_core.errors import (
    AudioInvalidSamplesError,
    AudioNotFoundError,
    CancelledError,
    ModelError,
    ParameterError,
)
from a2x_core.live.runner import file_blocks
from a2x_core.live.session import LiveSession, WorkerLiveSession
from a2x_core.models.registry import load_model
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from a2x_core.timing import num_frames_for
from tests.a2f_folders import make_regression_folder
from tests.conftest import REPO, SAMPLE

FPS = Fraction(30)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2.5 s of real speech (JFK) as a wav, the file a live source plays."""
    path = tmp_path_factory.mktemp("live_session") / "speech.wav"
    soundfile.write(path, decode_audio(SAMPLE, start_s=0.3, end_s=2.8).samples, 16000)
    return path


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a RegressionModel
    folder = make_regression_folder(tmp_path_factory.mktemp("live_model") / "model", seed=5)
    return load_model(folder.model_json, backend="onnxruntime", threads=1)


def _options() -> InferenceOptions:
    return InferenceOptions(fps=FPS, backend="onnxruntime", threads=1)


def _wait_until(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the live session did not get there in time"
        time.sleep(0.01)


def _live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "a2x-live"]


def test_recorded_take_equals_the_offline_run_of_a_regression_model(regression, clip) -> None:
    session = LiveSession(regression, _options(), file_blocks(clip, real_time=False),
                          record=True, audio_path=str(clip)).start()  # fmt: skip
    _wait_until(lambda: not session.alive)  # the file ends: the tail is already sent
    assert session.state == "ended" and session.error is None
    take = session.stop()
    offline = regression.animate([Audio(decode_audio(clip).samples)], _options())[0]
    assert take.num_frames == offline.num_frames == session.stats.frames
    np.testing.assert_allclose(take.weights, offline.weights, atol=1e-5)
    assert np.abs(offline.weights).max() > 0.05  # not vacuous
    assert take.fps == FPS and take.audio_path == str(clip) and take.model == regression.name
    assert take.duration_s == pytest.approx(2.5, abs=1e-3)
    np.testing.assert_array_equal(session.latest().weights, take.weights[-1])
    assert len(session.stats.latencies_s) > 0 and session.stats.received_s == pytest.approx(2.5)
    assert not _live_threads()


def test_default_model_take_is_every_frame_the_poller_could_see(tmp_path: Path) -> None:
    clip = tmp_path / "short.wav"  # 1.2 s: the default model decodes speech on the CPU
    samples = decode_audio(SAMPLE, start_s=0.3, end_s=1.5).samples
    soundfile.write(clip, samples, 16000)
    model = load_model("default")
    seen: dict[int, np.ndarray] = {}
    session = LiveSession(lambda: model, _options(), file_blocks(clip, real_time=False),
                          record=True).start()  # fmt: skip
    while True:
        ended = not session.alive
        frame = session.latest()  # never blocks, whatever the thread is doing
        if frame is not None:
            seen[frame.index] = frame.weights
        if ended:
            break
        time.sleep(0.002)
    take = session.stop()
    assert take.num_frames == num_frames_for(len(samples), FPS) == session.stats.frames
    assert take.weights[:, ARKIT_52.index("jawOpen")].max() > 0.2  # it speaks
    assert max(seen) == take.num_frames - 1 and len(seen) > 1
    for index, weights in seen.items():  # what a UI showed is what the take holds
        np.testing.assert_array_equal(take.weights[index], weights)
    assert take.audio_path == "" and take.model == model.name


def test_record_toggled_mid_take_keeps_only_those_frames_and_stop_sends_the_tail(
    regression, clip
) -> None:
    session = LiveSession(regression, _options(), file_blocks(clip, real_time=True)).start()
    _wait_until(lambda: session.latest() is not None)
    assert session.state == "running" and session.alive
    session.recording = True
    _wait_until(lambda: session.recorded_frames >= 3)
    take = session.stop()  # while the file still plays at real-time pace
    assert not session.alive and not _live_threads()
    assert session.state == "ended"
    assert session.stats.received_s < 2.5, "stop() ended the take before the audio did"
    assert 3 <= take.num_frames < session.stats.frames
    offline = regression.animate([Audio(decode_audio(clip).samples)], _options())[0]
    first = session.stats.frames - take.num_frames  # recording kept the last frames
    # frames out of pushes (each has a latency) are the offline ones; the tail of a stopped
    # stream pads the audio it had with zeros, as an offline run of that much audio would
    pushed = len(session.stats.latencies_s) - first
    assert pushed >= 3
    np.testing.assert_allclose(take.weights[:pushed], offline.weights[first:first + pushed],
                               atol=1e-5)  # fmt: skip


def test_stop_without_record_gives_an_empty_take(regression, clip) -> None:
    session = LiveSession(regression, _options(), file_blocks(clip, real_time=True)).start()
    _wait_until(lambda: session.stats.frames > 0)
    take = session.stop()
    assert take.num_frames == 0 and take.weights.shape == (0, 52)
    assert not _live_threads()


def test_cancel_stops_the_thread_without_a_take(regression, clip) -> None:
    session = LiveSession(regression, _options(), file_blocks(clip, real_time=True),
                          record=True).start()  # fmt: skip
    _wait_until(lambda: session.latest() is not None)
    session.cancel()
    assert session.state == "cancelled" and not session.alive and not _live_threads()
    with pytest.raises(CancelledError):
        session.stop()
    session.cancel()  # twice is harmless


def _bad_block_after(clip: Path, blocks: int) -> Iterator[tuple[np.ndarray, int]]:
    """A source that delivers real audio, then a block of NaN (a broken driver)."""
    for number, block in enumerate(file_blocks(clip, real_time=False)):
        if number == blocks:
            yield np.full(320, np.nan, dtype=np.float32), 16000
            return
        yield block


def test_a_model_error_ends_the_session_and_stop_raises_it(regression, clip) -> None:
    session = LiveSession(regression, _options(), _bad_block_after(clip, 40), record=True)
    session.start()
    _wait_until(lambda: not session.alive)
    assert session.state == "failed"
    assert isinstance(session.error, AudioInvalidSamplesError)
    with pytest.raises(AudioInvalidSamplesError):
        session.stop()
    assert not _live_threads()


def test_a_source_error_is_surfaced(regression, tmp_path: Path) -> None:
    session = LiveSession(regression, _options(), file_blocks(tmp_path / "gone.wav")).start()
    _wait_until(lambda: not session.alive)
    assert session.state == "failed" and isinstance(session.error, AudioNotFoundError)
    assert "gone.wav" in str(session.error)
    with pytest.raises(AudioNotFoundError):
        session.stop()


def test_a_model_that_fails_to_load_is_surfaced_and_closes_the_source(clip, tmp_path: Path) -> None:
    blocks = file_blocks(clip, real_time=False)
    session = LiveSession(lambda: load_model(str(tmp_path / "none" / "model.json")), _options(),
                          blocks).start()  # fmt: skip
    _wait_until(lambda: not session.alive)
    assert session.state == "failed" and isinstance(session.error, ModelError)
    with pytest.raises(ModelError):
        session.stop()
    with pytest.raises(StopIteration):
        next(blocks)  # closed: nothing more is read from it


# --------------------------------------------------------------------------- external runtime


def _worker_session(model_json: str, source: dict, **kwargs) -> WorkerLiveSession:  # noqa: ANN003
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return WorkerLiveSession(sys.executable, model_json, _options(), source, env=env, **kwargs)


@pytest.fixture(scope="module")
def regression_json(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = make_regression_folder(tmp_path_factory.mktemp("live_worker") / "model", seed=5)
    return str(folder.model_json)


def test_external_runtime_take_equals_the_offline_run(regression, regression_json, clip) -> None:
    session = _worker_session(regression_json, {"file": str(clip), "real_time": False},
                              record=True, audio_path=str(clip)).start()  # fmt: skip
    deadline = time.monotonic() + 60
    while session.alive:
        assert time.monotonic() < deadline
        session.latest()
        time.sleep(0.01)
    assert session.state == "ended", session.error
    take = session.stop()
    offline = regression.animate([Audio(decode_audio(clip).samples)], _options())[0]
    assert take.num_frames == offline.num_frames == session.stats.frames
    np.testing.assert_allclose(take.weights, offline.weights, atol=1e-5)
    np.testing.assert_array_equal(session.latest().weights, take.weights[-1])
    assert take.model == regression.name and take.audio_path == str(clip)
    assert len(session.stats.latencies_s) > 0 and session.job._proc.returncode == 0


def test_external_runtime_stop_sends_the_tail_and_cancel_ends_the_worker(
    regression_json, clip
) -> None:
    session = _worker_session(regression_json, {"file": str(clip)}, record=True).start()
    _wait_until(lambda: session.latest() is not None)
    take = session.stop()
    assert session.state == "ended" and not session.alive
    assert 0 < take.num_frames == session.stats.frames
    assert len(session.stats.latencies_s) < take.num_frames  # the tail came after the stop
    assert session.stats.received_s < 2.5

    session = _worker_session(regression_json, {"file": str(clip)}).start()
    _wait_until(lambda: session.latest() is not None)
    session.cancel()
    assert session.state == "cancelled" and session.job._proc.poll() is not None
    with pytest.raises(CancelledError):
        session.stop()


def test_external_runtime_errors_keep_their_type(regression_json, tmp_path: Path) -> None:
    session = _worker_session(regression_json, {"file": str(tmp_path / "gone.wav")}).start()
    _wait_until(lambda: not session.alive)
    assert session.state == "failed" and isinstance(session.error, AudioNotFoundError)
    with pytest.raises(AudioNotFoundError, match="gone.wav"):
        session.stop()


def test_external_runtime_live_request_with_a_bad_source_names_the_fix(
    regression_json, clip
) -> None:
    from a2x_core.worker import WorkerJob

    request = {"command": "live", "model": regression_json, "options": {}, "source": str(clip)}
    job = WorkerJob(sys.executable, request, env=dict(os.environ, PYTHONPATH=str(REPO))).start()
    with pytest.raises(ParameterError, match='source object.*"file"'):
        job.result(timeout=60)


_SPIN_PROBE = """
import os, sys
from a2x_core import worker
from a2x_core.backends import onnxruntime as backend
read, write = os.pipe()  # stdin stays open (EOF would cancel the request)
os.write(write, (sys.argv[1] + "\\n").encode())
sys.stdin = os.fdopen(read)
code = worker.main()
sys.stderr.write(f"RESULT {code} {backend.SPIN_THREADS}\\n")
"""


@pytest.mark.parametrize(("command", "spins"), [("live", "True"), ("info", "False")])
def test_the_worker_spins_onnx_runtime_threads_for_live_requests_only(
    regression_json, clip, command: str, spins: str
) -> None:
    """A live request is one latency-bound stream in a worker process of its own (as ``a2x
    live``), so its sessions spin between operators; other requests keep them sleeping."""
    import json
    import subprocess

    request = {"protocol": 2, "command": command, "model": regression_json, "options": {},
               "source": {"file": str(clip), "real_time": False}}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _SPIN_PROBE, json.dumps(request)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    line = next((x for x in done.stderr.splitlines() if x.startswith("RESULT")), done.stderr)
    assert line.split()[1:] == ["0", spins], line
