"""Live outputs (issue 13, point 2): Live Link Face and VMC packets sent over real UDP sockets on
loopback and read back field by field, JSON lines, endpoint parsing and a fan-out that outlives
a refused port."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.audio.accumulator import StreamFrame
from a2x_core.errors import OutputError, ParameterError
from a2x_core.live.outputs import (
    LIVELINK_MAX_PACKET,
    LIVELINK_PACKET_NAMES,
    PERFECT_SYNC_52,
    VMC_BLEND_APPLY,
    VMC_BLEND_VALUE,
    VMC_TIME,
    Endpoint,
    FanOut,
    JsonLinesSink,
    LiveLinkFaceSender,
    VmcSender,
    decode_livelink,
    decode_osc,
    encode_livelink,
    encode_vmc,
    frame_rate,
    osc_message,
    parse_endpoint,
)
from a2x_core.models.emotion_input import A2F_EMOTIONS
from a2x_core.names import ARKIT_52, LIVE_LINK_FACE_52, LIVE_LINK_FACE_ROTATIONS, TONGUE_16

TIMEOUT_S = 5.0


def make_frame(index: int, fps: float | Fraction = 30, seed: int = 0) -> StreamFrame:
    """A frame whose every value differs (a swapped pair of shapes shows up)."""
    rng = np.random.default_rng(seed + index)
    jaw = np.eye(4, dtype=np.float32)
    jaw[:3, 3] = rng.normal(size=3)
    return StreamFrame(
        index=index,
        time_s=index / float(fps),
        weights=rng.permutation(np.linspace(0.01, 0.99, 52)).astype(np.float32),
        tongue_weights=rng.random(16).astype(np.float32),
        jaw_transform=jaw,
        eye_rotations=np.array(
            [rng.normal(0, 8), rng.normal(0, 8), 0.0, rng.normal(0, 8), rng.normal(0, 8), 0.0],
            dtype=np.float32,
        ),  # fmt: skip
        emotions=rng.random(10).astype(np.float32),
    )


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    """A UDP socket bound to an ephemeral port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT_S)
    yield sock
    sock.close()


