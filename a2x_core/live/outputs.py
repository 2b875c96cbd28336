"""Live outputs: each finished stream frame to Unreal (Live Link Face UDP), to VTubing apps
(VMC over OSC) and to scripts (JSON lines), several at once (``docs/live.md``, issue 13).

Every sink has ``name``, ``send(frame, fps)`` and ``close()``; ``frame`` is a
:class:`a2x_core.audio.accumulator.StreamFrame` (or anything with its attributes). The encoders are pure
functions (``encode_livelink``, ``encode_vmc``, ``frame_record``) with decoders beside them, so
the tests and a user debugging a rig read the packets back field by field.

A sender raises the socket's ``OSError`` when a datagram cannot go out (on loopback a closed
port answers with ICMP "refused", which a connected UDP socket reports on the next send);
:class:`FanOut` counts those as drops and keeps streaming, because a viewer that is not running
yet must never stop a take.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import numbers
import os
import re
import socket
import stat
import struct
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import numpy as np

from ..errors import ParameterError
from ..export.writers import check_new_file, output_error
from ..models.emotion_input import A2F_EMOTIONS
from ..names import ARKIT_52, LIVE_LINK_FACE_ROTATIONS, TONGUE_16

#: Where a live output goes when the option gives only a port (``--vmc :39540``).
DEFAULT_HOST = "127.0.0.1"
LIVELINK_DEFAULT_PORT = 11111
VMC_DEFAULT_PORT = 39539

# ---------------------------------------------------------------------------------------------
# Names and orders (data)

#: Unreal's ``EARFaceBlendShape`` order, the order of the 61 floats in a Live Link Face packet
#: (``streaming_services.md`` §3.1): the 52 ARKit shapes, then head and eye rotations. It is
#: Audio2Face's ARKit-52 order in PascalCase -- unlike the Live Link Face *CSV* columns
#: (:data:`.names.LIVE_LINK_FACE_52`), which put JawRight/MouthRight before JawLeft/MouthLeft.
LIVELINK_PACKET_NAMES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight",
    "EyeLookOutRight", "EyeLookUpRight", "EyeSquintRight", "EyeWideRight", "JawForward",
    "JawLeft", "JawRight", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthLeft",
    "MouthRight", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft",
    "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft",
    "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft",
    "NoseSneerRight", "TongueOut",
) + LIVE_LINK_FACE_ROTATIONS  # fmt: skip

#: Head and eye curves of the packet: (index in ``StreamFrame.eye_rotations``, factor). Unreal's
#: ARKit code sends rotations as degrees / 180 ("map the -180..180 range to -1..1",
#: AppleARKitConversion.h ``ToBlendShapeMap``); Audio2Face gives per eye (x = pitch, y = yaw, 0)
#: in degrees, right eye first. Signs are Audio2Face's. The head: :data:`LIVELINK_HEAD_SOURCES`.
LIVELINK_ROTATION_SOURCES: dict[str, tuple[int, float] | None] = {
    "HeadYaw": None, "HeadPitch": None, "HeadRoll": None,
    "LeftEyeYaw": (4, 1 / 180), "LeftEyePitch": (3, 1 / 180), "LeftEyeRoll": (5, 1 / 180),
    "RightEyeYaw": (1, 1 / 180), "RightEyePitch": (0, 1 / 180), "RightEyeRoll": (2, 1 / 180),
}  # fmt: skip

#: Head curves of the packet: index in ``StreamFrame.head_rotation`` (pitch, yaw, roll,
#: radians; :mod:`a2x_core.head.motion`), sent as degrees / 180 like the eyes.
LIVELINK_HEAD_SOURCES: dict[str, int] = {"HeadPitch": 0, "HeadYaw": 1, "HeadRoll": 2}
_RADIANS_TO_PACKET = 180.0 / math.pi / 180.0

#: The 52 PerfectSync BlendShapeClip names VMC apps look up (VMagicMirror, VSeeFace, Warudo):
#: the ARKit names with a capital first letter, ``EyeBlinkLeft`` .. ``TongueOut``.
PERFECT_SYNC_52: tuple[str, ...] = tuple(name[0].upper() + name[1:] for name in ARKIT_52)

LIVELINK_PACKET_VERSION = 6
LIVELINK_CURVE_COUNT = 61
#: Unreal's receive buffer (AppleARKitLiveLinkSource.cpp ``MAX_BLEND_SHAPE_PACKET_SIZE``): a
#: longer packet is cut and dropped, which bounds device id + subject to 504 bytes of UTF-8.
LIVELINK_MAX_PACKET = 774
_LIVELINK_FIXED_BYTES = 1 + 4 + 4 + 16 + 1 + 4 * LIVELINK_CURVE_COUNT  # 270 + N + M in all

VMC_BLEND_VALUE = "/VMC/Ext/Blend/Val"
VMC_BLEND_APPLY = "/VMC/Ext/Blend/Apply"
VMC_TIME = "/VMC/Ext/T"
#: OSC 1.0 bundle time tag "immediately".
OSC_IMMEDIATELY = 1

#: The optional blocks of a JSON line, each named by the attribute of the frame it reads.
JSONL_EXTRAS: tuple[str, ...] = ("tongue", "jaw", "eyes", "head", "emotions")


def _name_index(source: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Indices into ``source`` of every name of ``wanted`` (matched case-insensitively)."""
    by_name = {name.lower(): i for i, name in enumerate(source)}
    return np.array([by_name[name.lower()] for name in wanted], dtype=np.intp)


