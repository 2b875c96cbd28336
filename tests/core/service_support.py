"""Shared pieces of the ``a2x serve`` tests: a server on 127.0.0.1 with free ports, started and
stopped by the test."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from a2x_core.service.hub import Limits, ModelHub
from a2x_core.service.server import ServeConfig, ServiceServer


@contextlib.contextmanager
def running_server(model: Any, *, fps: int = 30, grpc: bool = True, http: bool = False,
                   token: str | None = None, emotion_model: Any = None,
                   base_options: Any = None, **limits: Any) -> Iterator[ServiceServer]:  # fmt: skip
    """A started server (ports chosen by the OS); stopped on the way out."""
    hub = ModelHub(model, fps=fps, limits=Limits(**limits), emotion_model=emotion_model,
                   base_options=base_options)  # fmt: skip
    server = ServiceServer(hub, ServeConfig(host="127.0.0.1", grpc_port=0 if grpc else None,
                                            http_port=0 if http else None, token=token))  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=2.0)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` (bounded in time); whether it came true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