def closed_port() -> int:
    """A loopback UDP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- names and orders -------------------------------------------------------------------------


def test_livelink_packet_order_is_unreals_enum_not_the_csv_order() -> None:
    assert len(LIVELINK_PACKET_NAMES) == 61
    assert LIVELINK_PACKET_NAMES[52:] == LIVE_LINK_FACE_ROTATIONS
    # EARFaceBlendShape lists the shapes in Audio2Face's order; only the capital differs
    assert [n.lower() for n in LIVELINK_PACKET_NAMES[:52]] == [n.lower() for n in ARKIT_52]
    assert all(n[0].isupper() for n in LIVELINK_PACKET_NAMES)
    # the CSV of the iPhone app swaps Jaw/Mouth Left and Right: the packet must not
    differ = [i for i in range(52) if LIVELINK_PACKET_NAMES[i] != LIVE_LINK_FACE_52[i]]
    assert [LIVELINK_PACKET_NAMES[i] for i in differ] == [
        "JawLeft",
        "JawRight",
        "MouthLeft",
        "MouthRight",
    ]


def test_perfect_sync_names_are_capitalised_arkit_names() -> None:
    assert len(set(PERFECT_SYNC_52)) == 52
    assert PERFECT_SYNC_52[0] == "EyeBlinkLeft" and PERFECT_SYNC_52[-1] == "TongueOut"
    assert "MouthLowerDownRight" in PERFECT_SYNC_52 and "CheekPuff" in PERFECT_SYNC_52
    assert [n[0].lower() + n[1:] for n in PERFECT_SYNC_52] == list(ARKIT_52)


# --- Live Link Face -----------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [30, 60, Fraction(30000, 1001)])
def test_livelink_packet_over_udp_field_by_field(
    receiver: socket.socket, fps: float | Fraction
) -> None:
    port = receiver.getsockname()[1]
    device_id = "a2x-test-device"  # not 36 characters: the length field must be real
    frames = [make_frame(i, fps, seed=3) for i in (0, 1, 47)]
    with LiveLinkFaceSender("127.0.0.1", port, subject="Face ü", device_id=device_id) as sender:
        for frame in frames:
            sender.send(frame, fps)
        assert sender.packets_sent == len(frames)
    subject_bytes = "Face ü".encode()
    for frame in frames:
        data, _ = receiver.recvfrom(4096)
        assert len(data) == 270 + len(device_id) + len(subject_bytes)
        # raw layout: uint8 version, then big-endian uint32 lengths (not '<I' 6 + '$')
        assert data[0] == 6
        assert data[1:5] == struct.pack(">I", len(device_id))
        assert data[5 : 5 + len(device_id)] == device_id.encode()
        offset = 5 + len(device_id)
        assert struct.unpack(">I", data[offset : offset + 4])[0] == len(subject_bytes)
        offset += 4 + len(subject_bytes)
        number, sub, num, den, count = struct.unpack(">ifiiB", data[offset : offset + 17])
        rate = Fraction(fps)
        assert (num, den) == (rate.numerator, rate.denominator)
        assert number == frame.index and sub == 0.0 and count == 61

        packet = decode_livelink(data)
        assert packet["version"] == 6 and packet["device_id"] == device_id
        assert packet["subject"] == "Face ü" and packet["frame_number"] == frame.index
        curves = packet["curves"]
        assert list(curves) == list(LIVELINK_PACKET_NAMES)
        for i, name in enumerate(ARKIT_52):
            assert curves[name[0].upper() + name[1:]] == frame.weights[i], name
        assert curves["HeadYaw"] == curves["HeadPitch"] == curves["HeadRoll"] == 0.0
        eyes = frame.eye_rotations.astype(np.float64)
        # Unreal's unit: degrees / 180; A2F eyes are (x = pitch, y = yaw) per eye, right first
        expected = {"RightEyePitch": eyes[0], "RightEyeYaw": eyes[1], "RightEyeRoll": eyes[2],
                    "LeftEyePitch": eyes[3], "LeftEyeYaw": eyes[4],
                    "LeftEyeRoll": eyes[5]}  # fmt: skip
        for name, degrees in expected.items():
            assert curves[name] == np.float32(degrees / 180), name
        assert curves["LeftEyeYaw"] != 0.0 and curves["RightEyePitch"] != 0.0


def test_livelink_sub_frame_carries_a_time_between_frames() -> None:
    frame = make_frame(0)
    frame = StreamFrame(**{**frame.__dict__, "index": 7, "time_s": 7.25 / 30})
    packet = decode_livelink(encode_livelink(frame, 30, "a2x", "d"))
    assert packet["frame_number"] == 7
    assert packet["sub_frame"] == pytest.approx(0.25, abs=1e-6)
    assert frame_rate(29.97) == Fraction(2997, 100)
    assert frame_rate(np.float64(30000 / 1001)) == Fraction(30000, 1001)
    for bad in (0, -30, float("nan"), "30"):
        with pytest.raises(ParameterError, match="fps"):
            frame_rate(bad)  # type: ignore[arg-type]


def test_livelink_default_device_id_is_a_stable_uuid(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    with (
        LiveLinkFaceSender("127.0.0.1", port) as first,
        LiveLinkFaceSender("127.0.0.1", port) as second,
    ):
        assert first.device_id == second.device_id and len(first.device_id) == 36
        first.send(make_frame(0), 30)
    data, _ = receiver.recvfrom(4096)
    assert len(data) == 270 + 36 + len(b"a2x")
    assert decode_livelink(data)["subject"] == "a2x"


def test_livelink_names_too_long_for_unreal_are_refused() -> None:
    with pytest.raises(ParameterError, match=f"--livelink.*{LIVELINK_MAX_PACKET} bytes"):
        LiveLinkFaceSender("127.0.0.1", 11111, subject="x" * 500, device_id="y" * 36)
    with pytest.raises(ParameterError, match="subject"):
        LiveLinkFaceSender("127.0.0.1", 11111, subject="")


def test_decode_livelink_rejects_a_truncated_or_foreign_packet() -> None:
    data = encode_livelink(make_frame(1), 30, "a2x", "dev")
    with pytest.raises(ParameterError, match="end inside curves"):
        decode_livelink(data[:-3])
    with pytest.raises(ParameterError, match="version 5"):
        decode_livelink(b"\x05" + data[1:])


def test_livelink_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with sock:
        sock.settimeout(TIMEOUT_S)
        endpoint = parse_endpoint(f"[::1]:{sock.getsockname()[1]}", 11111, "--livelink")
        with LiveLinkFaceSender(*endpoint) as sender:
            sender.send(make_frame(2), 30)
            assert sender.name == f"--livelink [::1]:{endpoint.port}"
        assert decode_livelink(sock.recv(4096))["frame_number"] == 2


# --- VMC / OSC ----------------------------------------------------------------------------------


def test_osc_message_matches_the_osc_1_0_spec_example() -> None:
    # OSC 1.0 specification, "Examples": /oscillator/4/frequency 440.0
    expected = bytes.fromhex("2f6f7363696c6c61746f722f342f6672657175656e6379002c66000043dc0000")
    assert osc_message("/oscillator/4/frequency", 440.0) == expected
    assert decode_osc(expected) == [("/oscillator/4/frequency", ",f", [440.0])]


def test_vmc_bundle_over_udp(receiver: socket.socket) -> None:
    frame = make_frame(12, seed=5)
    with VmcSender("127.0.0.1", receiver.getsockname()[1]) as sender:
        sender.send(frame, 30)
    data, _ = receiver.recvfrom(65536)
    assert data.startswith(b"#bundle\0") and data[8:16] == struct.pack(">Q", 1)
    assert len(data) % 4 == 0
    # every element: int32 size (multiple of 4), then a message
    offset, sizes = 16, []
    while offset < len(data):
        (size,) = struct.unpack(">i", data[offset : offset + 4])
        sizes.append(size)
        offset += 4 + size
    assert offset == len(data) and all(size % 4 == 0 for size in sizes) and len(sizes) == 54

    messages = decode_osc(data)
    assert messages[0] == (VMC_TIME, ",f", [pytest.approx(frame.time_s, rel=1e-6)])
    assert messages[-1] == (VMC_BLEND_APPLY, ",", [])
    values = messages[1:-1]
    assert [address for address, _, _ in values] == [VMC_BLEND_VALUE] * 52
    assert all(tags == ",sf" for _, tags, _ in values)
    received = {name: value for _, _, (name, value) in values}
    assert list(received) == list(PERFECT_SYNC_52)
    for i, name in enumerate(PERFECT_SYNC_52):
        assert received[name] == frame.weights[i], name
    assert encode_vmc(frame) == data


# --- JSON lines ---------------------------------------------------------------------------------


def test_json_lines_file_round_trip_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "take.jsonl"
    frames = [make_frame(i, seed=9) for i in range(4)]
    sink = JsonLinesSink(path, include=("tongue", "jaw", "eyes", "emotions"))
    for count, frame in enumerate(frames, start=1):
        sink.send(frame, 30)
        # flushed per line: a reader sees every frame sent so far, each line complete
        assert len(path.read_text(encoding="utf-8").splitlines()) == count
    sink.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    for frame, line in zip(frames, lines, strict=True):
        record = json.loads(line)
        assert record["index"] == frame.index
        assert record["time_s"] == pytest.approx(frame.time_s, abs=1e-9)
        assert list(record["weights"]) == list(ARKIT_52)
        np.testing.assert_allclose(
            [record["weights"][n] for n in ARKIT_52], frame.weights, atol=1e-6
        )
        np.testing.assert_allclose(
            [record["tongue"][n] for n in TONGUE_16], frame.tongue_weights, atol=1e-6
        )
        np.testing.assert_allclose(record["jaw"], frame.jaw_transform, atol=1e-6)
        np.testing.assert_allclose(
            record["eyes"]["right"] + record["eyes"]["left"], frame.eye_rotations, atol=1e-5
        )
        np.testing.assert_allclose(
            [record["emotions"][n] for n in A2F_EMOTIONS], frame.emotions, atol=1e-6
        )


def test_json_lines_weights_only_by_default_and_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonLinesSink("-")
    sink.send(make_frame(3), 30)
    sink.close()
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"index", "time_s", "weights"} and record["index"] == 3


def test_json_lines_never_overwrites_a_file_unasked(tmp_path: Path) -> None:
    path = tmp_path / "take.jsonl"
    path.write_text("artist's notes\n", encoding="utf-8")
    with pytest.raises(OutputError, match="already exists"):
        JsonLinesSink(path)
    assert path.read_text(encoding="utf-8") == "artist's notes\n"
    with pytest.raises(ParameterError, match="--jsonl: unknown block.*geometry"):
        JsonLinesSink(tmp_path / "other.jsonl", include=("geometry",))
    with pytest.raises(OutputError, match="folder does not exist"):
        JsonLinesSink(tmp_path / "missing" / "take.jsonl")
    sink = JsonLinesSink(path, overwrite=True)
    sink.send(make_frame(0), 30)
    sink.close()
    assert json.loads(path.read_text(encoding="utf-8"))["index"] == 0


def test_json_lines_writes_null_for_a_non_finite_value(tmp_path: Path) -> None:
    frame = make_frame(0)
    frame.weights[17] = np.nan
    sink = JsonLinesSink(tmp_path / "nan.jsonl")
    sink.send(frame, 30)
    sink.close()
    record = json.loads((tmp_path / "nan.jsonl").read_text(encoding="utf-8"))
    assert record["weights"]["jawOpen"] is None


# --- several outputs, drops ---------------------------------------------------------------------


def test_fan_out_keeps_streaming_past_a_refused_port(
    receiver: socket.socket, tmp_path: Path
) -> None:
    live = LiveLinkFaceSender("127.0.0.1", receiver.getsockname()[1], device_id="dev")
    dead = VmcSender("127.0.0.1", closed_port())
    jsonl = JsonLinesSink(tmp_path / "take.jsonl")
    heard: list[str] = []
    frames = [make_frame(i) for i in range(20)]
    with FanOut([live, dead, jsonl], on_drop=lambda name, error: heard.append(name)) as fan:
        for frame in frames:
            fan.send(frame, 30)
    numbers = [decode_livelink(receiver.recv(4096))["frame_number"] for _ in frames]
    assert numbers == list(range(20))
    live_stats, dead_stats, jsonl_stats = fan.stats
    assert live_stats.sent == 20 and live_stats.dropped == 0
    assert jsonl_stats.sent == 20 and len((tmp_path / "take.jsonl").read_text().splitlines()) == 20
    # ICMP port unreachable comes back on loopback; the connected socket reports it on a later send
    assert dead_stats.dropped >= 1 and dead_stats.sent + dead_stats.dropped == 20
    assert heard == [dead.name] * dead_stats.dropped and fan.dropped == dead_stats.dropped
    assert "refused" in dead_stats.last_error.lower()
    assert f"{dead.name}: {dead_stats.sent} sent, {dead_stats.dropped} dropped" in fan.summary()


def test_fan_out_counts_a_closed_pipe_as_drops() -> None:
    class ClosedPipe:
        name = "--jsonl -"
        closed = False

        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    fan = FanOut([JsonLinesSink(ClosedPipe(), option="--jsonl")])  # type: ignore[arg-type]
    assert fan.send(make_frame(0), 30) == 0
    assert fan.stats[0].dropped == 1 and fan.stats[0].last_error == "Broken pipe"


# --- endpoints and bad hosts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("studio-pc", ("studio-pc", 11111)),
        ("192.168.1.20:12000", ("192.168.1.20", 12000)),
        (":12000", ("127.0.0.1", 12000)),
        ("12000", ("127.0.0.1", 12000)),
        ("[::1]:9000", ("::1", 9000)),
        ("[::1]", ("::1", 11111)),
        ("::1", ("::1", 11111)),
        ("  localhost:11112 ", ("localhost", 11112)),
        ("face.local.", ("face.local.", 11111)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text, 11111, "--livelink") == Endpoint(*expected)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no address"),
        ("host:", "port '' is not a number"),
        ("host:abc", "port 'abc'"),
        ("host:70000", "not in 1..65535"),
        ("host:0", "not in 1..65535"),
        ("bad host!", "not a valid host name"),
        ("300.1.2.3", "not a valid IPv4 address"),
        ("[::1", "without"),
        ("[::1]9000", "text after"),
        ("[studio]:9000", "not an IPv6 address"),
        ("-studio:9000", "not a valid host name"),
    ],
)
def test_parse_endpoint_errors_name_the_option(text: str, why: str) -> None:
    with pytest.raises(ParameterError, match="--vmc") as caught:
        parse_endpoint(text, 39539, "--vmc")
    assert why in str(caught.value)
    assert "--vmc 127.0.0.1:39539" in str(caught.value)  # the hint shows the form


def test_bad_host_is_refused_at_construction() -> None:
    for host in ("bad host!", "300.1.2.3", ""):
        with pytest.raises(ParameterError, match="--livelink"):
            LiveLinkFaceSender(host)
        with pytest.raises(ParameterError, match="--vmc"):
            VmcSender(host)
    with pytest.raises(ParameterError, match="--vmc: port 0"):
        VmcSender("127.0.0.1", 0)
    if sys.platform.startswith("linux"):
        # an address the socket may not send to: Linux refuses broadcast without SO_BROADCAST
        with pytest.raises(ParameterError, match="--livelink: cannot send to 255.255.255.255"):
            LiveLinkFaceSender("255.255.255.255", 11111)


def test_unresolvable_host_is_refused_at_construction() -> None:
    # RFC 6761: names under .invalid never resolve
    with pytest.raises(
        ParameterError, match="--livelink: cannot resolve host 'no-such-host.invalid'"
    ):
        LiveLinkFaceSender("no-such-host.invalid")


# --- a real stream, end to end ------------------------------------------------------------------


def test_a_real_stream_reaches_every_output_as_the_offline_run(
    receiver: socket.socket, tmp_path: Path
) -> None:
    """Real speech pushed in 20 ms blocks through a regression model's stream; each frame goes
    to Live Link, VMC and JSON lines at once; what arrives equals the offline run's rows."""
    from a2x_core.audio.decode import Audio, decode_audio
    from a2x_core.models.registry import load_model
    from a2x_core.options import InferenceOptions
    from tests.a2f_folders import make_regression_folder
    from tests.conftest import SAMPLE

    folder = make_regression_folder(tmp_path / "model", seed=7)
    model = load_model(folder.model_json, backend="onnxruntime", threads=1)
    speech = decode_audio(SAMPLE, start_s=0.5, end_s=2.0).samples
    options = InferenceOptions(fps=30)
    offline = model.animate([Audio(speech)], options)[0]
    assert np.abs(offline.weights).max() > 0.05  # the comparison is not vacuous
    assert np.abs(offline.eye_rotations).max() > 0.1

    vmc_receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    vmc_receiver.bind(("127.0.0.1", 0))
    vmc_receiver.settimeout(TIMEOUT_S)
    sinks = [LiveLinkFaceSender("127.0.0.1", receiver.getsockname()[1], device_id="dev"),
             VmcSender("127.0.0.1", vmc_receiver.getsockname()[1]),
             JsonLinesSink(tmp_path / "take.jsonl", include=("eyes",))]  # fmt: skip
    stream = model.open_stream(options)
    livelink, vmc = [], []
    with vmc_receiver, FanOut(sinks) as fan:

        def send(frames: list) -> None:
            for frame in frames:  # read each packet at once: no receive buffer to overflow
                fan.send(frame, options.fps)
                livelink.append(decode_livelink(receiver.recv(4096)))
                vmc.append(decode_osc(vmc_receiver.recv(65536)))

        for start in range(0, len(speech), 320):
            send(stream.push(speech[start : start + 320]))
        send(stream.close())
    assert fan.dropped == 0 and len(livelink) == offline.num_frames
    lines = [json.loads(line) for line in (tmp_path / "take.jsonl").read_text().splitlines()]
    assert len(lines) == offline.num_frames

    names = list(offline.names)
    pascal = [n[0].upper() + n[1:] for n in names]
    for k in range(offline.num_frames):
        assert livelink[k]["frame_number"] == k == lines[k]["index"]
        np.testing.assert_allclose(
            [livelink[k]["curves"][n] for n in pascal], offline.weights[k], atol=1e-5
        )
        vmc_values = {args[0]: args[1] for address, _, args in vmc[k] if address == VMC_BLEND_VALUE}
        np.testing.assert_allclose([vmc_values[n] for n in pascal], offline.weights[k], atol=1e-5)
        np.testing.assert_allclose(
            [lines[k]["weights"][n] for n in names], offline.weights[k], atol=1e-5
        )
        eyes = offline.eye_rotations[k]
        assert livelink[k]["curves"]["LeftEyeYaw"] == pytest.approx(eyes[4] / 180, abs=1e-6)
        np.testing.assert_allclose(lines[k]["eyes"]["right"], eyes[:3], atol=1e-4)


def test_a_host_name_goes_to_its_ipv4_address(receiver: socket.socket) -> None:
    """``localhost`` may resolve to ::1 first; the receivers (Unreal, VSeeFace) listen on IPv4."""
    with VmcSender("localhost", np.int64(receiver.getsockname()[1])) as sender:
        assert sender.name == f"--vmc localhost:{receiver.getsockname()[1]}"
        sender.send(make_frame(0))
    assert decode_osc(receiver.recv(65536))[-1][0] == VMC_BLEND_APPLY


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_json_lines_into_a_named_pipe_reach_the_reader_frame_by_frame(tmp_path: Path) -> None:
    """An existing FIFO is written to, not refused as an existing file nor replaced."""
    fifo = tmp_path / "frames"
    os.mkfifo(fifo)
    received: list[dict] = []

    def read() -> None:
        with open(fifo, encoding="utf-8") as pipe:
            received.extend(json.loads(line) for line in pipe)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sink = JsonLinesSink(fifo)  # opening waits for the reader
    for i in range(3):
        sink.send(make_frame(i), 30)
    sink.close()
    reader.join(TIMEOUT_S)
    assert [record["index"] for record in received] == [0, 1, 2]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
