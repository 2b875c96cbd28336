"""``a2x serve --processes 2`` as a user runs it (a subprocess on 127.0.0.1): two server
processes on one port serve concurrent NIM clients the frames of ``a2x animate``, health says
SERVING once both are ready, ``--max-streams`` counts both, a killed process is reported and
replaced while the other keeps serving, and SIGTERM stops every process gracefully (running
streams finish, no process left)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile

from a2x_core.audio.decode import decode_audio
from tests.a2f_folders import GeneratedModel, make_regression_folder
from tests.conftest import REPO, SAMPLE, run_cli
from tests.core import nim_wire as wire
from tests.core.service_support import wait_for

ERROR, SUCCESS, SERVING = 3, 0, 1
MAX_STREAMS = 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Group:
    """The ``a2x serve --processes 2`` subprocess, its ports and its stderr lines so far."""

    def __init__(self, model_json: Path) -> None:
        self.grpc_port, self.http_port = _free_port(), _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "a2x_core", "serve", "--model", str(model_json),
             "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
             "--engine", "onnxruntime", "--threads", "1", "--processes", "2",
             "--max-streams", str(MAX_STREAMS)],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert wait_for(lambda: any("Ctrl-C stops" in line for line in self.lines), 120), self.lines

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def servers(self) -> list[int]:
        """The pids of the server processes (the parent's children but its resource tracker)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [p for p in pids if "spawn_main" in _cmdline(p)]

    def health(self) -> int:
        return wire.health_check(_channel(self.grpc_port))

    def http_ready(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v1/health/ready",
                                        timeout=10) as answer:  # fmt: skip
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code


def _channel(port: int) -> grpc.Channel:
    """A channel with a connection of its own (grpc shares one between a process's channels
    otherwise: every stream would reach the same server process)."""
    return grpc.insecure_channel(f"127.0.0.1:{port}",
                                 options=[("grpc.use_local_subchannel_pool", 1)])  # fmt: skip


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _gone(pid: int) -> bool:
    """No such process, or a zombie (its sockets are closed)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return make_regression_folder(tmp_path_factory.mktemp("group") / "model", seed=5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    samples = decode_audio(SAMPLE, start_s=0.5, end_s=2.5).samples
    pcm = wire.pcm16(samples)
    path = tmp_path_factory.mktemp("clip") / "speech.wav"
    soundfile.write(path, np.frombuffer(pcm, "<i2"), 16000, subtype="PCM_16")
    return path, pcm


@pytest.fixture(scope="module")
def reference(folder: GeneratedModel, clip: tuple[Path, bytes],
              tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:  # fmt: skip
    """``a2x animate``'s weights of the clip at 30 fps."""
    out = tmp_path_factory.mktemp("ref") / "ref.npz"
    done = run_cli("animate", str(clip[0]), "--model", str(folder.model_json), "--fps", "30",
                   "--engine", "onnxruntime", "--threads", "1", "-o", str(out), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return np.load(out)["weights"]


@pytest.fixture(scope="module")
def group(folder: GeneratedModel) -> Iterator[Group]:
    started = Group(folder.model_json)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
        started.process.wait(30)
        for pid in started.servers():
            os.kill(pid, signal.SIGKILL)


def _streams(port: int, pcm: bytes, count: int) -> list[wire.Reply]:
    """``count`` NVIDIA-sample-sequence clients at once, each on its own connection (the
    kernel spreads connections, not streams, over the processes)."""
    replies: list[wire.Reply | None] = [None] * count

    def client(k: int) -> None:
        replies[k] = wire.run_stream(_channel(port), wire.sample_client_requests(16000, pcm))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(reply is not None for reply in replies)
    return replies  # type: ignore[return-value]


def test_two_processes_serve_concurrent_clients_the_frames_of_animate(
    group: Group, clip: tuple[Path, bytes], reference: np.ndarray
) -> None:
    assert len(group.servers()) == 2
    assert group.health() == SERVING and group.http_ready() == 200
    for reply in _streams(group.grpc_port, clip[1], MAX_STREAMS):
        assert reply.status is not None and reply.status[0] == SUCCESS, reply.status
        assert bytes(reply.echo) == clip[1]
        np.testing.assert_allclose(np.stack(reply.weights), reference, atol=1e-5)
    # HTTP is served by the processes too: an upload gets animate's frames
    upload = urllib.request.Request(f"http://127.0.0.1:{group.http_port}/v1/animate?format=npz",
                                    data=clip[0].read_bytes(), method="POST")  # fmt: skip
    with urllib.request.urlopen(upload, timeout=60) as answer:
        weights = np.load(io.BytesIO(answer.read()))["weights"]
    np.testing.assert_allclose(weights, reference, atol=1e-5)


def test_max_streams_counts_every_process(group: Group, clip: tuple[Path, bytes]) -> None:
    """MAX_STREAMS held streams, wherever the kernel put them: one more is refused by either
    process; once they end, a stream is served again."""
    def refused_everywhere() -> None:
        for _ in range(4):  # new connections: the kernel may hand them to either process
            busy = wire.run_stream(_channel(group.grpc_port),
                                   wire.sample_client_requests(16000, clip[1][:32000]))  # fmt: skip
            assert busy.status[0] == ERROR and f"maximum of {MAX_STREAMS} streams" in busy.status[1]

    replies = wire.streams_held_during(
        lambda: _channel(group.grpc_port), wire.sample_client_requests(16000, clip[1][:32000]),
        MAX_STREAMS, refused_everywhere)  # fmt: skip
    assert len(replies) == MAX_STREAMS and all(r.status[0] == SUCCESS for r in replies)
    again = wire.run_stream(_channel(group.grpc_port),
                            wire.sample_client_requests(16000, clip[1]))  # fmt: skip
    assert again.status[0] == SUCCESS


def test_a_killed_process_is_reported_and_replaced_while_the_other_serves(
    group: Group, clip: tuple[Path, bytes], reference: np.ndarray
) -> None:
    victim, survivor = group.servers()
    os.kill(victim, signal.SIGKILL)
    # the parent reports it once every thread has exited: its listening socket is closed then
    # (a connection the kernel hands a dying process is reset: SO_REUSEPORT's one gap)
    assert wait_for(lambda: any(f"pid {victim}) ended with signal SIGKILL" in line
                                for line in group.lines), 30), group.lines  # fmt: skip
    for reply in _streams(group.grpc_port, clip[1], 3):  # served meanwhile
        assert reply.status[0] == SUCCESS
        np.testing.assert_allclose(np.stack(reply.weights), reference, atol=1e-5)
    assert wait_for(lambda: len(group.servers()) == 2, 60)
    replacement = next(p for p in group.servers() if p != survivor)
    assert replacement != victim
    assert wait_for(lambda: group.health() == SERVING and group.http_ready() == 200, 120)
    assert group.process.poll() is None


def test_sigterm_stops_every_process_gracefully(group: Group, clip: tuple[Path, bytes],
                                                reference: np.ndarray) -> None:  # fmt: skip
    """Streams running when SIGTERM arrives finish with every frame; the parent exits 143 and
    leaves no server process behind. (Last in this module: it stops the group.)"""
    servers = group.servers()
    replies = wire.streams_held_during(
        lambda: _channel(group.grpc_port), wire.sample_client_requests(16000, clip[1]), 3,
        lambda: group.process.send_signal(signal.SIGTERM))  # fmt: skip
    assert group.process.wait(60) == 143
    assert len(replies) == 3
    for reply in replies:
        assert reply.status[0] == SUCCESS
        np.testing.assert_allclose(np.stack(reply.weights), reference, atol=1e-5)
    assert wait_for(lambda: all(_gone(pid) for pid in servers), 10)


def test_a_server_shortens_the_gil_switch_interval_while_it_serves(folder: GeneratedModel) -> None:
    """The model's thread waits on the GPU with the GIL released; with the I/O thread busy,
    taking it back cost up to Python's 5 ms interval each time: a server runs at 0.5 ms and
    gives Python its own interval back when it stops."""
    from a2x_core.models.registry import load_model
    from tests.core.service_support import running_server

    before = sys.getswitchinterval()
    model = load_model(folder.model_json, backend="onnxruntime", threads=1)
    with running_server(model) as server:
        assert sys.getswitchinterval() == pytest.approx(server.config.switch_interval_s)
        assert server.config.switch_interval_s < before
    assert sys.getswitchinterval() == before
