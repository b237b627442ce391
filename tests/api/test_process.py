"""The API in its own process (``[api] mode = "process"``, the default of ``stratkernel run``): real
child process, real HTTP and websocket on 127.0.0.1, the kernel reached over its private Unix socket."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from stratkernel.api.process import ServiceProxy, serve_service
from stratkernel.api.users import UserStore
from stratkernel.core.config import KernelConfig
from stratkernel.core.errors import StrategyError, ValidationError
from stratkernel.core.runtime import Runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _next(ws: object, wanted: str) -> dict:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 30))  # type: ignore[attr-defined]
        if msg["type"] == wanted:
            return msg


async def test_api_process_serves_the_running_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATKERNEL_JWT_SECRET", secrets.token_urlsafe(48))
    port = _free_port()
    cfg = KernelConfig(
        data_dir=str(tmp_path),
        sandbox={"scripts_dir": str(tmp_path / "scripts")},
        api={"port": port, "mode": "process"},
        data={"source": "synthetic", "options": {"interval_ms": 1000, "speed": 50, "seed": 3}},
    )
    async with UserStore(cfg.db_path) as users:
        await users.add_user("tom", "correct horse battery", "trader")
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await asyncio.wait_for(runtime.ready.wait(), 60)
        assert runtime.api_url == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=runtime.api_url) as http:
            tok = (
                await http.post("/auth/token", data={"username": "tom", "password": "correct horse battery"})
            ).json()
            h = {"Authorization": f"Bearer {tok['access_token']}"}
            status = (await http.get("/status", headers=h)).json()
            assert status["mode"] == "live" and status["trading_state"] == "active"
            async with connect(f"ws://127.0.0.1:{port}/events", proxy=None) as ws:
                await ws.send(json.dumps({"type": "auth", "token": tok["access_token"]}))
                await _next(ws, "hello")
                d = (await http.post("/orders", headers=h, json={"side": "buy", "qty": 1.0})).json()
                assert (
                    d["approved"] is False and d["code"] == "stop_loss_missing"
                )  # the same gate, across processes
                denial = await _next(ws, "denial")
                assert denial["data"]["code"] == "stop_loss_missing"
            missing = await http.post("/strategies/nope/stop", headers=h)
            assert missing.status_code == 404 and "unknown" in missing.json()["error"]["message"]
            halted = (await http.post("/risk/halt", headers=h, json={"reason": "process test"})).json()
            assert halted["state"]["trading_state"] == "halted"
        assert runtime.kernel is not None and runtime.kernel.trading_state.value == "halted"
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    with pytest.raises(httpx.ConnectError):  # the child is gone with the kernel
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/health")


class _Facade:
    def status(self) -> dict:
        return {"ok": True, "limit": float("inf")}

    async def stop_strategy(self, name: str) -> dict:
        raise ValidationError("name", name, "unknown strategy")

    async def upload_script(self, name: str, source: str) -> dict:
        raise StrategyError("policy", "names starting with '_' are not allowed", line=2, strategy=name)

    def subscribe(self, callback: object) -> object:
        return lambda: None


async def test_the_socket_offers_only_facade_methods_and_carries_errors(tmp_path: Path) -> None:
    path = tmp_path / "k.sock"
    server = await serve_service(_Facade(), path)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        proxy = ServiceProxy(path)
        assert await proxy.status() == {"ok": True, "limit": None}  # JSON has no Infinity
        with pytest.raises(ValidationError) as info:
            await proxy.stop_strategy("nope")
        assert info.value.field == "name" and "unknown" in info.value.reason
        with pytest.raises(StrategyError) as refused:  # the route turns this into a 422 with the line
            await proxy.upload_script("evil", "x")
        assert (refused.value.kind, refused.value.line, refused.value.strategy) == ("policy", 2, "evil")
        with pytest.raises(AttributeError):
            proxy.kernel  # noqa: B018 - only facade methods exist on the proxy
        with pytest.raises(ValidationError, match="not a facade method"):
            await proxy.call("__init__")
    finally:
        server.close()
        await server.wait_closed()
