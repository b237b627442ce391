"""Serving the API with uvicorn, hardened: no ``Server`` header, proxy headers not trusted, bounded
websocket frames. ``stratkernel run`` uses :func:`build_server` so the API shares the kernel's loop."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from .config import ApiConfig


def build_server(app: FastAPI, config: ApiConfig, *, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``config.host:config.port``; run it with ``await server.serve()``."""
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        server_header=False,
        date_header=True,
        # The socket peer is the client address used by the login rate limit; a header any client can
        # set must not override it. Put a reverse proxy in front and configure it there instead.
        proxy_headers=False,
        forwarded_allow_ips="",
        ws_max_size=65536,
        lifespan="on",
        timeout_keep_alive=5,
    )
    return uvicorn.Server(uv_config)


class ApiThread:
    """Serve an app on its own thread and event loop, so requests never run on the kernel's loop.

    Pair with :class:`stratkernel.api.bridge.KernelBridge` as the app's ``service``::

        bridge = KernelBridge(service, asyncio.get_running_loop())
        api = ApiThread(create_app(config, service=bridge), config)   # the app owns its UserStore
        api.start()            # returns once listening (raises if the server failed to start)
        ...
        api.stop()
    """

    def __init__(self, app: FastAPI, config: ApiConfig, *, log_level: str = "warning") -> None:
        self.server = build_server(app, config, log_level=log_level)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.port: int | None = None

    def start(self, sockets: list[socket.socket] | None = None, timeout: float = 60.0) -> None:
        def run() -> None:
            try:
                self.server.run(sockets=sockets)
            except BaseException as exc:  # reported to start()'s caller instead of dying silently
                self._error = exc

        self._thread = threading.Thread(target=run, name="stratkernel-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the API server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start in time")
            time.sleep(0.01)
        if self.server.servers:
            self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
