"""``A2FControllerService/ProcessAudioStream`` (the NIM's bidirectional stream) and
``grpc.health.v1.Health`` on one grpc.aio server.

One call: header first (checked, mapped: :mod:`.nim_header`), a stream slot reserved, the
``AnimationDataStreamHeader`` sent; then a reader task takes the client's audio messages into
the hub while this coroutine sends every frame as soon as the hub's worker delivers it (one
``AnimationData`` per frame: its weights, its time code and the audio it covers, the echo), and
at the end the ``END_OF_A2F_AUDIO_PROCESSING`` event and a ``Status``. Every refusal is a
``Status`` ERROR naming the cause; the call ends and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import A2XError
from . import nim_messages as m
from .hub import NIM_BLENDSHAPE_NAMES, ModelHub, ServiceBusyError, StreamHandle, mailbox_for
from .nim_header import HeaderPlan, plan_header

log = logging.getLogger("a2x_core")


def status(code: int, message: str) -> Any:
    return m.AnimationDataStream(status=m.Status(code=code, message=message))


def bearer_ok(metadata: Any, token: str | None) -> bool:
    """Whether the call carries ``authorization: Bearer <token>`` (always, without a token:
    the hosted NIM's ``authorization``/``function-id`` metadata is accepted and ignored)."""
    if token is None:
        return True
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, given = value.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  token.encode()):  # fmt: skip
                return True
    return False


@dataclass
class _Call:
    """One ProcessAudioStream call's state shared by its reader and writer."""

    plan: HeaderPlan
    fps: Fraction
    queue: asyncio.Queue[tuple[str, Any]]
    handle: StreamHandle | None = None
    received: int = 0  # samples at the header's rate
    echo: bytearray = field(default_factory=bytearray)  # received PCM not yet echoed
    echo_start: int = 0  # sample index of echo[0]
    new_keys: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def frame_end(self, index: int) -> int:
        """First input sample after frame ``index``'s interval ``[k/fps, (k+1)/fps)`` (integer
        arithmetic: the Fraction's was a few microseconds of every frame message)."""
        return (index + 1) * self.plan.rate * self.fps.denominator // self.fps.numerator

    def take_echo(self, end: int) -> tuple[int, bytes]:
        """The received audio from the last echo up to sample ``end`` (start sample, bytes)."""
        start = self.echo_start
        end = max(start, min(end, self.received))
        chunk = bytes(self.echo[: (end - start) * 2])
        del self.echo[: (end - start) * 2]
        self.echo_start = end
        return start, chunk


