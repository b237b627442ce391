"""``/events`` over a real websocket: uvicorn on 127.0.0.1 in the test's loop, with a live kernel."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stratkernel.api.app import create_app
from stratkernel.api.server import build_server
from stratkernel.api.users import UserStore
from stratkernel.core.config import KernelConfig
from stratkernel.core.kernel import Kernel
from stratkernel.core.runtime import Runtime

from .conftest import FAST_HASHER, PASSWORDS, make_config, seed_users


@dataclass
class Live:
    http: httpx.AsyncClient
    ws_url: str
    port: int
    kernel: Kernel
    app: Any

    async def token(self, user: str) -> dict[str, Any]:
        r = await self.http.post("/auth/token", data={"username": user, "password": PASSWORDS[user]})
        assert r.status_code == 200
        return r.json()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[tuple[Any, asyncio.Task[Any], Runtime, UserStore, httpx.AsyncClient]] = []

    async def start(**overrides: Any) -> Live:
        kcfg = KernelConfig(data_dir=str(tmp_path / "k"), sandbox={"scripts_dir": str(tmp_path / "scripts")})
        runtime = Runtime(kcfg)
        kernel = await runtime.start()
        store = UserStore(kcfg.db_path, password_hasher=FAST_HASHER)
        await store.open()
        await seed_users(store)
        config = make_config(tmp_path, db_path=kcfg.db_path, **overrides)
        app = create_app(config, service=runtime.service, user_store=store)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Small send buffers (inherited by accepted sockets) so a client that stops reading pushes
        # back on the server quickly, as a slow client on a real network would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = build_server(app, config, log_level="warning")
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")
        made.append((server, task, runtime, store, http))
        return Live(http, f"ws://127.0.0.1:{port}/events", port, kernel, app)

    yield start
    for server, task, runtime, store, http in made:
        await http.aclose()
        server.should_exit = True
        await task
        assert runtime.kernel is not None
        await runtime.kernel.shutdown()
        await runtime._close()
        await store.close()


async def next_event(ws: ClientConnection, wanted: str) -> dict[str, Any]:
    """The next message of type ``wanted``, skipping heartbeats and other event types."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if msg["type"] == wanted:
            return msg


async def closed_with(ws: ClientConnection) -> tuple[int | None, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


async def test_auth_in_first_message_then_events(live: Any) -> None:
    srv = await live()
    tokens = await srv.token("vic")
    async with connect(srv.ws_url, proxy=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": tokens["access_token"]}))
        hello = await next_event(ws, "hello")
        assert hello["user"] == "vic" and hello["role"] == "viewer"
        tom = await srv.token("tom")
        h = {"Authorization": f"Bearer {tom['access_token']}"}
        await srv.http.post("/orders", headers=h, json={"side": "buy", "qty": 1.0})
        denial = await next_event(ws, "denial")
        assert denial["data"]["code"] == "stop_loss_missing"
        await srv.http.post("/risk/halt", headers=h, json={"reason": "events test"})
        state = await next_event(ws, "risk_state")
        assert "halted" in json.dumps(state["data"])


async def test_auth_by_subprotocol_never_echoes_the_token(live: Any) -> None:
    srv = await live(ws_heartbeat_seconds=0.2)
    tokens = await srv.token("tom")
    async with connect(
        srv.ws_url, proxy=None, subprotocols=["stratkernel.v1", f"bearer.{tokens['access_token']}"]
    ) as ws:
        assert ws.subprotocol == "stratkernel.v1"
        assert (await next_event(ws, "hello"))["user"] == "tom"
        assert "ts" in await next_event(ws, "heartbeat")


async def test_api_key_auth(live: Any) -> None:
    srv = await live()
    tokens = await srv.token("tom")
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    key = (await srv.http.post("/apikeys", headers=h, json={"name": "feed", "role": "viewer"})).json()
    async with connect(srv.ws_url, proxy=None) as ws:
        await ws.send(json.dumps({"type": "auth", "api_key": key["secret"]}))
        assert (await next_event(ws, "hello"))["role"] == "viewer"


@pytest.mark.parametrize(
    "case", ["garbage", "refresh_token", "nothing", "token_in_url", "both", "not_json", "binary"]
)
async def test_refused_connections_close_with_4401(live: Any, case: str) -> None:
    srv = await live(ws_auth_timeout_seconds=0.3)
    tokens = await srv.token("ada")
    url = srv.ws_url
    first: str | None = None
    if case == "garbage":
        first = json.dumps({"type": "auth", "token": "x.y.z"})
    elif case == "refresh_token":
        first = json.dumps({"type": "auth", "token": tokens["refresh_token"]})
    elif case == "token_in_url":
        url = f"{srv.ws_url}?token={tokens['access_token']}&access_token={tokens['access_token']}"
    elif case == "both":
        first = json.dumps({"type": "auth", "token": tokens["access_token"], "api_key": "sk_x"})
    elif case == "not_json":
        first = tokens["access_token"]
    async with connect(url, proxy=None) as ws:
        if case == "binary":
            await ws.send(json.dumps({"type": "auth", "token": tokens["access_token"]}).encode())
        if first is not None:
            await ws.send(first)
        code, _ = await closed_with(ws)
    assert code == 4401


async def test_logout_closes_the_stream_at_the_next_heartbeat(live: Any) -> None:
    srv = await live(ws_heartbeat_seconds=0.2)
    tokens = await srv.token("vic")
    async with connect(srv.ws_url, proxy=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": tokens["access_token"]}))
        await next_event(ws, "hello")
        r = await srv.http.post("/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert r.status_code == 204
        code, reason = await closed_with(ws)
    assert code == 4401 and "revoked" in reason


async def test_foreign_origin_is_refused_at_the_handshake(live: Any) -> None:
    srv = await live()
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.ws_url, proxy=None, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403


async def test_slow_consumer_is_dropped_and_the_kernel_is_not_slowed(live: Any) -> None:
    srv = await live(ws_queue_size=50)
    tokens = await srv.token("vic")
    auth = json.dumps({"type": "auth", "token": tokens["access_token"]})
    good = await connect(srv.ws_url, proxy=None)
    # The slow client: a tiny receive buffer and it never reads, so the server's sends back up.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", srv.port))
    raw.setblocking(False)
    slow = await connect(srv.ws_url, proxy=None, sock=raw, max_queue=1)
    for ws in (good, slow):
        await ws.send(auth)
    await next_event(good, "hello")
    await next_event(slow, "hello")

    received: list[int] = []

    async def read_good() -> None:
        while len(received) < total:
            msg = json.loads(await good.recv())
            if msg["type"] == "strategy_log":
                received.append(msg["data"]["n"])

    total = 2000
    reader = asyncio.create_task(read_good())
    line = "x" * 4000
    for n in range(total):
        # The kernel's side: a synchronous emit, as in trading. It never waits for any client.
        srv.kernel.emit("strategy_log", {"strategy": "flood", "line": line, "n": n})
        if n % 10 == 9:
            # Let the well-behaved client catch up (a condition, not a timer).
            for _ in range(10_000):
                if len(received) >= n - 9 or reader.done():
                    break
                await asyncio.sleep(0.001)
    await asyncio.wait_for(reader, 60)
    assert received == list(range(total))
    hub = srv.app.state.events
    assert hub.dropped_total == 1
    assert srv.kernel.trading_state.value == "active"

    slow_events = 0
    try:
        while True:
            msg = json.loads(await asyncio.wait_for(slow.recv(), 30))
            slow_events += msg["type"] == "strategy_log"
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 1013 and exc.rcvd.reason == "slow consumer"
    assert slow_events < total
    await good.close()