#: Live Link packet curve k (k < 52) reads ARKit-52 weight _LIVELINK_FROM_ARKIT[k]: mapped by name.
_LIVELINK_FROM_ARKIT = _name_index(ARKIT_52, LIVELINK_PACKET_NAMES[:52])
_VMC_FROM_ARKIT = _name_index(ARKIT_52, PERFECT_SYNC_52)


class Frame(Protocol):
    """What a sink reads from a frame (:class:`a2x_core.audio.accumulator.StreamFrame` has it all)."""

    index: int
    time_s: float
    weights: np.ndarray
    tongue_weights: np.ndarray
    jaw_transform: np.ndarray
    eye_rotations: np.ndarray
    emotions: np.ndarray


class Sink(Protocol):
    """One live output."""

    name: str

    def send(self, frame: Frame, fps: float | Fraction) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Endpoints


class Endpoint(NamedTuple):
    """A host and a UDP port (``LiveLinkFaceSender(*endpoint)``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _endpoint_hint(option: str, default_port: int) -> str:
    return (
        f"write HOST:PORT, e.g. {option} 127.0.0.1:{default_port} or {option} [::1]:{default_port}"
    )


def check_host(host: str, option: str, default_port: int = LIVELINK_DEFAULT_PORT) -> str:
    """``host`` if it is an IP address or a well-formed host name (nothing is resolved here)."""
    hint = _endpoint_hint(option, default_port)
    if not isinstance(host, str) or not host:
        raise ParameterError(f"{option}: no host given", hint=hint)
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    labels = host.removesuffix(".").split(".")
    if ":" in host:
        raise ParameterError(f"{option}: {host!r} is not a valid IPv6 address", hint=hint)
    if all(label.isdigit() for label in labels):
        raise ParameterError(f"{option}: {host!r} is not a valid IPv4 address", hint=hint)
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ParameterError(f"{option}: {host!r} is not a valid host name", hint=hint)
    return host


def check_port(port: object, option: str, default_port: int = LIVELINK_DEFAULT_PORT) -> int:
    """``port`` as an int in 1..65535."""
    if isinstance(port, bool) or not isinstance(port, numbers.Integral) or not 1 <= port <= 65535:
        raise ParameterError(f"{option}: port {port!r} is not in 1..65535",
                             hint=_endpoint_hint(option, default_port))  # fmt: skip
    return int(port)


def parse_endpoint(text: str, default_port: int, option: str) -> Endpoint:
    """``HOST:PORT`` of a command-line option, as an :class:`Endpoint`.

    Accepted: ``HOST`` (default port), ``HOST:PORT``, ``:PORT`` and ``PORT`` (on 127.0.0.1),
    ``[IPv6]:PORT``, ``[IPv6]`` and a bare IPv6 address such as ``::1`` (default port). Host
    names are checked for form only; :class:`UdpSender` resolves them.

    Raises:
        ParameterError: naming ``option``, with the form to use.
    """
    hint = _endpoint_hint(option, default_port)
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise ParameterError(f"{option}: no address given", hint=hint)
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0:
            raise ParameterError(f"{option}: {raw!r} has '[' without ']'", hint=hint)
        host, rest = raw[1:close], raw[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ParameterError(
                f"{option}: {raw!r} has text after ']' that is not ':PORT'", hint=hint
            )
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ParameterError(f"{option}: {host!r} in brackets is not an IPv6 address",
                                 hint=hint) from None  # fmt: skip
    elif raw.count(":") > 1:
        host, port_text = raw, None  # a bare IPv6 address: its port needs the brackets
    elif raw.isdigit():
        host, port_text = DEFAULT_HOST, raw
    elif ":" in raw:
        host, port_text = raw.rsplit(":", 1)
        host = host or DEFAULT_HOST
    else:
        host, port_text = raw, None
    if port_text is None:
        port = default_port
    elif port_text.isdigit() and port_text.isascii():
        port = int(port_text)
    else:
        raise ParameterError(f"{option}: port {port_text!r} is not a number", hint=hint)
    return Endpoint(check_host(host, option, default_port), check_port(port, option, default_port))


# ---------------------------------------------------------------------------------------------
# UDP


class UdpSender:
    """A connected UDP socket to one endpoint, resolved and checked at construction.

    Connecting fixes the address once (no lookup per frame) and makes the kernel report a
    loopback "port unreachable" on the next send, which :class:`FanOut` counts as a drop.
    """

    option = "--udp"
    default_port = 0

    def __init__(self, host: str, port: int, *, option: str | None = None) -> None:
        self.option = option or type(self).option
        self.endpoint = Endpoint(check_host(host, self.option, self.default_port),
                                 check_port(port, self.option, self.default_port))  # fmt: skip
        self.name = f"{self.option} {self.endpoint}"
        self.packets_sent = 0
        try:
            found = socket.getaddrinfo(
                self.endpoint.host, self.endpoint.port, type=socket.SOCK_DGRAM
            )
        except (socket.gaierror, UnicodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise ParameterError(
                f"{self.option}: cannot resolve host {self.endpoint.host!r} ({reason})",
                hint="check the name or give an IP address",
            ) from None
        # a name with both kinds of address goes to IPv4: Unreal and the VTubing apps listen there
        family, _, _, _, address = min(found, key=lambda entry: entry[0] != socket.AF_INET)
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._socket.connect(address)
        except OSError as error:
            self._socket.close()
            raise ParameterError(f"{self.option}: cannot send to {self.endpoint} "
                                 f"({error.strerror or error})",
                                 hint="check the address and the network") from None  # fmt: skip

    def send_datagram(self, data: bytes) -> None:
        """Send one datagram; the socket's ``OSError`` propagates (FanOut counts it)."""
        self._socket.send(data)
        self.packets_sent += 1

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> UdpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Live Link Face (Unreal), packet version 6


