"""Serving the API from its own process, so API load cannot take the kernel's interpreter.

In one process, a busy API thread holds the GIL that the kernel needs for every bar. Here the API
runs in a child process and reaches the kernel's :class:`~stratkernel.core.service.KernelService`
over a Unix socket (mode 0600, in the data directory), one JSON line per call:

* the kernel side (:func:`serve_service`) runs each call on the kernel's loop and answers
  ``{"id", "result"}`` or ``{"id", "error": {"type", ...}}``; only the facade's public methods can be
  named, and arguments and results are plain JSON;
* the API side (:class:`ServiceProxy`) looks like the facade to the routes: ``proxy.status()`` returns
  an awaitable, errors come back as the same :mod:`stratkernel.core.errors` classes;
* ``subscribe`` opens a second connection that streams kernel events.

``python -m stratkernel.api.process`` is the child's entry point; ``stratkernel run`` starts it when
``[api] mode = "process"``. The JWT secret reaches it through the environment, never the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core import errors as errors_mod
from ..core.events import Event
from .routes_kernel import jsonable

log = logging.getLogger("stratkernel.api.process")

MAX_LINE = 8 * 1024 * 1024
# the facade's methods the API may call; anything else is refused by name
ALLOWED = frozenset({
    "status", "plugins_report", "strategies", "logs", "upload_script", "start_strategy", "stop_strategy",
    "set_params", "submit_order", "cancel_order", "orders", "fills", "positions", "equity", "audit", "risk",
    "halt", "resume", "flatten", "set_limits", "submit_backtest", "backtest", "backtest_jobs",
    "cancel_backtest", "scripts_dir",
})  # fmt: skip


def _error(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, errors_mod.ValidationError):
        out.update(field=exc.field, value=repr(exc.value)[:200], reason=exc.reason)
    elif isinstance(exc, errors_mod.ConfigError):
        out.update(field=exc.field, reason=str(exc).split(": ", 1)[-1])
    elif isinstance(exc, errors_mod.StrategyError):
        out.update(exc.as_dict())
    return out


def _raise(err: dict[str, Any]) -> None:
    kind = err.get("type")
    if kind == "ValidationError":
        raise errors_mod.ValidationError(str(err.get("field")), err.get("value"), str(err.get("reason")))
    if kind == "ConfigError":
        raise errors_mod.ConfigError(str(err.get("field")), str(err.get("reason")))
    if kind == "StrategyError" and err.get("kind") in ("load", "runtime", "limit", "policy"):
        line = err.get("line")
        raise errors_mod.StrategyError(
            err["kind"],
            str(err.get("message")),
            line=line if type(line) is int else None,
            strategy=str(err["strategy"]) if err.get("strategy") else None,
        )
    cls = getattr(errors_mod, str(kind), None)
    if isinstance(cls, type) and issubclass(cls, errors_mod.StratkernelError) and cls not in (
        errors_mod.StrategyError, errors_mod.PluginError, errors_mod.DuplicateNameError,
        errors_mod.OrderRejectedError,
    ):  # fmt: skip
        raise cls(str(err.get("message")))
    raise errors_mod.StratkernelError(str(err.get("message")))


# -- kernel side -----------------------------------------------------------------------------------
async def serve_service(service: Any, path: Path) -> asyncio.AbstractServer:
    """Answer facade calls on a Unix socket only this user can open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unsubscribe: Callable[[], Any] | None = None
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if msg.get("op") == "subscribe":

                    def forward(
                        ev: Event, loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
                    ) -> None:
                        # a slow API process is skipped, never waited for: trading does not slow down
                        if writer.transport.get_write_buffer_size() > MAX_LINE:
                            return
                        data = json.dumps({"event": jsonable(ev.as_dict())}, default=str).encode() + b"\n"
                        loop.call_soon(writer.write, data)

                    unsubscribe = service.subscribe(forward)
                    continue
                reply: dict[str, Any] = {"id": msg.get("id")}
                name = msg.get("method")
                try:
                    if name not in ALLOWED:
                        raise errors_mod.ValidationError("method", name, "not a facade method")
                    result = getattr(service, name)(*msg.get("args", []), **msg.get("kwargs", {}))
                    if inspect.isawaitable(result):
                        result = await result
                    reply["result"] = jsonable(result)
                except Exception as exc:  # every failure goes back to the caller as a value
                    if not isinstance(exc, errors_mod.StratkernelError):
                        log.exception("facade call %s failed", name)
                    reply["error"] = _error(exc)
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, json.JSONDecodeError, asyncio.IncompleteReadError):
            return
        finally:
            if unsubscribe is not None:
                unsubscribe()
            writer.close()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(handle, path=str(path), limit=MAX_LINE)
    finally:
        os.umask(old)
    return server


