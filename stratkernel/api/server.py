"""Serving the API with uvicorn, hardened: no ``Server`` header, proxy headers not trusted, bounded
websocket frames. ``stratkernel run`` uses :func:`build_server` so the API shares the kernel's loop."""

from __future__ import annotations

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