def frame_rate(fps: float | Fraction) -> Fraction:
    """``fps`` as the exact fraction the packet's numerator/denominator carry (29.97 -> 2997/100,
    ``Fraction(30000, 1001)`` kept as it is)."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise ParameterError(f"fps {fps!r} is not a number")
    if not math.isfinite(float(fps)) or fps <= 0:
        raise ParameterError(f"fps {fps!r} must be a positive number")
    if isinstance(fps, numbers.Rational):
        rate = Fraction(int(fps.numerator), int(fps.denominator))
    else:
        rate = Fraction(float(fps)).limit_denominator(1001)
    if rate.numerator > 2**31 - 1 or rate.denominator > 2**31 - 1:
        raise ParameterError(f"fps {fps!r} does not fit the packet's int32 frame rate")
    return rate


def livelink_values(frame: Frame) -> np.ndarray:
    """The packet's 61 float32 values of ``frame``, in :data:`LIVELINK_PACKET_NAMES` order."""
    values = np.zeros(LIVELINK_CURVE_COUNT, dtype=np.float32)
    values[:52] = np.asarray(frame.weights, dtype=np.float32)[_LIVELINK_FROM_ARKIT]
    eyes = np.asarray(frame.eye_rotations, dtype=np.float64).reshape(-1)
    for k, name in enumerate(LIVE_LINK_FACE_ROTATIONS, start=52):
        source = LIVELINK_ROTATION_SOURCES[name]
        if source is not None and eyes.size == 6:
            values[k] = eyes[source[0]] * source[1]
    head = np.asarray(getattr(frame, "head_rotation", np.zeros(3)), np.float64).reshape(-1)
    if head.size == 3:
        for name, index in LIVELINK_HEAD_SOURCES.items():
            values[52 + LIVE_LINK_FACE_ROTATIONS.index(name)] = head[index] * _RADIANS_TO_PACKET
    return values


