"""A NIM client for tests, written from the field tables of ``streaming_services.md`` §1.3 as raw
protobuf wire format (no generated code, not a2x's own message classes), so that a wrong field
number or type on the server side fails here as it would in NVIDIA's clients.

It does what NVIDIA's sample client does: health check, header, 1 s PCM16 chunks with all timed
emotions on the first, end of audio; then reads the header, frames, event and status.
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METHOD = "/nvidia_ace.services.a2f_controller.v1.A2FControllerService/ProcessAudioStream"
HEALTH = "/grpc.health.v1.Health/Check"

# ----------------------------------------------------------------------------- encoding


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def varint_field(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(int(value))


def bytes_field(number: int, data: bytes) -> bytes:
    return _key(number, 2) + _varint(len(data)) + data


def float_field(number: int, value: float) -> bytes:
    return _key(number, 5) + struct.pack("<f", value)


def double_field(number: int, value: float) -> bytes:
    return _key(number, 1) + struct.pack("<d", value)


def map_float(number: int, values: dict[str, float]) -> bytes:
    """map<string, float>: one entry message {1: key, 2: value} per item."""
    return b"".join(bytes_field(number, bytes_field(1, k.encode()) + float_field(2, v))
                    for k, v in values.items())  # fmt: skip


def header_message(rate: int, *, bits: int = 16, channels: int = 1, audio_format: int = 0,
                   face: dict[str, float] | None = None, multipliers: dict[str, float] | None = None,
                   offsets: dict[str, float] | None = None, clamp: bool | None = None) -> bytes:  # fmt: skip
    """controller.v1.AudioStream{1: AudioStreamHeader{1 audio_header, 2 face_params,
    3 emotion_post_processing_params, 4 blendshape_params}}."""
    audio = (varint_field(1, audio_format) + varint_field(2, channels) + varint_field(3, rate)
             + varint_field(4, bits))  # fmt: skip
    header = bytes_field(1, audio)
    header += bytes_field(2, map_float(1, face or {}))
    header += bytes_field(3, float_field(1, 1.0) + float_field(2, 0.7))  # contrast, blend coef
    bs = map_float(1, multipliers or {}) + map_float(2, offsets or {})
    if clamp is not None:
        bs += varint_field(3, int(clamp))
    header += bytes_field(4, bs)
    return bytes_field(1, header)


def audio_message(pcm: bytes, emotions: Sequence[tuple[float, dict[str, float]]] = ()) -> bytes:
    """AudioStream{2: AudioWithEmotion{1 audio_buffer, 2 EmotionWithTimeCode{1 time_code,
    2 emotion map}}}."""
    body = bytes_field(1, pcm)
    for time_code, values in emotions:
        body += bytes_field(2, double_field(1, time_code) + map_float(2, values))
    return bytes_field(2, body)


def end_message() -> bytes:
    return bytes_field(3, b"")


# ----------------------------------------------------------------------------- decoding


def parse(data: bytes) -> dict[int, list[Any]]:
    """Field number -> raw values (ints for varints, bytes for length-delimited, bytes of 4/8
    for fixed)."""
    fields: dict[int, list[Any]] = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        elif wire == 2:
            size, i = _read_varint(data, i)
            value, i = data[i:i + size], i + size
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def _double(raw: bytes) -> float:
    return struct.unpack("<d", raw)[0]


@dataclass
class Reply:
    """What the client read from one ProcessAudioStream call."""

    names: list[str] = field(default_factory=list)
    rate: int = 0
    start_epoch: float = 0.0
    times: list[float] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    echo: bytearray = field(default_factory=bytearray)
    echo_times: list[float] = field(default_factory=list)
    smoothed_emotions: list[dict[str, float]] = field(default_factory=list)
    input_emotions: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    status: tuple[int, str] | None = None
    order: list[str] = field(default_factory=list)  # message kinds in arrival order


def _emotion_with_timecode(raw: bytes) -> tuple[float, dict[str, float]]:
    f = parse(raw)
    values = {}
    for entry in f.get(2, []):
        e = parse(entry)
        values[e[1][0].decode()] = struct.unpack("<f", e[2][0])[0] if 2 in e else 0.0
    return (_double(f[1][0]) if 1 in f else 0.0), values


def read_reply(messages: Iterator[bytes]) -> Reply:
    """Decode controller.v1.AnimationDataStream messages (1 header, 2 animation_data, 3 event,
    4 status)."""
    reply = Reply()
    for raw in messages:
        top = parse(raw)
        if 1 in top:
            reply.order.append("header")
            h = parse(top[1][0])
            audio = parse(h[1][0])
            reply.rate = audio[3][0]
            reply.names = [n.decode() for n in parse(h[2][0]).get(1, [])]
            reply.start_epoch = _double(h[3][0])
        elif 2 in top:
            reply.order.append("data")
            d = parse(top[2][0])
            skel = parse(d[1][0])
            for frame in skel.get(1, []):
                fa = parse(frame)
                reply.times.append(_double(fa[1][0]) if 1 in fa else 0.0)
                packed = b"".join(fa.get(2, []))
                reply.weights.append(np.frombuffer(packed, "<f4").copy())
            if 2 in d:
                audio = parse(d[2][0])
                reply.echo_times.append(_double(audio[1][0]) if 1 in audio else 0.0)
                reply.echo += audio.get(2, [b""])[0]
            for entry in d.get(4, []):
                e = parse(entry)
                assert e[1][0] == b"emotion_aggregate"
                anything = parse(e[2][0])
                assert anything[1][0].endswith(b"nvidia_ace.emotion_aggregate.v1.EmotionAggregate")
                agg = parse(anything[2][0]) if 2 in anything else {}
                assert 2 not in agg, "a2e_output must stay empty (NVIDIA's sample crashes on it)"
                reply.input_emotions += [_emotion_with_timecode(x) for x in agg.get(1, [])]
                reply.smoothed_emotions += [_emotion_with_timecode(x)[1] for x in agg.get(3, [])]
        elif 3 in top:
            reply.order.append("event")
            event = parse(top[3][0])
            reply.events.append(event.get(1, [0])[0])
        elif 4 in top:
            reply.order.append("status")
            s = parse(top[4][0])
            reply.status = (s.get(1, [0])[0], s.get(2, [b""])[0].decode())
    return reply


# ----------------------------------------------------------------------------- calls


def channel(port: int) -> Any:
    import grpc

    return grpc.insecure_channel(f"127.0.0.1:{port}")


def health_check(chan: Any, timeout: float = 10.0) -> int:
    """grpc.health.v1.Health/Check with an empty request: 1 = SERVING."""
    call = chan.unary_unary(HEALTH, request_serializer=None, response_deserializer=None)
    answer = parse(call(b"", timeout=timeout))
    return answer.get(1, [0])[0]


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def run_stream(chan: Any, requests: Sequence[bytes], timeout: float = 120.0,
               metadata: Sequence[tuple[str, str]] | None = None) -> Reply:  # fmt: skip
    """Send ``requests`` and read every reply (the call ends after the status)."""
    call = chan.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
    return read_reply(call(iter(requests), timeout=timeout, metadata=metadata))


def streams_held_during(open_channel: Callable[[], Any], requests: Sequence[bytes],
                        count: int, during: Callable[[], None], timeout: float = 60.0,
                        ) -> list[Reply]:  # fmt: skip
    """``count`` calls of ``requests`` that are running while ``during()`` runs (a stop, or
    another client's refusal): each has had the server's header back, i.e. holds its stream
    slot (a call still on the wire when a server stops is refused by gRPC, which is right and
    not what a graceful-stop test means); the rest of each call's messages follow 0.3 s after
    ``during()`` returned or raised. Returns the replies of the calls that ended (a thread that
    failed leaves its reply out)."""
    answered = threading.Barrier(count + 1)
    released = threading.Event()
    replies: list[Reply] = []

    def paced() -> Iterator[bytes]:
        for k, message in enumerate(requests):
            if k == 1:
                released.wait(timeout)
                time.sleep(0.3)
            yield message

    def client() -> None:
        call = open_channel().stream_stream(METHOD, request_serializer=None,
                                            response_deserializer=None)  # fmt: skip
        responses = call(paced(), timeout=timeout)
        header = next(responses)
        answered.wait(timeout)
        replies.append(read_reply(itertools.chain([header], responses)))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        answered.wait(timeout)
        during()
    finally:
        released.set()
    for thread in threads:
        thread.join(timeout)
    return replies


def sample_client_requests(rate: int, pcm: bytes,
                           emotions: Sequence[tuple[float, dict[str, float]]] = (),
                           **header: Any) -> list[bytes]:  # fmt: skip
    """NVIDIA's sample client's sequence: header, 1 s chunks (emotions on the first), end."""
    chunk = rate * 2
    parts = [pcm[i:i + chunk] for i in range(0, len(pcm), chunk)]
    messages = [header_message(rate, **header)]
    messages += [audio_message(part, emotions if i == 0 else ()) for i, part in enumerate(parts)]
    return [*messages, end_message()]
