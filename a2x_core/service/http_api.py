"""The HTTP side of ``a2x serve`` (FastAPI): offline animation of an upload, the integration
guide's ``/process-audio``, a WebSocket stream for browsers, model list and readiness.

Bodies are read into memory up to ``Limits.max_request_bytes`` (413 beyond) and multipart is
parsed there (no spooling to the system temp folder); the audio goes to one file named by the
server inside the service's temp folder (the upload's own name is never a path), removed after
the request. Uploads and WebSocket streams take stream slots like gRPC streams (429 when full).
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from ..errors import A2XError, ParameterError
from ..names import ARKIT_52
from ..version import __version__
from .hub import NIM_BLENDSHAPE_NAMES, ModelHub, ServiceBusyError, mailbox_for
from .nim_grpc import bearer_ok

#: Suffixes an upload's file name may lend to the server's file (decoders sniff the content;
#: a suffix only matters for headerless audio, which needs raw_rate/raw_format).
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".raw", ".pcm"}
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "npz": "application/octet-stream"}
#: WebSocket sample formats: name -> NumPy dtype.
WS_FORMATS = {"s16le": "<i2", "f32le": "<f4"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def make_app(hub: ModelHub, *, token: str | None = None, temp_dir: Path) -> Any:
    app = FastAPI(
        title="a2x serve", version=__version__,
        description="Speech audio -> ARKit-52 facial animation. The NIM-compatible gRPC "
        "service runs on its own port (docs/service.md).",
    )  # fmt: skip
    offline = ThreadPoolExecutor(max_workers=1, thread_name_prefix="a2x-serve-offline")
    limits = hub.limits

    @app.exception_handler(HttpError)
    async def _http_error(request: Request, error: HttpError) -> Any:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    def authorise(request: Request) -> None:
        if not bearer_ok(list(request.headers.items()), token):
            raise HttpError(401, "unauthorised: send the header 'Authorization: Bearer <token>'")

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_request_bytes:
            raise HttpError(413, f"the request is {int(declared)} bytes, more than the "
                            f"{limits.max_request_bytes} this server takes")  # fmt: skip
        body = bytearray()
        parts = request.stream().__aiter__()
        while True:  # a client that stalls mid-upload loses its slot after the idle timeout
            try:
                part = await asyncio.wait_for(parts.__anext__(), limits.idle_timeout_s)
            except StopAsyncIteration:
                return bytes(body)
            except TimeoutError:
                raise HttpError(408, f"the upload stalled for {limits.idle_timeout_s:g} s") from None
            body += part
            if len(body) > limits.max_request_bytes:
                raise HttpError(413, f"the request is more than {limits.max_request_bytes} bytes")

    async def upload(request: Request) -> tuple[bytes, str, dict[str, list[str]]]:
        """(audio bytes, the upload's file suffix, form fields) of a multipart or raw body."""
        body = await read_body(request)
        fields: dict[str, list[str]] = {}
        content_type = request.headers.get("content-type", "")
        name = request.query_params.get("filename", "")
        if content_type.startswith("multipart/form-data"):
            audio = None
            for part in _multipart(content_type, body):
                field = part.get_param("name", header="content-disposition")
                filename = part.get_filename()
                payload = part.get_payload(decode=True) or b""
                if filename is not None or field == "file":
                    if audio is not None:
                        raise HttpError(400, "send one audio file per request")
                    audio, name = payload, filename or ""
                elif field:
                    fields.setdefault(field, []).append(payload.decode("utf-8", "replace"))
            if audio is None:
                raise HttpError(400, "the form has no file part (name it 'file')")
            body = audio
        if not body:
            raise HttpError(400, "the request has no audio (send a file part or a raw body)")
        suffix = Path(name).suffix.lower()
        return body, suffix if suffix in AUDIO_SUFFIXES else "", fields

    async def animate_upload(request: Request, fields_override: dict[str, Any] | None = None) -> Any:
        """Decode + animate one upload on the offline thread (a stream slot held meanwhile)."""
        from ..api import Animator
        from ..audio.decode import decode_audio
        from ..cli import _options

        authorise(request)
        try:
            hub.reserve()
        except ServiceBusyError as error:
            raise HttpError(429, str(error)) from None
        path = None
        try:
            data, suffix, fields = await upload(request)
            query = {k: request.query_params.getlist(k) for k in request.query_params}
            args = _request_args({**query, **fields}, hub, fields_override or {})
            served = _served_model(hub)
            if args.model not in (None, "", served, hub.model.name):
                raise ParameterError(f"model={args.model!r} is not served here (this server runs "
                                     f"{served})", hint="GET /v1/models lists it")  # fmt: skip
            options = _options(args)
            path = temp_dir / f"{uuid.uuid4().hex}{suffix}"
            path.write_bytes(data)

            def work() -> Any:
                audio = decode_audio(path, start_s=options.start_s, end_s=options.end_s,
                                     raw_rate=args.raw_rate, raw_format=args.raw_format)  # fmt: skip
                result = Animator(hub.model, options).animate(audio)
                result.audio_path = ""
                return result, args

            return await asyncio.wrap_future(offline.submit(work))
        except A2XError as error:  # the server's file name means nothing to the client
            text = str(error).replace(str(path), "the upload") if path else str(error)
            raise HttpError(400, text) from None
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
            hub.release()

    @app.post("/v1/animate", summary="Animate an audio upload (multipart 'file' or raw body)",
              openapi_extra=_upload_openapi())  # fmt: skip
    async def animate(request: Request) -> Any:
        """The outputs of ``a2x animate``. Options as query parameters or form fields with the
        CLI's names: ``fps``, ``format`` (json, csv, npz), ``transcript``, ``emotion``
        (NAME=VALUE, repeatable), ``param`` (KEY=VALUE, repeatable), ``start``, ``end``,
        ``seed``, ``strength``, ``smoothing``, ``fast``, ``no_blinks``, ``raw_rate``,
        ``raw_format``, ``model`` (must be the served model)."""
        from ..export.writers import write_result

        result, args = await animate_upload(request)
        out = temp_dir / f"{uuid.uuid4().hex}.{args.format}"
        try:
            await asyncio.wrap_future(offline.submit(write_result, result, out))
            content = out.read_bytes()
        finally:
            out.unlink(missing_ok=True)
        return Response(content, media_type=MEDIA_TYPES[args.format], headers={
            "Content-Disposition": f'attachment; filename="animation.{args.format}"'})

    @app.post("/process-audio", summary="Blendshapes of an upload, as the integration guide",
              openapi_extra=_upload_openapi())  # fmt: skip
    async def process_audio(request: Request) -> Any:
        """``{blendshapes [frames][52], timestamps, fps, duration, num_frames,
        blendshape_names}`` (the FastAPI integration guide's result)."""
        result, _ = await animate_upload(request)
        weights = np.asarray(result.weights, np.float64)
        return {
            "blendshapes": weights.round(6).tolist(),
            "timestamps": (np.arange(len(weights)) / float(result.fps)).tolist(),
            "fps": float(result.fps),
            "duration": float(result.duration_s),
            "num_frames": int(len(weights)),
            "blendshape_names": list(ARKIT_52),
        }

    @app.get("/v1/models", summary="The served model")
    async def models(request: Request) -> Any:
        authorise(request)
        model = hub.model
        return {"models": [{
            "id": _served_model(hub), "name": model.name, "kind": model.kind,
            "fps": f"{hub.fps.numerator}/{hub.fps.denominator}",
            "emotions": list(model.emotion_names), "blendshape_names": list(NIM_BLENDSHAPE_NAMES),
            "active_streams": hub.active_streams, "max_streams": limits.max_streams,
        }]}  # fmt: skip

    @app.get("/v1/health/ready", summary="Ready to serve (as the NIM's)")
    async def ready() -> Any:
        if hub.stopping:
            return JSONResponse({"status": "stopping"}, status_code=503)
        if not hub.serving:  # --processes N: not every process is ready
            return JSONResponse({"status": "starting"}, status_code=503)
        return {"status": "ready"}

    @app.get("/v1/health/live", summary="The process is up")
    async def live() -> Any:
        return {"status": "live"}

    @app.websocket("/v1/stream")
    async def stream(socket: WebSocket) -> None:
        """Binary PCM in (``?rate=16000&format=s16le|f32le``), JSON out: one ``header``, then
        ``frame`` objects as they are ready, then ``end``; send the text ``end`` (or
        ``{"type": "end"}``) when the audio is over. Errors: ``{"type": "error"}``, then the
        socket closes (1008 refused, 1013 busy, 1011 failed)."""
        await _websocket_stream(socket, hub, token)

    app.state.offline = offline
    return app


async def _websocket_stream(socket: Any, hub: ModelHub, token: str | None) -> None:
    from starlette.websockets import WebSocketDisconnect

    await socket.accept()
    params = socket.query_params
    headers = list(socket.headers.items())
    if token is not None and not (bearer_ok(headers, token) or
                                  bearer_ok([("authorization", f"Bearer {params.get('token', '')}")], token)):  # fmt: skip
        await _ws_fail(socket, 1008, "unauthorised: send 'Authorization: Bearer <token>' or ?token=")
        return
    rate_text, fmt = params.get("rate", "16000"), params.get("format", "s16le")
    if fmt not in WS_FORMATS or not rate_text.isdigit() or not (
            hub.limits.min_rate <= int(rate_text) <= hub.limits.max_rate):  # fmt: skip
        await _ws_fail(socket, 1008, f"rate={rate_text} format={fmt} not supported: use rate "
                       f"{hub.limits.min_rate}..{hub.limits.max_rate} and format s16le or f32le")  # fmt: skip
        return
    rate, dtype = int(rate_text), np.dtype(WS_FORMATS[fmt])
    options = hub.options_for({}, ())
    if "language" in params:  # the default model's spoken language, per connection
        try:
            options = options.with_changes(language=params["language"])
        except ParameterError as error:
            await _ws_fail(socket, 1008, f"language: {error}")
            return
    try:
        number = hub.reserve()
    except ServiceBusyError as error:
        await _ws_fail(socket, 1013, str(error))
        return
    mailbox = mailbox_for(asyncio.get_running_loop())
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    handle = None
    reader = None
    try:
        handle, opened = hub.open(options, lambda item: mailbox.post(queue, item),
                                  number, rate)  # fmt: skip
        await asyncio.wrap_future(opened)
        await socket.send_json({"type": "header", "fps": float(hub.fps), "rate": rate,
                                "blendshape_names": list(NIM_BLENDSHAPE_NAMES)})  # fmt: skip

        async def read() -> None:
            received = 0
            while True:
                try:
                    message = await asyncio.wait_for(socket.receive(), hub.limits.idle_timeout_s)
                except TimeoutError:
                    queue.put_nowait(("error", f"no message for {hub.limits.idle_timeout_s:g} s "
                                      "(idle timeout)"))  # fmt: skip
                    return
                if message["type"] == "websocket.disconnect":
                    queue.put_nowait(("gone", None))
                    return
                if message.get("bytes") is not None:
                    data = message["bytes"]
                    if len(data) % dtype.itemsize:
                        queue.put_nowait(("error", f"a binary message of {len(data)} bytes is not "
                                          f"whole {fmt} samples"))  # fmt: skip
                        return
                    samples = np.frombuffer(data, dtype)
                    received += len(samples)
                    if received > hub.limits.max_stream_s * rate:
                        queue.put_nowait(("error", f"the stream is longer than "
                                          f"{hub.limits.max_stream_s:g} s"))  # fmt: skip
                        return
                    handle.push(samples, rate)
                else:
                    text = (message.get("text") or "").strip()
                    if text == "end" or text.replace(" ", "") == '{"type":"end"}':
                        handle.close()
                        return
                    queue.put_nowait(("error", "text messages: send 'end' when the audio is over"))
                    return

        reader = asyncio.create_task(read())
        sent = 0
        while True:
            kind, payload = await queue.get()
            if kind in ("frames", "closed"):
                for frame in payload:
                    await socket.send_text(json.dumps({
                        "type": "frame", "index": frame.index, "time_s": frame.time_s,
                        "weights": np.round(frame.weights.astype(np.float64), 6).tolist(),
                    }))  # fmt: skip
                    sent += 1
                if kind == "closed":
                    await socket.send_json({"type": "end", "frames": sent})
                    await socket.close(1000)
                    return
            elif kind == "gone":
                return
            else:
                await _ws_fail(socket, 1011 if "internal" in str(payload) else 1008, str(payload))
                return
    except WebSocketDisconnect:
        return
    except A2XError as error:
        await _ws_fail(socket, 1008, str(error))
    finally:
        if reader is not None:
            reader.cancel()
        if handle is not None and not handle.done:
            handle.cancel()
        hub.release()


async def _ws_fail(socket: Any, code: int, message: str) -> None:
    try:
        await socket.send_json({"type": "error", "message": message})
        await socket.close(code)
    except Exception:  # the client is gone already
        pass


def _multipart(content_type: str, body: bytes) -> list[Any]:
    """The parts of a multipart/form-data body (parsed in memory)."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise HttpError(400, "the multipart body cannot be parsed (boundary missing?)")
    return list(message.iter_parts())


#: Request options -> (argparse attribute, kind); the CLI's names, '-' or '_' accepted.
_OPTION_FIELDS = {
    "model": ("model", str), "fps": ("fps", str), "format": ("format", str),
    "transcript": ("transcript", str), "emotion": ("emotion", list), "param": ("param", list),
    "start": ("start", float), "end": ("end", float), "seed": ("seed", int),
    "strength": ("strength", float), "smoothing": ("smoothing", float), "fast": ("fast", bool),
    "no_blinks": ("no_blinks", bool), "raw_rate": ("raw_rate", int),
    "raw_format": ("raw_format", str), "identity": ("identity", str),
    "language": ("language", str),
}  # fmt: skip


def _request_args(values: dict[str, list[str]], hub: ModelHub, override: dict[str, Any]) -> argparse.Namespace:
    """The CLI's ``animate`` namespace from request fields (the server's fps by default).

    Raises:
        ParameterError: an unknown field or a value of the wrong kind, named.
    """
    args = argparse.Namespace(
        audio=["upload"], model=None, fps=f"{hub.fps.numerator}/{hub.fps.denominator}",
        format="json", transcript=None, transcript_file=None, start=None, end=None, fast=False,
        seed=0, strength=1.0, smoothing=0.0, no_blinks=False, emotion=[], emotion_file=None,
        emotion_model=None, emotion_window=60000, emotion_cadence="sdk", emotion_skip=None,
        emotion_mix="blend", emotion_param=[], identity=None, param=[], geometry=False,
        backend=hub.base_options.backend, threads=hub.base_options.threads,
        device=hub.base_options.device, precision=hub.base_options.precision,
        compile_network=False, raw_rate=None, raw_format=None,
    )  # fmt: skip
    for key, texts in values.items():
        name = key.replace("-", "_")
        if name in ("filename", "token"):
            continue
        if name not in _OPTION_FIELDS:
            raise ParameterError(f"unknown option {key!r}",
                                 hint=f"use {', '.join(sorted(_OPTION_FIELDS))}")  # fmt: skip
        attr, kind = _OPTION_FIELDS[name]
        if kind is list:
            setattr(args, attr, list(texts))
            continue
        text = texts[-1]
        try:
            if kind is bool:
                value: Any = text.lower() in ("1", "true", "yes", "on", "")
            else:
                value = kind(text)
        except ValueError:
            raise ParameterError(f"{key}={text!r} is not a {kind.__name__}") from None
        setattr(args, attr, value)
    for key, value in override.items():
        setattr(args, key, value)
    if args.format not in MEDIA_TYPES:
        raise ParameterError(f"format={args.format!r} is unknown", hint="use json, csv or npz")
    return args


def _served_model(hub: ModelHub) -> str:
    package = getattr(hub.model, "package", None)
    return str(getattr(package, "model_json", "default")) if package is not None else "default"


def _upload_openapi() -> dict[str, Any]:
    """The request bodies the endpoint reads by hand, for the docs at /docs."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }}}  # fmt: skip

