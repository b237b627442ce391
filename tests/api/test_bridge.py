"""The API on its own thread (ApiThread) driving a live kernel through KernelBridge."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from stratkernel.api.app import create_app
from stratkernel.api.bridge import KernelBridge
from stratkernel.api.server import ApiThread
from stratkernel.api.users import UserStore
from stratkernel.core.config import KernelConfig
from stratkernel.core.runtime import Runtime

from .conftest import FAST_HASHER, PASSWORDS, make_config, seed_users


async def test_api_thread_with_bridge(tmp_path: Path) -> None:
    kcfg = KernelConfig(data_dir=str(tmp_path / "k"), sandbox={"scripts_dir": str(tmp_path / "scripts")})
    runtime = Runtime(kcfg)
    kernel = await runtime.start()
    kernel_thread = threading.get_ident()
    async with UserStore(kcfg.db_path, password_hasher=FAST_HASHER) as seed:
        await seed_users(seed)
    config = make_config(tmp_path, db_path=kcfg.db_path, port=0)
    bridge = KernelBridge(runtime.service, asyncio.get_running_loop())
    # Record which thread the facade runs on: it must always be the kernel's.
    seen_threads: set[int] = set()
    original = runtime.service.positions
    runtime.service.positions = lambda: (seen_threads.add(threading.get_ident()), original())[1]
    api = ApiThread(create_app(config, service=bridge), config, log_level="error")
    await asyncio.to_thread(api.start)
    try:
        base = f"http://127.0.0.1:{api.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            tokens = (
                await client.post("/auth/token", data={"username": "tom", "password": PASSWORDS["tom"]})
            ).json()
            h = {"Authorization": f"Bearer {tokens['access_token']}"}
            assert (await client.get("/positions", headers=h)).status_code == 200
            assert seen_threads == {kernel_thread}
            async with connect(f"ws://127.0.0.1:{api.port}/events", proxy=None) as ws:
                await ws.send(json.dumps({"type": "auth", "token": tokens["access_token"]}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "hello"
                r = await client.post("/orders", headers=h, json={"side": "buy", "qty": 1.0})
                assert r.json()["code"] == "stop_loss_missing"
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if msg["type"] == "denial":
                        break
                assert msg["data"]["code"] == "stop_loss_missing"
            r = await client.post("/risk/halt", headers=h, json={"reason": "bridge"})
            assert r.json()["state"]["trading_state"] == "halted"
            assert kernel.trading_state.value == "halted"
            r = await client.post("/strategies/nope/stop", headers=h)
            assert r.status_code == 404
    finally:
        await asyncio.to_thread(api.stop)
        await kernel.shutdown()
        await runtime._close()
