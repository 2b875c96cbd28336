"""``a2x serve``'s NIM-compatible gRPC service (issue 14): a client written from the protocol
tables (raw wire format, ``nim_wire.py``) runs NVIDIA's sample sequence against a real server on
127.0.0.1 and gets the frames of ``a2x animate``; bad input gets a Status ERROR and the server
keeps serving; limits, token, concurrency and disconnects."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile

from a2x_core.audio.decode import decode_audio
from a2x_core.models.registry import load_model
from a2x_core.names import ARKIT_52
from tests.a2f_folders import GeneratedModel, make_regression_folder
from tests.conftest import SAMPLE, run_cli
from tests.core import nim_wire as wire
from tests.core.service_support import running_server, wait_for

FPS = 30
ERROR, SUCCESS = 3, 0
#: Timed emotions as NVIDIA's sample config sends them (all on the first chunk).
EMOTIONS = [(0.0, {"joy": 0.6}), (1.2, {"anger": 0.5, "joy": 0.1}), (2.5, {"sadness": 0.3})]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return make_regression_folder(tmp_path_factory.mktemp("serve") / "model", seed=11)


@pytest.fixture(scope="module")
def model(folder: GeneratedModel) -> object:
    return load_model(folder.model_json, backend="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """3.2 s of real speech as a PCM16 WAV (what the sample client reads) and its samples."""
    samples = decode_audio(SAMPLE, start_s=0.4, end_s=3.6).samples
    pcm = np.frombuffer(wire.pcm16(samples), "<i2")
    path = tmp_path_factory.mktemp("clip") / "speech.wav"
    soundfile.write(path, pcm, 16000, subtype="PCM_16")
    return path, pcm


@pytest.fixture(scope="module")
def server(model: object):  # noqa: ANN201 - a fixture
    with running_server(model, fps=FPS, max_streams=64) as started:
        yield started


def _animate_cli(tmp_path: Path, folder: GeneratedModel, wav: Path, *args: str) -> np.lib.npyio.NpzFile:
    keys = [{"time_s": t, "emotions": e} for t, e in EMOTIONS]
    (tmp_path / "keys.json").write_text(json.dumps({"keys": keys}))
    out = tmp_path / "ref.npz"
    done = run_cli("animate", str(wav), "--model", str(folder.model_json), "--fps", str(FPS),
                   "--engine", "onnxruntime", "--threads", "1", "--emotion-file",
                   str(tmp_path / "keys.json"), "-o", str(out), "-q", *args)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return np.load(out)


def test_sample_client_sequence_gives_the_frames_of_a2x_animate(
    server: object, folder: GeneratedModel, clip: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    wav, pcm = clip
    chan = wire.channel(server.grpc_port)
    assert wire.health_check(chan) == 1  # SERVING, as the sample's health_check wants
    reply = wire.run_stream(chan, wire.sample_client_requests(16000, pcm.tobytes(), EMOTIONS))
    assert reply.status is not None and reply.status[0] == SUCCESS, reply.status
    assert reply.order[0] == "header" and reply.order[-2:] == ["event", "status"]
    assert reply.events == [0]  # END_OF_A2F_AUDIO_PROCESSING
    assert reply.names == [n[0].upper() + n[1:] for n in ARKIT_52]
    assert reply.rate == 16000 and reply.start_epoch > 1.6e9
    # the audio echo is the input, frame by frame, in order
    assert bytes(reply.echo) == pcm.tobytes()
    assert reply.echo_times == sorted(reply.echo_times)
    ref = _animate_cli(tmp_path, folder, wav)
    weights = np.stack(reply.weights)
    assert weights.shape == ref["weights"].shape
    np.testing.assert_allclose(reply.times, np.arange(len(weights)) / FPS, atol=1e-9)
    np.testing.assert_allclose(weights, ref["weights"], atol=1e-5)
    # the emotion aggregate: the client's keys once, and each frame's emotion input
    assert [(t, set(e)) for t, e in reply.input_emotions] == [(t, set(e)) for t, e in EMOTIONS]
    assert len(reply.smoothed_emotions) == len(weights)
    names = [str(n) for n in ref["emotion_names"]] if "emotion_names" in ref else None
    if names:
        got = np.array([[e[n] for n in names] for e in reply.smoothed_emotions])
        np.testing.assert_allclose(got, ref["emotions"], atol=1e-6)


def test_header_parameters_apply_as_animate_parameters(
    server: object, folder: GeneratedModel, clip: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """Face params -> model_config keys, blend-shape multipliers/offsets -> the solver's, and
    clamping; a key a2x has no parameter for is reported in the final status."""
    wav, pcm = clip
    requests = wire.sample_client_requests(
        16000, pcm.tobytes(), EMOTIONS,
        face={"lowerFaceSmoothing": 0.006, "skinStrength": 1.3, "blinkOffset": 0.1},
        multipliers={"JawOpen": 1.6, "MouthSmileLeft": 2.0}, offsets={"MouthClose": 0.05},
        clamp=True,
    )  # fmt: skip
    reply = wire.run_stream(wire.channel(server.grpc_port), requests)
    assert reply.status[0] == SUCCESS and "blinkOffset" in reply.status[1]
    ref = _animate_cli(tmp_path, folder, wav, "--param", "lower_face_smoothing=0.006",
                       "--param", "skin_strength=1.3",
                       "--param", 'skin.bsWeightMultipliers={"jawOpen": 1.6, "mouthSmileLeft": 2.0}',
                       "--param", 'skin.bsWeightOffsets={"mouthClose": 0.05}')  # fmt: skip
    np.testing.assert_allclose(np.stack(reply.weights), np.clip(ref["weights"], 0, 1), atol=1e-5)


def test_bad_input_gets_an_error_status_and_the_server_goes_on(
    server: object, clip: tuple[Path, np.ndarray]
) -> None:
    _, pcm = clip
    second = pcm[:16000].tobytes()
    chan = wire.channel(server.grpc_port)
    cases = {
        "header must be sent as the first": [wire.audio_message(second), wire.end_message()],
        "audio_format": [wire.header_message(16000, audio_format=1)],
        "channel_count=2": [wire.header_message(16000, channels=2)],
        "bits_per_sample=8": [wire.header_message(16000, bits=8)],
        "samples_per_second=8000": [wire.header_message(8000)],
        "samples_per_second=200000": [wire.header_message(200000)],
        "more than 10 s": [wire.header_message(16000), wire.audio_message(b"\0\0" * 16000 * 11)],
        "not whole 16-bit samples": [wire.header_message(16000), wire.audio_message(b"\0\0\0")],
        "only once": [wire.header_message(16000), wire.header_message(16000)],
        "unknown emotion": [wire.header_message(16000),
                            wire.audio_message(second, [(0.0, {"boredom": 0.5})])],  # fmt: skip
        "before any audio": [wire.header_message(16000), wire.end_message()],
        "ended before its header": [],
    }
    for expected, requests in cases.items():
        reply = wire.run_stream(chan, requests)
        assert reply.status is not None and reply.status[0] == ERROR, (expected, reply.status)
        assert expected.lower() in reply.status[1].lower(), (expected, reply.status[1])
    # garbage that is not a protobuf message: the call fails, the server does not
    call = chan.stream_stream(wire.METHOD, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError):
        list(call(iter([b"\xff\xff\xff\xff"]), timeout=10))
    reply = wire.run_stream(chan, wire.sample_client_requests(16000, second))
    assert reply.status[0] == SUCCESS and len(reply.weights) > 0
    assert wait_for(lambda: server.hub.active_streams == 0)


def test_idle_stream_times_out_with_a_status(model: object) -> None:
    with running_server(model, idle_timeout_s=0.3) as server:
        gate = threading.Event()

        def stalled():  # header, then nothing until the test is done
            yield wire.header_message(16000)
            gate.wait(10)

        call = wire.channel(server.grpc_port).stream_stream(
            wire.METHOD, request_serializer=None, response_deserializer=None)
        reply = wire.read_reply(call(stalled(), timeout=20))
        gate.set()
        assert reply.status[0] == ERROR and "idle timeout" in reply.status[1]
        assert wait_for(lambda: server.hub.active_streams == 0)


def test_max_streams_refusal_and_bearer_token(model: object, clip: tuple[Path, np.ndarray]) -> None:
    _, pcm = clip
    second = pcm[:16000].tobytes()
    with running_server(model, max_streams=1, token="s3cret") as server:
        chan = wire.channel(server.grpc_port)
        auth = [("authorization", "Bearer s3cret"), ("function-id", "ignored")]
        refused = wire.run_stream(chan, wire.sample_client_requests(16000, second))
        assert refused.status[0] == ERROR and "authorization: Bearer" in refused.status[1]
        wrong = wire.run_stream(chan, wire.sample_client_requests(16000, second),
                                metadata=[("authorization", "Bearer nope")])  # fmt: skip
        assert wrong.status[0] == ERROR
        gate, holding = threading.Event(), threading.Event()

        def held():
            yield wire.header_message(16000)
            yield wire.audio_message(second)
            holding.set()
            gate.wait(20)
            yield wire.end_message()

        call = chan.stream_stream(wire.METHOD, request_serializer=None, response_deserializer=None)
        first = call(held(), timeout=30, metadata=auth)
        replies: list[wire.Reply] = []
        reader = threading.Thread(target=lambda: replies.append(wire.read_reply(first)))
        reader.start()
        assert holding.wait(10) and wait_for(lambda: server.hub.active_streams == 1)
        busy = wire.run_stream(chan, wire.sample_client_requests(16000, second), metadata=auth)
        assert busy.status[0] == ERROR and "maximum of 1 streams" in busy.status[1]
        gate.set()
        reader.join(20)
        assert replies and replies[0].status[0] == SUCCESS
        assert wait_for(lambda: server.hub.active_streams == 0)
        again = wire.run_stream(chan, wire.sample_client_requests(16000, second), metadata=auth)
        assert again.status[0] == SUCCESS


@pytest.mark.parametrize("count", [1, 4, 16])
def test_concurrent_streams_each_get_their_own_frames(
    server: object, clip: tuple[Path, np.ndarray], count: int
) -> None:
    """N clients at once (different clips: shifted audio): each gets exactly the frames of its
    own clip run alone, none lost or reordered."""
    _, pcm = clip
    clips = [np.roll(pcm, 1601 * k)[: 16000 * 2] for k in range(count)]
    chan = wire.channel(server.grpc_port)
    alone = wire.run_stream(chan, wire.sample_client_requests(16000, clips[-1].tobytes()))
    replies: dict[int, wire.Reply] = {}

    def client(k: int) -> None:
        replies[k] = wire.run_stream(wire.channel(server.grpc_port),
                                     wire.sample_client_requests(16000, clips[k].tobytes()))  # fmt: skip

    threads = [threading.Thread(target=client, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(replies) == list(range(count))
    for k, reply in replies.items():
        assert reply.status[0] == SUCCESS, reply.status
        assert len(reply.weights) == len(alone.weights)
        assert np.all(np.diff(reply.times) > 0)
        assert bytes(reply.echo) == clips[k].tobytes()
    np.testing.assert_allclose(np.stack(replies[count - 1].weights), np.stack(alone.weights),
                               atol=1e-5)  # fmt: skip


def test_a_client_leaving_mid_stream_does_not_disturb_the_others(
    server: object, clip: tuple[Path, np.ndarray]
) -> None:
    _, pcm = clip
    chan = wire.channel(server.grpc_port)
    alone = wire.run_stream(chan, wire.sample_client_requests(16000, pcm.tobytes()))
    gate = threading.Event()

    def leaving():
        yield wire.header_message(16000)
        yield wire.audio_message(pcm[:16000].tobytes())
        gate.wait(20)

    call = chan.stream_stream(wire.METHOD, request_serializer=None, response_deserializer=None)
    leaver = call(leaving(), timeout=30)
    next(leaver)  # the header: the stream is open
    others: list[wire.Reply] = []

    def client() -> None:
        others.append(wire.run_stream(wire.channel(server.grpc_port),
                                      wire.sample_client_requests(16000, pcm.tobytes())))  # fmt: skip

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    leaver.cancel()  # the client goes away mid-stream
    gate.set()
    for thread in threads:
        thread.join(60)
    assert len(others) == 3
    for reply in others:
        assert reply.status[0] == SUCCESS
        np.testing.assert_allclose(np.stack(reply.weights), np.stack(alone.weights), atol=1e-5)
    assert wait_for(lambda: server.hub.active_streams == 0)


@pytest.mark.slow
def test_default_model_serves_the_frames_of_a2x_animate(
    clip: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """The embedded model: same frame count and times as ``a2x animate`` (its stream is live
    recognition, so values differ, docs/streaming.md); timed emotions and face parameters it
    cannot use are reported; multipliers/offsets/clamping apply to its output."""
    wav, pcm = clip
    out = tmp_path / "ref.npz"
    done = run_cli("animate", str(wav), "--fps", str(FPS), "-o", str(out), "-q")
    assert done.returncode == 0, done.stderr
    ref = np.load(out)
    with running_server(load_model("default"), fps=FPS) as server:
        requests = wire.sample_client_requests(
            16000, pcm.tobytes(), EMOTIONS, face={"skinStrength": 1.2},
            multipliers={"JawOpen": 0.5}, offsets={"EyeWideLeft": 2.0}, clamp=True)  # fmt: skip
        reply = wire.run_stream(wire.channel(server.grpc_port), requests)
    assert reply.status[0] == SUCCESS
    for reported in ("skinStrength", "timed emotions not applied"):
        assert reported in reply.status[1]
    weights = np.stack(reply.weights)
    assert weights.shape == ref["weights"].shape
    np.testing.assert_allclose(reply.times, np.arange(len(weights)) / FPS, atol=1e-9)
    jaw, wide = ARKIT_52.index("jawOpen"), ARKIT_52.index("eyeWideLeft")
    assert weights[:, jaw].max() <= 0.5 + 1e-6 and weights[:, jaw].max() > 0
    np.testing.assert_allclose(weights[:, wide], 1.0)  # offset 2, clamped to 1
    assert bytes(reply.echo) == pcm.tobytes() and reply.smoothed_emotions == []


def test_serve_language_streams_the_default_model_s_phone_loop(clip: tuple[Path, np.ndarray]) -> None:
    """``a2x serve --language de``: the default model's NIM streams run the language-independent
    phone loop; a client gets exactly the frames of that stream pushed directly."""
    from a2x_core.cli import _build_parser, _serve_server
    from a2x_core.options import InferenceOptions

    args = _build_parser().parse_args(["serve", "--language", "de", "--grpc-port", "52000"])
    assert _serve_server(args).hub.base_options.language == "de"  # built, never started
    _, pcm = clip
    model = load_model("default")
    options = InferenceOptions(fps=FPS, language="de")
    direct = model.open_stream(options)
    frames = direct.push(pcm.astype(np.float32) / 32768.0) + direct.close()
    assert not direct.language.english
    with running_server(model, fps=FPS, base_options=options) as server:
        reply = wire.run_stream(wire.channel(server.grpc_port),
                                wire.sample_client_requests(16000, pcm.tobytes()))  # fmt: skip
    assert reply.status[0] == SUCCESS
    np.testing.assert_allclose(np.stack(reply.weights), np.stack([f.weights for f in frames]),
                               atol=1e-6)  # fmt: skip


@pytest.mark.slow
def test_stream_bank_serves_plain_nim_streams(folder: GeneratedModel, clip: tuple[Path, np.ndarray]) -> None:
    """With the stages on a torch device (here torch on the CPU), plain 16 kHz streams (no
    header parameters, no timed emotions) run in the model's stream bank: each client gets the
    device offline run's frames; a stream with emotions still runs (per-object stream)."""
    pytest.importorskip("torch")
    from a2x_core.audio.decode import Audio
    from a2x_core.options import InferenceOptions

    _, pcm = clip
    bank_model = load_model(folder.model_json, backend="onnxruntime", threads=1)
    bank_model.postprocess = "cpu"
    clips = [np.roll(pcm, 2203 * k)[: 16000 * 2 + 517 * k] for k in range(4)]
    offline = bank_model.animate([Audio(c.astype(np.float32) / 32768) for c in clips],
                                 InferenceOptions(fps=FPS))  # fmt: skip
    with running_server(bank_model, fps=FPS) as server:
        assert server.hub.bank is not None
        replies: dict[int, wire.Reply] = {}

        def client(k: int) -> None:
            replies[k] = wire.run_stream(wire.channel(server.grpc_port),
                                         wire.sample_client_requests(16000, clips[k].tobytes()))  # fmt: skip

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with_emotions = wire.run_stream(wire.channel(server.grpc_port),
                                        wire.sample_client_requests(16000, clips[0].tobytes(), EMOTIONS))  # fmt: skip
        assert wait_for(lambda: server.hub.active_streams == 0 and not server.hub._by_slot)
    for k, result in enumerate(offline):
        assert replies[k].status[0] == SUCCESS
        assert bytes(replies[k].echo) == clips[k].tobytes()
        np.testing.assert_allclose(np.stack(replies[k].weights), result.weights, atol=1e-5)
    assert with_emotions.status[0] == SUCCESS and len(with_emotions.weights) == offline[0].num_frames