def encode_livelink(frame: Frame, fps: float | Fraction, subject: str, device_id: str) -> bytes:
    """One Live Link Face packet, version 6, big-endian (``streaming_services.md`` §3.1).

    The frame time is the frame's audio time at ``fps``: frame number and sub-frame (the
    fraction of a frame, 0 for frames on the grid), rate as numerator/denominator.
    """
    rate = frame_rate(fps)
    device = device_id.encode("utf-8")
    name = subject.encode("utf-8")
    position = float(frame.time_s) * float(rate)
    frame_number = math.floor(position + 1e-6)
    sub_frame = min(max(position - frame_number, 0.0), math.nextafter(1.0, 0.0))
    if not -(2**31) <= frame_number < 2**31:
        raise ParameterError(
            f"frame time {frame.time_s} s does not fit the packet's int32 frame number"
        )
    return b"".join((
        struct.pack(">BI", LIVELINK_PACKET_VERSION, len(device)), device,
        struct.pack(">I", len(name)), name,
        struct.pack(">ifiiB", frame_number, sub_frame, rate.numerator, rate.denominator,
                    LIVELINK_CURVE_COUNT),
        livelink_values(frame).astype(">f4").tobytes(),
    ))  # fmt: skip


class _Reader:
    """Big-endian fields read in order from a packet, with errors that say where it ran out."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.offset, self.what = bytes(data), 0, what

    def take(self, size: int, field: str) -> bytes:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise ParameterError(f"{self.what}: {len(self.data)} bytes end inside {field} "
                                 f"(offset {self.offset}, {size} bytes)")  # fmt: skip
        chunk, self.offset = self.data[self.offset : end], end
        return chunk

    def unpack(self, layout: str, field: str) -> tuple[Any, ...]:
        return struct.unpack(layout, self.take(struct.calcsize(layout), field))


def decode_livelink(data: bytes) -> dict[str, Any]:
    """Read a Live Link Face packet back: version, device id, subject, frame time and the
    curves by name (a debugging aid, and how the tests check :func:`encode_livelink`)."""
    reader = _Reader(data, "Live Link packet")
    (version,) = reader.unpack(">B", "version")
    if version != LIVELINK_PACKET_VERSION:
        raise ParameterError(
            f"Live Link packet: version {version}, expected {LIVELINK_PACKET_VERSION}"
        )
    (device_length,) = reader.unpack(">I", "device id length")
    device_id = reader.take(device_length, "device id").decode("utf-8")
    (subject_length,) = reader.unpack(">I", "subject name length")
    subject = reader.take(subject_length, "subject name").decode("utf-8")
    frame_number, sub_frame, numerator, denominator, count = reader.unpack(">ifiiB", "frame time")
    values = np.frombuffer(reader.take(4 * count, "curves"), dtype=">f4").astype(np.float32)
    if reader.offset != len(reader.data):
        raise ParameterError(
            f"Live Link packet: {len(reader.data) - reader.offset} bytes after the curves"
        )
    names = (
        LIVELINK_PACKET_NAMES
        if count == LIVELINK_CURVE_COUNT
        else [f"curve{i}" for i in range(count)]
    )
    return {
        "version": version, "device_id": device_id, "subject": subject,
        "frame_number": frame_number, "sub_frame": sub_frame,
        "rate_numerator": numerator, "rate_denominator": denominator, "count": count,
        "curves": dict(zip(names, (float(v) for v in values), strict=True)),
    }  # fmt: skip


def default_device_id() -> str:
    """A UUID that stays the same for this machine, so Unreal keeps one source across runs."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"a2x.{socket.gethostname()}"))