class NimService:
    """The servicer; ``hub`` runs the model, ``token`` (optional) guards every call."""

    def __init__(self, hub: ModelHub, token: str | None = None) -> None:
        self.hub = hub
        self.token = token

    def handler(self) -> Any:
        import grpc

        method = grpc.stream_stream_rpc_method_handler(
            self.process_audio_stream,
            request_deserializer=m.AudioStream.FromString,
            response_serializer=m.AnimationDataStream.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(m.SERVICE_NAME, {m.METHOD_NAME: method})

    async def process_audio_stream(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        if not bearer_ok(context.invocation_metadata(), self.token):
            yield status(m.ERROR, "unauthorised: this server needs the metadata "
                         "'authorization: Bearer <token>' (a2x serve --token)")  # fmt: skip
            return
        limits = self.hub.limits
        incoming = requests.__aiter__()
        try:
            first = await asyncio.wait_for(incoming.__anext__(), limits.idle_timeout_s)
        except StopAsyncIteration:
            yield status(m.ERROR, "the stream ended before its header")
            return
        except TimeoutError:
            yield status(m.ERROR, f"no header within {limits.idle_timeout_s:g} s (idle timeout)")
            return
        if first.WhichOneof("stream_part") != "audio_stream_header":
            yield status(m.ERROR, "The header must be sent as the first message "
                         "(AudioStream.audio_stream_header)")  # fmt: skip
            return
        try:
            plan = plan_header(first.audio_stream_header, self.hub.model, limits,
                               self.hub.emotion_model)  # fmt: skip
            number = self.hub.reserve()
        except (A2XError, ServiceBusyError) as error:
            yield status(m.ERROR, str(error))
            return
        call = _Call(plan, self.hub.fps, asyncio.Queue())
        reader = None
        try:
            yield self._stream_header(plan)
            reader = asyncio.create_task(self._read(incoming, call, number))
            while True:
                kind, payload = await call.queue.get()
                if kind == "frames":
                    for message in self._frames(call, payload, final=False):
                        yield message
                elif kind == "closed":
                    for message in self._frames(call, payload, final=True):
                        yield message
                    yield m.AnimationDataStream(event=m.Event(event_type=0))
                    notes = "; ".join(plan.notes)
                    yield status(m.SUCCESS, "sent all data" + (f" ({notes})" if notes else ""))
                    return
                else:  # "error"
                    yield status(m.ERROR, payload)
                    return
        finally:
            if reader is not None:
                reader.cancel()
            if call.handle is not None and not call.handle.done:
                call.handle.cancel()  # the client left or the call failed: free the track
            self.hub.release()

    def _stream_header(self, plan: HeaderPlan) -> Any:
        header = m.AnimationDataStreamHeader(start_time_code_since_epoch=time.time())
        header.audio_header.CopyFrom(m.AudioHeader(
            audio_format=0, channel_count=1, samples_per_second=plan.rate, bits_per_sample=16
        ))  # fmt: skip
        header.skel_animation_header.blend_shapes.extend(NIM_BLENDSHAPE_NAMES)
        return m.AnimationDataStream(animation_data_stream_header=header)

    async def _read(self, incoming: AsyncIterator[Any], call: _Call, number: int) -> None:
        """Client messages into the hub until end of audio; protocol faults end the call."""
        limits = self.hub.limits
        mailbox = mailbox_for(asyncio.get_running_loop())

        def deliver(item: tuple[str, Any]) -> None:
            mailbox.post(call.queue, item)

        def fail(message: str) -> None:
            call.queue.put_nowait(("error", message))

        loop = asyncio.get_running_loop()
        #: when the last message came, and whether the reader waits for the next one
        last: list[Any] = [loop.time(), True]

        async def watchdog() -> None:
            """The idle timeout, for the whole call: one check every quarter of it, instead of
            a timer (asyncio.wait_for: a task) around every message."""
            while True:
                idle = loop.time() - last[0] if last[1] else 0.0
                if idle >= limits.idle_timeout_s:
                    reader.cancel()
                    return
                await asyncio.sleep(min(limits.idle_timeout_s - idle + 0.01,
                                        limits.idle_timeout_s / 4))  # fmt: skip

        reader = asyncio.current_task()
        guard = asyncio.create_task(watchdog())
        try:
            await self._read_messages(incoming, call, number, deliver, fail, last, loop)
        except asyncio.CancelledError:
            if guard.done() and not guard.cancelled():  # the watchdog: idle timeout
                return fail(f"no message for {limits.idle_timeout_s:g} s (idle timeout); "
                            "send audio or end_of_audio")  # fmt: skip
            raise
        finally:
            guard.cancel()

    async def _read_messages(self, incoming: AsyncIterator[Any], call: _Call, number: int,
                             deliver: Any, fail: Any, last: list[Any],
                             loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        while True:
            last[1] = True
            try:
                message = await incoming.__anext__()
            except StopAsyncIteration:  # the client closed its side: end of audio
                message = m.AudioStream(end_of_audio=m.AudioStream.EndOfAudio())
            last[0], last[1] = loop.time(), False
            part = message.WhichOneof("stream_part")
            if part == "end_of_audio":
                if call.handle is None:
                    return fail("end_of_audio before any audio: nothing to animate")
                call.handle.close()
                return
            if part != "audio_with_emotion":
                return fail("the header must be sent only once, first" if part else
                            "an empty AudioStream message (set audio_with_emotion)")  # fmt: skip
            try:
                await self._audio(message.audio_with_emotion, call, number, deliver)
            except A2XError as error:
                return fail(str(error))

    async def _audio(self, chunk: Any, call: _Call, number: int, deliver: Any) -> None:
        """One ``AudioWithEmotion``: checked, echoed later, pushed (the stream opens on the
        first one, with its timed emotions as the stream's emotion keys)."""
        from ..errors import ParameterError

        limits, rate = self.hub.limits, call.plan.rate
        data = chunk.audio_buffer
        if len(data) % 2:
            raise ParameterError(f"audio_buffer has {len(data)} bytes, not whole 16-bit samples",
                                 hint="send int16 little-endian PCM")  # fmt: skip
        samples = np.frombuffer(data, "<i2")
        if len(samples) > limits.max_message_s * rate:
            raise ParameterError(
                f"one audio_buffer holds {len(samples) / rate:.1f} s of audio, more than "
                f"{limits.max_message_s:g} s", hint="send the audio in smaller messages (1 s)",
            )  # fmt: skip
        if call.received + len(samples) > limits.max_stream_s * rate:
            raise ParameterError(f"the stream is longer than {limits.max_stream_s:g} s",
                                 hint="split the audio into several streams")  # fmt: skip
        keys = [(float(e.time_code), dict(e.emotion)) for e in chunk.emotions]
        for time_code, _ in keys:
            if not (np.isfinite(time_code) and time_code >= 0):
                raise ParameterError(f"emotion time_code={time_code} must be seconds >= 0")
        call.new_keys.extend(keys)
        if call.handle is None:
            options = self.hub.options_for(call.plan.parameters, keys,
                                           call.plan.emotion_parameters)  # fmt: skip
            if keys and self.hub.emotion_model is not None:
                call.plan.notes.append("timed emotions not applied: the emotions are detected "
                                       "by the Audio2Emotion model (--emotion-model)")  # fmt: skip
            elif keys and not self.hub.model.emotion_names:
                call.plan.notes.append(f"timed emotions not applied: the {self.hub.model.name} "
                                       "model takes no emotion input")  # fmt: skip
            handle, opened = self.hub.open(options, deliver, number, rate)
            call.handle = handle
            await asyncio.wrap_future(opened)
            keys = []
        call.echo.extend(data)
        call.received += len(samples)
        call.handle.push(samples, rate, keys)

    def _frames(self, call: _Call, frames: list[Any], final: bool) -> list[Any]:
        """One AnimationData per frame: weights, time code, the audio echo (the last frame of
        the stream takes the rest of the audio), and the emotion aggregate (models with an
        emotion input; ``a2e_output`` left out: NVIDIA's sample client fails on it)."""
        names = self.hub.model.emotion_names
        out = []
        for k, frame in enumerate(frames):
            end = call.received if final and k == len(frames) - 1 else call.frame_end(frame.index)
            start, pcm = call.take_echo(end)
            data = m.AnimationData()
            weights = data.skel_animation.blend_shape_weights.add(time_code=frame.time_s)
            weights.values.extend(call.plan.shape(frame.weights).tolist())
            data.audio.time_code = start / call.plan.rate
            data.audio.audio_buffer = pcm
            if names:
                aggregate = m.EmotionAggregate()
                for time_code, values in call.new_keys:
                    aggregate.input_emotions.add(time_code=time_code, emotion=values)
                call.new_keys.clear()
                aggregate.a2f_smoothed_output.add(
                    time_code=frame.time_s, emotion=dict(zip(names, frame.emotions.tolist(), strict=False))
                )  # fmt: skip
                meta = data.metadata["emotion_aggregate"]
                meta.type_url = m.EMOTION_AGGREGATE_TYPE_URL
                meta.value = aggregate.SerializeToString()
            out.append(m.AnimationDataStream(animation_data=data))
        return out


async def add_health(server: Any, serving: bool = True) -> Any | None:
    """``grpc.health.v1.Health`` for "" and the controller service, SERVING (or NOT_SERVING
    until :func:`set_health`); returns the servicer (set NOT_SERVING on it when stopping)."""
    try:
        from grpc_health.v1 import health, health_pb2_grpc
    except ImportError:  # the serve extra names it; without it the service still runs
        log.warning("grpcio-health-checking is not installed: no grpc.health.v1.Health service")
        return None
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await set_health(servicer, serving)
    return servicer


async def set_health(servicer: Any, serving: bool) -> None:
    """SERVING or NOT_SERVING for "" and the controller service."""
    from grpc_health.v1 import health_pb2

    status = health_pb2.HealthCheckResponse.SERVING if serving else \
        health_pb2.HealthCheckResponse.NOT_SERVING  # fmt: skip
    for name in ("", m.SERVICE_NAME):
        await servicer.set(name, status)