def test_diffusion_model_serves_the_frames_of_animate(tmp_path: Path, clip: tuple[Path, np.ndarray]) -> None:
    """A diffusion model behind the same service: the sample-client sequence gives
    ``model.animate``'s frames (same fps, same timed emotions)."""
    from a2x_core.audio.decode import Audio
    from a2x_core.options import InferenceOptions
    from tests.diffusion_folders import make_diffusion_folder

    _, pcm = clip
    model = load_model(make_diffusion_folder(tmp_path / "diffusion").model_json,
                       backend="onnxruntime", threads=1)  # fmt: skip
    keys = tuple((t, e) for t, e in EMOTIONS)
    want = model.animate([Audio(pcm.astype(np.float32) / 32768)],
                         InferenceOptions(fps=FPS, emotions=keys))[0]  # fmt: skip
    with running_server(model, fps=FPS) as server:
        reply = wire.run_stream(wire.channel(server.grpc_port),
                                wire.sample_client_requests(16000, pcm.tobytes(), EMOTIONS))  # fmt: skip
    assert reply.status[0] == SUCCESS, reply.status
    np.testing.assert_allclose(np.stack(reply.weights), want.weights, atol=1e-5)
    assert bytes(reply.echo) == pcm.tobytes()


def test_an_emotion_model_detects_each_streams_emotions_as_animate_does(
    model: object, folder: GeneratedModel, clip: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """``a2x serve --emotion-model``: Audio2Emotion runs on each stream's audio (as the NIM's
    A2E stage), the header's emotion_post_processing_params are its config overrides, the
    client's timed emotions are reported as not applied; frames equal ``a2x animate
    --emotion-model`` with the same overrides."""
    from a2x_core.models.audio2emotion import EmotionModel
    from tests.a2e_folders import make_emotion_folder

    a2e = make_emotion_folder(tmp_path / "a2e").model_json
    wav, pcm = clip
    with running_server(model, fps=FPS, emotion_model=EmotionModel.load(a2e)) as started:
        reply = wire.run_stream(wire.channel(started.grpc_port),
                                wire.sample_client_requests(16000, pcm.tobytes(), EMOTIONS))  # fmt: skip
    assert reply.status[0] == SUCCESS and "timed emotions not applied" in reply.status[1]
    out = tmp_path / "ref.npz"
    # the test header sets emotion_contrast 1.0 and live_blend_coef 0.7
    done = run_cli("animate", str(wav), "--model", str(folder.model_json), "--fps", str(FPS),
                   "--engine", "onnxruntime", "--threads", "1", "--emotion-model", str(a2e),
                   "--emotion-param", "emotion_contrast=1.0", "--emotion-param",
                   "live_blend_coef=0.7", "-o", str(out), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    ref = np.load(out)
    weights = np.stack(reply.weights)
    assert weights.shape == ref["weights"].shape
    np.testing.assert_allclose(weights, ref["weights"], atol=1e-5)
    assert np.ptp(ref["emotions"], axis=0).max() > 0.01  # detected emotions that vary