class LiveLinkFaceSender(UdpSender):
    """Sends each frame as a Live Link Face packet, for Unreal's "Live Link Face" source."""

    option = "--livelink"
    default_port = LIVELINK_DEFAULT_PORT

    def __init__(self, host: str, port: int = LIVELINK_DEFAULT_PORT, subject: str = "a2x",
                 device_id: str | None = None, *, option: str | None = None) -> None:  # fmt: skip
        device_id = default_device_id() if device_id is None else device_id
        where = option or self.option
        for field, value in (("subject", subject), ("device id", device_id)):
            if not isinstance(value, str) or not value:
                raise ParameterError(f"{where}: the {field} must be a non-empty string")
        extra = len(subject.encode("utf-8")) + len(device_id.encode("utf-8"))
        room = LIVELINK_MAX_PACKET - _LIVELINK_FIXED_BYTES
        if extra > room:
            raise ParameterError(
                f"{where}: subject and device id take {extra} bytes of UTF-8; "
                f"Unreal reads packets up to {LIVELINK_MAX_PACKET} bytes",
                hint=f"keep them to {room} bytes together",
            )
        self.subject, self.device_id = subject, device_id
        super().__init__(host, port, option=option)

    def send(self, frame: Frame, fps: float | Fraction) -> None:
        self.send_datagram(encode_livelink(frame, fps, self.subject, self.device_id))


# ---------------------------------------------------------------------------------------------
# OSC 1.0 and VMC


def _osc_string(text: str) -> bytes:
    data = text.encode("utf-8") + b"\0"
    return data + b"\0" * (-len(data) % 4)


def osc_message(address: str, *arguments: str | float | int) -> bytes:
    """One OSC 1.0 message: padded address, type tags (``s``/``f``/``i``), big-endian values."""
    tags, payload = [","], []
    for argument in arguments:
        if isinstance(argument, str):
            tags.append("s")
            payload.append(_osc_string(argument))
        elif isinstance(argument, int | np.integer) and not isinstance(argument, bool):
            tags.append("i")
            payload.append(struct.pack(">i", int(argument)))
        else:
            tags.append("f")
            payload.append(struct.pack(">f", float(argument)))
    return _osc_string(address) + _osc_string("".join(tags)) + b"".join(payload)


def osc_bundle(messages: Sequence[bytes], timetag: int = OSC_IMMEDIATELY) -> bytes:
    """An OSC bundle: ``#bundle``, the NTP time tag, then each element with its int32 size."""
    parts = [_osc_string("#bundle"), struct.pack(">Q", timetag)]
    for message in messages:
        parts += [struct.pack(">i", len(message)), message]
    return b"".join(parts)


def _read_osc_string(reader: _Reader, field: str) -> str:
    end = reader.data.find(b"\0", reader.offset)
    if end < 0:
        raise ParameterError(f"{reader.what}: {field} has no NUL terminator")
    text = reader.take(end - reader.offset + 1, field)[:-1].decode("utf-8")
    reader.take(-reader.offset % 4, f"{field} padding")
    return text


def decode_osc(data: bytes) -> list[tuple[str, str, list[Any]]]:
    """The messages of an OSC packet (a bundle is flattened in order): ``(address, type tags,
    arguments)``; floats come back as float32 values."""
    reader = _Reader(data, "OSC packet")
    if data.startswith(b"#bundle\0"):
        _read_osc_string(reader, "bundle tag")
        reader.unpack(">Q", "time tag")
        messages = []
        while reader.offset < len(reader.data):
            (size,) = reader.unpack(">i", "element size")
            if size % 4:
                raise ParameterError(f"OSC packet: element size {size} is not a multiple of 4")
            messages += decode_osc(reader.take(size, "bundle element"))
        return messages
    address = _read_osc_string(reader, "address")
    tags = _read_osc_string(reader, "type tags")
    if not tags.startswith(","):
        raise ParameterError(f"OSC packet: type tags {tags!r} do not start with ','")
    arguments: list[Any] = []
    for tag in tags[1:]:
        if tag == "s":
            arguments.append(_read_osc_string(reader, "string argument"))
        elif tag == "f":
            arguments.append(float(np.float32(reader.unpack(">f", "float argument")[0])))
        elif tag == "i":
            arguments.append(reader.unpack(">i", "int argument")[0])
        else:
            raise ParameterError(f"OSC packet: type tag {tag!r} is not one a2x writes")
    if reader.offset != len(reader.data):
        raise ParameterError(
            f"OSC packet: {len(reader.data) - reader.offset} bytes after the arguments"
        )
    return [(address, tags, arguments)]