# -- API side --------------------------------------------------------------------------------------
class ServiceProxy:
    """The facade, seen from the API process. Method calls return awaitables."""

    def __init__(self, path: Path | str, connections: int = 4) -> None:
        self.path = str(path)
        self._pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        self._size = connections
        self._opened = 0
        self._seq = 0

    async def _conn(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._pool is None:
            self._pool = asyncio.Queue()
        if self._pool.empty() and self._opened < self._size:
            self._opened += 1
            return await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
        return await self._pool.get()

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        reader, writer = await self._conn()
        self._seq += 1
        try:
            writer.write(
                json.dumps({"id": self._seq, "method": method, "args": args, "kwargs": kwargs}).encode()
                + b"\n"
            )
            await writer.drain()
            line = await reader.readline()
        except BaseException:
            writer.close()
            self._opened -= 1
            raise
        if not line:
            writer.close()
            self._opened -= 1
            raise errors_mod.StratkernelError("the kernel closed the connection")
        assert self._pool is not None
        self._pool.put_nowait((reader, writer))
        reply = json.loads(line)
        if "error" in reply:
            _raise(reply["error"])
        return reply.get("result")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in ALLOWED:
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, *args, **kwargs)

        return method

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        async def pump() -> None:
            backoff = 0.2
            while True:
                # the kernel went away or restarted: reconnect with a capped backoff
                with contextlib.suppress(ConnectionError, OSError, json.JSONDecodeError):
                    reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
                    writer.write(b'{"op":"subscribe"}\n')
                    await writer.drain()
                    backoff = 0.2
                    while line := await reader.readline():
                        ev = json.loads(line).get("event")
                        if isinstance(ev, dict):
                            callback(Event(str(ev.get("type")), int(ev.get("ts") or 0), ev.get("data") or {}))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

        task = asyncio.get_running_loop().create_task(pump())

        def unsubscribe() -> None:
            task.cancel()

        return unsubscribe


# -- starting and stopping the child ---------------------------------------------------------------
class ApiProcess:
    """The API child process plus the socket server answering it."""

    def __init__(
        self, proc: asyncio.subprocess.Process, server: asyncio.AbstractServer, port: int, socket_dir: Path
    ) -> None:
        self.proc = proc
        self.server = server
        self.port = port
        self.socket_dir = socket_dir

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()  # uvicorn shuts down on SIGTERM
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.server.close()
        await self.server.wait_closed()
        import shutil

        shutil.rmtree(self.socket_dir, ignore_errors=True)


async def start_api_process(
    service: Any,
    *,
    host: str,
    port: int,
    db_path: Path | str,
    secret_file: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> ApiProcess:
    """Serve ``service`` on ``socket_path`` and start the API child on ``host:port`` (0: a free port).
    Raises RuntimeError if the child does not come up."""
    import socket
    import tempfile

    # a private directory (0700) keeps the socket to this user, and its path short (Unix sockets: 108)
    socket_dir = Path(tempfile.mkdtemp(prefix="stratkernel-api-"))
    socket_path = socket_dir / "kernel.sock"
    server = await serve_service(service, socket_path)
    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    args = [str(socket_path), host, str(port), str(db_path)]
    if secret_file is not None:
        args.append(str(secret_file))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stratkernel.api.process", *args,
        env={**os.environ, **(env or {})}, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if proc.returncode is not None:
            server.close()
            raise RuntimeError(f"the API process exited with code {proc.returncode}")
        try:
            _r, w = await asyncio.open_connection(host, port)
            w.close()
            break
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                proc.kill()
                server.close()
                raise RuntimeError("the API process did not start listening in time") from None
            await asyncio.sleep(0.1)
    return ApiProcess(proc, server, port, socket_dir)


# -- the child process -----------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    """``python -m stratkernel.api.process SOCKET HOST PORT DB [SECRET_FILE]``: serve until SIGTERM."""
    from .app import create_app
    from .config import ApiConfig
    from .server import build_server

    sock, host, port, db = argv[0], argv[1], int(argv[2]), argv[3]
    kwargs: dict[str, Any] = {"host": host, "port": port, "db_path": db}
    if len(argv) > 4:
        kwargs["jwt_secret_file"] = argv[4]
    config = ApiConfig(**kwargs)
    server = build_server(create_app(config, service=ServiceProxy(sock)), config, log_level="warning")
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
