"""``a2x serve``'s HTTP API (issue 14 point 2) and limits (point 3) against a real uvicorn on
127.0.0.1: /v1/animate (multipart and raw body) gives ``a2x animate``'s outputs, /process-audio
the integration guide's shape, the WebSocket stream the stream's frames; 413/429/400/401."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from websockets.sync.client import connect

from a2x_core.audio.decode import decode_audio
from a2x_core.models.registry import load_model
from a2x_core.names import ARKIT_52
from tests.a2f_folders import GeneratedModel, make_regression_folder
from tests.conftest import SAMPLE, run_cli
from tests.core.service_support import running_server, wait_for

FPS = 30


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return make_regression_folder(tmp_path_factory.mktemp("http") / "model", seed=5)


@pytest.fixture(scope="module")
def model(folder: GeneratedModel) -> object:
    return load_model(folder.model_json, backend="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "speech.wav"
    soundfile.write(path, decode_audio(SAMPLE, start_s=0.3, end_s=2.8).samples, 16000,
                    subtype="PCM_16")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def server(model: object):  # noqa: ANN201 - a fixture
    with running_server(model, fps=FPS, grpc=False, http=True, max_streams=2,
                        max_request_bytes=400_000, token="tok") as started:  # fmt: skip
        yield started


@pytest.fixture
def client(server: object) -> httpx.Client:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60,
                      headers={"Authorization": "Bearer tok"}) as opened:  # fmt: skip
        yield opened


@pytest.mark.parametrize("fmt", ["json", "csv", "npz"])
def test_animate_equals_the_cli(client: httpx.Client, folder: GeneratedModel, wav: Path,
                                tmp_path: Path, fmt: str) -> None:  # fmt: skip
    out = tmp_path / f"ref.{fmt}"
    args = ["--model", str(folder.model_json), "--fps", str(FPS), "--engine", "onnxruntime",
            "--emotion", "joy=0.7", "--param", "skin_strength=1.2", "-o", str(out), "-q"]  # fmt: skip
    done = run_cli("animate", str(wav), *args)
    assert done.returncode == 0, done.stderr
    # a hostile file name is only a name: the server never uses it as a path
    form = {"format": fmt, "emotion": "joy=0.7", "param": "skin_strength=1.2"}
    multipart = client.post("/v1/animate", data=form,
                            files={"file": ("../../../tmp/x.wav", wav.read_bytes(), "audio/wav")})  # fmt: skip
    raw = client.post(f"/v1/animate?format={fmt}&emotion=joy%3D0.7&param=skin_strength%3D1.2",
                      content=wav.read_bytes())  # fmt: skip
    for answer in (multipart, raw):
        assert answer.status_code == 200, answer.text
        assert _weights(answer.content, fmt) == pytest.approx(_weights(out.read_bytes(), fmt), abs=1e-6)
    assert not Path("/tmp/x.wav").exists()


def _weights(content: bytes, fmt: str) -> list[float]:
    if fmt == "npz":
        return np.load(io.BytesIO(content))["weights"].ravel().tolist()
    if fmt == "csv":
        rows = content.decode().strip().splitlines()[1:]
        return [float(v) for row in rows for v in row.split(",")[2:]]
    data = json.loads(content)
    return np.asarray(data["weightMat"], np.float64).ravel().tolist()


def test_process_audio_has_the_integration_guide_shape(client: httpx.Client, wav: Path) -> None:
    answer = client.post("/process-audio", files={"file": ("speech.wav", wav.read_bytes())})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["fps"] == FPS and data["duration"] == pytest.approx(2.5)
    assert data["num_frames"] == len(data["blendshapes"]) == len(data["timestamps"])
    assert np.asarray(data["blendshapes"]).shape == (data["num_frames"], 52)
    assert data["timestamps"][1] == pytest.approx(1 / FPS)
    assert data["blendshape_names"] == list(ARKIT_52)


def test_models_health_and_docs(client: httpx.Client, folder: GeneratedModel) -> None:
    assert client.get("/v1/health/ready").json() == {"status": "ready"}
    models = client.get("/v1/models").json()["models"]
    assert models[0]["id"] == str(folder.model_json) and models[0]["kind"] == "regression"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/animate", "/process-audio", "/v1/models", "/v1/health/ready"} <= set(paths)


def test_refusals_have_clear_codes(client: httpx.Client, server: object, wav: Path) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    assert httpx.post(f"{base}/v1/animate", content=wav.read_bytes()).status_code == 401
    too_big = client.post("/v1/animate", content=b"\0" * 500_000)
    assert too_big.status_code == 413 and "400000" in too_big.json()["error"]
    garbage = client.post("/v1/animate", content=b"RIFF not audio at all")
    assert garbage.status_code == 400 and "a2x-serve" not in garbage.json()["error"]
    for query in ("format=xml", "bogus=1", "fps=abc", "model=other"):
        answer = client.post(f"/v1/animate?{query}", content=wav.read_bytes())
        assert answer.status_code == 400, (query, answer.text)
    assert client.post("/v1/animate", data={"format": "json"}).status_code == 400  # no file


def test_websocket_stream_and_busy_refusal(server: object, model: object, wav: Path) -> None:
    """Binary PCM in, JSON frames out, equal to the stream's own frames; with both slots held,
    a third client is refused (429 on HTTP, close 1013 on the socket)."""
    samples = soundfile.read(wav, dtype="int16")[0]
    url = f"ws://127.0.0.1:{server.http_port}/v1/stream?rate=16000&format=s16le&token=tok"
    held, release = threading.Event(), threading.Event()
    frames: list[dict] = []

    def streamer() -> None:
        with connect(url) as socket:
            assert json.loads(socket.recv())["type"] == "header"
            pcm = samples.tobytes()
            socket.send(pcm[:6400])
            held.set()
            release.wait(20)
            for i in range(6400, len(pcm), 6400):
                socket.send(pcm[i:i + 6400])
            socket.send("end")
            while (message := json.loads(socket.recv(timeout=30)))["type"] == "frame":
                frames.append(message)
            assert message == {"type": "end", "frames": len(frames)}

    first = threading.Thread(target=streamer)
    first.start()
    assert held.wait(10)
    with connect(url) as second:
        json.loads(second.recv())
        assert wait_for(lambda: server.hub.active_streams == 2)
        busy = httpx.post(f"http://127.0.0.1:{server.http_port}/v1/animate",
                          headers={"Authorization": "Bearer tok"}, content=wav.read_bytes())  # fmt: skip
        assert busy.status_code == 429
        with connect(url) as third:
            refusal = json.loads(third.recv())
            assert refusal["type"] == "error" and "maximum of 2" in refusal["message"]
    release.set()
    first.join(30)
    stream = model.open_stream(server.hub.base_options)
    expected = [*stream.push(samples, 16000), *stream.close()]
    assert [f["index"] for f in frames] == list(range(len(expected)))
    np.testing.assert_allclose([f["weights"] for f in frames],
                               [e.weights for e in expected], atol=2e-6)  # fmt: skip
    assert wait_for(lambda: server.hub.active_streams == 0)


def test_websocket_language_streams_the_default_model_s_phone_loop(wav: Path) -> None:
    """``/v1/stream?language=de``: the default model streams the language-independent phone
    loop for that connection (its frames are that stream's); a bad code is refused by name."""
    from a2x_core.options import InferenceOptions

    samples = soundfile.read(wav, dtype="int16")[0]
    default = load_model("default")
    with running_server(default, fps=FPS, grpc=False, http=True) as server:
        base = f"ws://127.0.0.1:{server.http_port}/v1/stream?rate=16000&format=s16le"
        with connect(base + "&language=de") as socket:
            assert json.loads(socket.recv())["type"] == "header"
            socket.send(samples.tobytes())
            socket.send("end")
            frames = []
            while (message := json.loads(socket.recv(timeout=30)))["type"] == "frame":
                frames.append(message)
        with connect(base + "&language=klingon") as socket:
            refusal = json.loads(socket.recv(timeout=10))
        assert wait_for(lambda: server.hub.active_streams == 0)
    assert refusal["type"] == "error" and "klingon" in refusal["message"]
    stream = default.open_stream(InferenceOptions(fps=FPS, language="de"))
    expected = [*stream.push(samples, 16000), *stream.close()]
    assert not stream.language.english and len(frames) == len(expected)
    np.testing.assert_allclose([f["weights"] for f in frames],
                               [e.weights for e in expected], atol=2e-6)  # fmt: skip


def test_a_stalled_upload_times_out_and_frees_its_slot(model: object, wav: Path) -> None:
    import socket

    with running_server(model, grpc=False, http=True, max_streams=1, idle_timeout_s=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as raw:
            raw.sendall(b"POST /v1/animate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nRIFF")
            answer = b""  # the server gives up on the rest of the body: headers, then JSON
            while b"stalled" not in answer:
                part = raw.recv(4096)
                if not part:
                    break
                answer += part
            answer = answer.decode()
        assert " 408 " in answer.splitlines()[0] and "stalled" in answer
        assert wait_for(lambda: server.hub.active_streams == 0)
        done = httpx.post(f"http://127.0.0.1:{server.http_port}/v1/animate",
                          content=wav.read_bytes(), timeout=60)  # fmt: skip
        assert done.status_code == 200