def encode_vmc(frame: Frame) -> bytes:
    """One OSC bundle for a frame: ``/VMC/Ext/T`` (its audio time), ``/VMC/Ext/Blend/Val`` for
    each of the 52 PerfectSync shapes, then ``/VMC/Ext/Blend/Apply`` (VMC spec: apply after all
    values, receivers accumulate them first; a bundle's elements are processed in order)."""
    weights = np.asarray(frame.weights, dtype=np.float32)[_VMC_FROM_ARKIT]
    messages = [osc_message(VMC_TIME, float(frame.time_s))]
    messages += [osc_message(VMC_BLEND_VALUE, name, float(value))
                 for name, value in zip(PERFECT_SYNC_52, weights, strict=True)]  # fmt: skip
    messages.append(osc_message(VMC_BLEND_APPLY))
    return osc_bundle(messages)


class VmcSender(UdpSender):
    """Sends each frame as a VMC blend-shape bundle to a VTubing app (the "Marionette")."""

    option = "--vmc"
    default_port = VMC_DEFAULT_PORT

    def __init__(
        self, host: str, port: int = VMC_DEFAULT_PORT, *, option: str | None = None
    ) -> None:
        super().__init__(host, port, option=option)

    def send(self, frame: Frame, fps: float | Fraction | None = None) -> None:
        self.send_datagram(encode_vmc(frame))


# ---------------------------------------------------------------------------------------------
# JSON lines


