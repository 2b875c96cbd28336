"""``a2x serve`` as a user runs it: a subprocess on 127.0.0.1 with free ports; streams running
when SIGTERM arrives finish (graceful stop, exit 143), a restarted server serves again; bad
flags exit 2 with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a2x_core.audio.decode import decode_audio
from a2x_core.service.server import is_loopback
from tests.a2f_folders import GeneratedModel, make_regression_folder
from tests.conftest import REPO, SAMPLE, run_cli
from tests.core import nim_wire as wire

SUCCESS = 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(model_json: Path, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "a2x_core", "serve", "--model", str(model_json), "--grpc-port",
         str(port), "--http-port", "0", "--engine", "onnxruntime", "--threads", "1"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:  # bounded: the start-up lines, then "Ctrl-C stops"
        line = process.stderr.readline()
        lines.append(line)
        if "Ctrl-C stops" in line or not line:
            break
    assert any(f"127.0.0.1:{port}" in line for line in lines), lines
    return process


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return make_regression_folder(tmp_path_factory.mktemp("cli") / "model", seed=3)


@pytest.mark.slow
def test_sigterm_lets_running_streams_finish_and_a_restart_serves(folder: GeneratedModel) -> None:
    pcm = wire.pcm16(decode_audio(SAMPLE, start_s=0.5, end_s=2.5).samples)
    port = _free_port()
    process = _start(folder.model_json, port)
    try:
        chan = wire.channel(port)
        assert wire.health_check(chan) == 1
        alone = wire.run_stream(chan, wire.sample_client_requests(16000, pcm))
        replies = wire.streams_held_during(
            lambda: wire.channel(port), wire.sample_client_requests(16000, pcm), 4,
            lambda: process.send_signal(signal.SIGTERM), timeout=30)  # fmt: skip
        assert process.wait(30) == 143
        assert len(replies) == 4
        for reply in replies:  # every stream running at the stop completed, nothing lost
            assert reply.status[0] == SUCCESS
            np.testing.assert_allclose(np.stack(reply.weights), np.stack(alone.weights), atol=1e-5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    process = _start(folder.model_json, port)
    try:
        again = wire.run_stream(wire.channel(port), wire.sample_client_requests(16000, pcm))
        assert again.status[0] == SUCCESS and len(again.weights) == len(alone.weights)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_bad_flags_exit_2_with_one_line(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = str(taken.getsockname()[1])
    for args, expected in ((["--grpc-port", "0", "--http-port", "0"], "nothing to serve"),
                           (["--grpc-port", busy, "--http-port", "0"], "port is taken"),
                           (["--grpc-port", "0", "--http-port", busy], "choose another --http-port"),
                           (["--tls-cert", str(tmp_path / "c.pem")], "both --tls-cert"),
                           (["--grpc-port", "70000"], "not a port"),
                           (["--max-streams", "0"], "must be > 0"),
                           (["--grace", "-1"], "--grace -1 is not 0..3600 seconds"),
                           (["--processes", "0"], "--processes 0 must be >= 1"),
                           (["--processes", "2", "--grpc-port", busy, "--http-port", "0"],
                            "port is taken")):  # fmt: skip
        done = run_cli("serve", *args, timeout=60)
        assert done.returncode == 2 and expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    taken.close()


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.3.0.1"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "::", "example.org"))
