"""The servers of ``a2x serve`` on one asyncio loop in a background thread: the NIM gRPC
service (+ health) and the HTTP API. ``start()`` returns once both listen (ports resolved when
0 was asked); ``stop()`` refuses new calls, lets running ones finish for ``grace`` seconds,
then cancels the rest and ends the model's worker."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import A2XError, ParameterError
from .hub import ModelHub
from .nim_grpc import NimService, add_health, set_health

log = logging.getLogger("a2x_core")

#: gRPC's own cap on one message: above the largest audio message the limits allow (10 s at
#: 144 kHz, 2.9 MB), so that a too-long message gets the service's clear Status, not a bare
#: RESOURCE_EXHAUSTED.
GRPC_MAX_MESSAGE_BYTES = 8 << 20


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    grpc_port: int | None = 52000  # None: no gRPC
    http_port: int | None = 8000  # None: no HTTP
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: listen with SO_REUSEPORT (gRPC and HTTP): the processes of ``--processes N`` share the
    #: ports; off for one process, so that a taken port is an error, not a silent share
    reuse_port: bool = False
    #: the interpreter's GIL switch interval while serving (None: Python's 5 ms). The model's
    #: thread releases the GIL in every torch call and GPU wait; with the I/O thread busy
    #: (hundreds of streams) each release cost it up to a whole interval to get the GIL back,
    #: which made a bank tick several times slower in the server than alone
    switch_interval_s: float | None = 0.0005
    #: health SERVING from the start; a group's process starts NOT_SERVING and turns SERVING
    #: when the parent says every process is ready (:meth:`ServiceServer.set_serving`)
    serving: bool = True
    #: streams the hub's stream bank is warmed up for before the server listens
    #: (:meth:`.hub.ModelHub.warm_up`; 0: none; :func:`warm_streams_for` picks it for the CLI)
    warm_streams: int = 0


def warm_streams_for(hub: ModelHub, max_streams: int, processes: int = 1) -> int:
    """How many streams ``a2x serve`` warms one process's stream bank up for: twice its share
    of ``--max-streams`` (the kernel spreads connections over the processes unevenly), at
    most all of them; only on a CUDA bank (CUDA graphs and cuDNN's timing are per shape: a
    CPU bank's first rounds cost little more than the next ones)."""
    bank = hub.bank
    if bank is None or getattr(getattr(bank, "device", None), "type", None) != "cuda":
        return 0
    share = -(-max_streams // max(processes, 1))
    return min(max_streams, 2 * share)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServiceServer:
    """gRPC and HTTP around one :class:`ModelHub`."""

    def __init__(self, hub: ModelHub, config: ServeConfig) -> None:
        self.hub = hub
        self.config = config
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.temp_dir = Path(tempfile.mkdtemp(prefix="a2x-serve-"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._grpc: Any = None
        self._health: Any = None
        self._http: Any = None
        self._http_task: Any = None
        self._switch_interval: float | None = None  # Python's, restored at stop
        self.warm_seconds: float | None = None  # what the warm-up took (None: not run)

    def start(self, timeout: float = 60.0) -> ServiceServer:
        """Warm the model up (``warm_streams``), then listen; returns once both servers do."""
        if self.config.warm_streams > 0 and self.warm_seconds is None:
            self.warm_seconds = self.hub.warm_up(self.config.warm_streams)
            log.info("warmed the stream bank up for %d streams in %.1f s",
                     self.config.warm_streams, self.warm_seconds)  # fmt: skip
        started: Future[None] = Future()
        self.hub.serving = self.config.serving
        if self.config.switch_interval_s is not None and self._switch_interval is None:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.switch_interval_s)
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except SystemExit:  # uvicorn's own exit when it cannot bind
                if self._http_task is not None and self._http_task.done():
                    with contextlib.suppress(BaseException):
                        self._http_task.exception()  # retrieved: no "never retrieved" noise
                started.set_exception(_cannot_listen(
                    f"{self.config.host}:{self.config.http_port}", "--http-port"))  # fmt: skip
                return
            except BaseException as error:
                started.set_exception(error)
                return
            started.set_result(None)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="a2x-serve-io", daemon=True)
        self._thread.start()
        started.result(timeout)
        return self

    async def _start(self) -> None:
        import grpc

        cfg = self.config
        if cfg.grpc_port is not None:
            self._grpc = grpc.aio.server(options=[
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),
            ])  # fmt: skip
            self._grpc.add_generic_rpc_handlers((NimService(self.hub, cfg.token).handler(),))
            self._health = await add_health(self._grpc, cfg.serving)
            address = f"{_bracketed(cfg.host)}:{cfg.grpc_port}"
            try:
                if cfg.tls_cert is not None:
                    credentials = grpc.ssl_server_credentials(
                        [(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())]
                    )
                    self.grpc_port = self._grpc.add_secure_port(address, credentials)
                else:
                    self.grpc_port = self._grpc.add_insecure_port(address)
            except RuntimeError:  # grpc's "Failed to bind"
                raise _cannot_listen(address, "--grpc-port") from None
            await self._grpc.start()
        if cfg.http_port is not None:
            import uvicorn

            from .http_api import make_app

            app = make_app(self.hub, token=cfg.token, temp_dir=self.temp_dir)
            config = uvicorn.Config(app, host=cfg.host, port=cfg.http_port, log_level="warning",
                                    lifespan="off", ws_max_size=1 << 20)  # fmt: skip
            self._http = uvicorn.Server(config)
            self._http.install_signal_handlers = lambda: None  # the CLI owns the signals
            sockets = None
            if cfg.reuse_port:  # uvicorn has no SO_REUSEPORT option: its socket made here
                try:
                    sockets = [_reuse_port_socket(cfg.host, cfg.http_port)]
                except OSError:
                    if self._grpc is not None:
                        await self._grpc.stop(0)
                    raise _cannot_listen(f"{cfg.host}:{cfg.http_port}", "--http-port") from None
            self._http_task = asyncio.ensure_future(self._http.serve(sockets=sockets))
            while not self._http.started:
                if self._http_task.done():  # uvicorn logs the bind error and exits its task
                    if self._grpc is not None:
                        await self._grpc.stop(0)
                    raise _cannot_listen(f"{cfg.host}:{cfg.http_port}", "--http-port")
                await asyncio.sleep(0.01)
            self.http_port = self._http.servers[0].sockets[0].getsockname()[1]

    def set_serving(self, serving: bool) -> None:
        """What both health checks answer (gRPC SERVING/NOT_SERVING, HTTP ready/503); any
        thread. A group's parent sets it: SERVING only while every process is ready."""
        self.hub.serving = serving
        if self._health is not None and self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(set_health(self._health, serving),
                                                      self._loop)  # fmt: skip
            future.result(10)

    def stop(self, grace: float = 5.0) -> None:
        """Stop both servers and the model's worker; the temp dir goes too."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._stop(grace), self._loop)
            try:
                future.result(grace + 10)
            except Exception:  # stopping anyway
                log.debug("service stop", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self.hub.stop()
        import shutil

        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    async def _stop(self, grace: float) -> None:
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._http is not None:
            self._http.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._http_task is not None:
            try:
                await asyncio.wait_for(self._http_task, grace + 1)
            except (TimeoutError, asyncio.CancelledError):
                pass


def _cannot_listen(address: str, flag: str) -> A2XError:
    return ParameterError(f"cannot listen on {address}: the port is taken or the address is not "
                          "this machine's", hint=f"choose another {flag} or --host")  # fmt: skip


def _reuse_port_socket(host: str, port: int) -> Any:
    """A listening TCP socket with SO_REUSEPORT (Linux, BSD, macOS) for uvicorn."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