def _json_numbers(array: np.ndarray) -> Any:
    """Nested lists rounded to 6 decimals (as the JSON export), NaN/inf as null (JSON has none)."""
    values = np.round(np.asarray(array, dtype=np.float64), 6)
    flat = [float(v) if math.isfinite(v) else None for v in values.reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(values.shape).tolist()


def _named(names: Sequence[str], array: np.ndarray) -> dict[str, Any] | list[Any]:
    values = _json_numbers(np.asarray(array).reshape(-1))
    return dict(zip(names, values, strict=True)) if len(values) == len(names) else values


def frame_record(frame: Frame, include: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON object of one frame: ``index``, ``time_s``, ``weights`` by ARKit name, and the
    blocks of ``include`` (:data:`JSONL_EXTRAS`): ``tongue`` by name, ``jaw`` (4x4 rows),
    ``eyes`` ({"right": [x, y, z], "left": [...]}, degrees), ``head`` ({"pitch", "yaw", "roll"},
    radians), ``emotions`` by name."""
    record: dict[str, Any] = {
        "index": int(frame.index),
        "time_s": round(float(frame.time_s), 9),
        "weights": _named(ARKIT_52, frame.weights),
    }
    if "tongue" in include:
        record["tongue"] = _named(TONGUE_16, frame.tongue_weights)
    if "jaw" in include:
        record["jaw"] = _json_numbers(np.asarray(frame.jaw_transform).reshape(4, 4))
    if "eyes" in include:
        eyes = _json_numbers(np.asarray(frame.eye_rotations).reshape(2, 3))
        record["eyes"] = {"right": eyes[0], "left": eyes[1]}
    if "head" in include:
        record["head"] = _named(("pitch", "yaw", "roll"),
                                getattr(frame, "head_rotation", np.zeros(3)))  # fmt: skip
    if "emotions" in include:
        record["emotions"] = _named(A2F_EMOTIONS, frame.emotions)
    return record


class JsonLinesSink:
    """One JSON object per frame and line, flushed at once, to stdout (``-``), an open text
    stream, a pipe (FIFO) or a new file.

    A file is written line by line, not atomically at close: JSON lines are read while they
    are written (``tail -f``, a FIFO, another process), and each line is one complete write, so
    an interrupted take still leaves whole frames. An existing file is refused unless
    ``overwrite``; an existing FIFO or device is written to as it is (opening a FIFO waits
    for its reader). A complete take as one atomic file is what ``--record`` is for.
    """

    option = "--jsonl"

    def __init__(self, target: str | os.PathLike[str] | IO[str], *, include: Sequence[str] = (),
                 overwrite: bool = False, option: str | None = None) -> None:  # fmt: skip
        self.option = option or type(self).option
        unknown = [name for name in include if name not in JSONL_EXTRAS]
        if unknown:
            raise ParameterError(f"{self.option}: unknown block(s) {', '.join(map(str, unknown))}",
                                 hint=f"choose from {', '.join(JSONL_EXTRAS)}")  # fmt: skip
        self.include = tuple(include)
        self.lines_written = 0
        self._owned = False
        if hasattr(target, "write"):
            self._stream: IO[str] = target  # type: ignore[assignment]
            self.name = f"{self.option} {getattr(target, 'name', '<stream>')}"
            return
        if str(target) == "-":
            self._stream, self.name = sys.stdout, f"{self.option} -"
            return
        path = Path(target)
        self.name = f"{self.option} {path}"
        is_pipe = False
        with contextlib.suppress(OSError):
            is_pipe = not stat.S_ISREG(path.stat().st_mode) and not path.is_dir()
        if not is_pipe:
            check_new_file(path, overwrite=overwrite)
        try:
            self._stream = open(path, "w" if (overwrite or is_pipe) else "x",  # noqa: SIM115
                                encoding="utf-8", newline="\n")  # fmt: skip
        except OSError as error:
            raise output_error(path, error) from None
        self._owned = True

    def send(self, frame: Frame, fps: float | Fraction | None = None) -> None:
        line = json.dumps(frame_record(frame, self.include), separators=(",", ":"), allow_nan=False)
        self._stream.write(line + "\n")
        self._stream.flush()
        self.lines_written += 1

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()


# ---------------------------------------------------------------------------------------------
# Several outputs at once


@dataclass
class SinkStats:
    """What happened to one sink's frames."""

    name: str
    sent: int = 0
    dropped: int = 0
    last_error: str = ""

    def __str__(self) -> str:
        text = f"{self.name}: {self.sent} sent"
        if self.dropped:
            text += f", {self.dropped} dropped ({self.last_error})"
        return text


class FanOut:
    """Sends each frame to every sink. An ``OSError`` of one sink (host unreachable, port
    refused, a closed pipe, a full disk) is counted as a dropped frame of that sink and the
    stream goes on; ``on_drop(name, error)`` hears each one (for a live display)."""

    def __init__(self, sinks: Sequence[Sink],
                 on_drop: Callable[[str, OSError], None] | None = None) -> None:  # fmt: skip
        self.sinks = list(sinks)
        self.stats = [SinkStats(sink.name) for sink in self.sinks]
        self.on_drop = on_drop

    def send(self, frame: Frame, fps: float | Fraction) -> int:
        """Send ``frame`` everywhere; return how many sinks took it."""
        delivered = 0
        for sink, stats in zip(self.sinks, self.stats, strict=True):
            try:
                sink.send(frame, fps)
            except OSError as error:
                stats.dropped += 1
                stats.last_error = error.strerror or type(error).__name__
                if self.on_drop is not None:
                    self.on_drop(sink.name, error)
            else:
                stats.sent += 1
                delivered += 1
        return delivered

    @property
    def dropped(self) -> int:
        return sum(stats.dropped for stats in self.stats)

    def summary(self) -> str:
        """One line per sink: frames sent and dropped, with the last error."""
        return "\n".join(str(stats) for stats in self.stats)

    def close(self) -> None:
        """Close every sink, even when one fails to (its error is kept in its stats)."""
        for sink, stats in zip(self.sinks, self.stats, strict=True):
            try:
                sink.close()
            except OSError as error:
                stats.last_error = error.strerror or type(error).__name__

    def __enter__(self) -> FanOut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
