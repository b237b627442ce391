"""Fixtures for the API tests: a real SQLite file, a real app, real tokens.

In-process tests talk to the app through httpx's ASGI transport on the test's own event loop; the
tests that need real HTTP start uvicorn on 127.0.0.1 (see ``live_server``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from stratkernel.api.app import create_app
from stratkernel.api.config import ApiConfig
from stratkernel.api.server import build_server
from stratkernel.api.users import UserStore

# Real argon2id with small parameters: the defaults cost ~0.5 s per hash on these shared machines.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
SECRET = "t3st-Secret-4-stratkernel-api-9f8e7d6c5b4a"
PASSWORDS = {"ada": "admin password 1", "tom": "trader password 1", "vic": "viewer password 1"}
ROLES = {"ada": "admin", "tom": "trader", "vic": "viewer"}


def make_config(tmp_path: Path, **overrides: Any) -> ApiConfig:
    values: dict[str, Any] = {"jwt_secret": SECRET, "db_path": tmp_path / "stratkernel.db"}
    values.update(overrides)
    return ApiConfig(**values)


async def seed_users(store: UserStore) -> None:
    for name, password in PASSWORDS.items():
        await store.add_user(name, password, ROLES[name])


def db_snapshot(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every auth table, to prove a refused request changed nothing."""
    con = sqlite3.connect(db_path)
    try:
        tables = ["users", "token_families", "refresh_tokens", "api_keys", "auth_audit"]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    finally:
        con.close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unverified_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@dataclass
class Api:
    """An app with seeded users and an in-process client."""

    app: FastAPI
    client: httpx.AsyncClient
    store: UserStore
    config: ApiConfig

    async def login(self, username: str, password: str | None = None) -> dict[str, Any]:
        r = await self.client.post(
            "/auth/token", data={"username": username, "password": password or PASSWORDS[username]}
        )
        assert r.status_code == 200, r.text
        return r.json()

    async def bearer(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {(await self.login(username))['access_token']}"}


@pytest.fixture
async def api_factory(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Api] = []

    async def make(*, service: Any = None, **overrides: Any) -> Api:
        config = make_config(tmp_path, **overrides)
        store = UserStore(config.db_path, password_hasher=FAST_HASHER)
        await store.open()
        if await store.count_users() == 0:
            await seed_users(store)
        app = create_app(config, user_store=store, service=service)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        api = Api(app, client, store, config)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.client.aclose()
        await api.store.close()


@pytest.fixture
async def api(api_factory: Any) -> Api:
    made: Api = await api_factory()
    return made


@dataclass
class LiveServer:
    base_url: str
    config: ApiConfig


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Any]:
    """Start uvicorn on 127.0.0.1 (a free port) in a thread, serving an app on a seeded database."""
    started: list[tuple[Any, threading.Thread]] = []
    stores: list[UserStore] = []

    def start(**overrides: Any) -> LiveServer:
        config = make_config(tmp_path, **overrides)

        async def seed() -> None:
            async with UserStore(config.db_path, password_hasher=FAST_HASHER) as store:
                if await store.count_users() == 0:
                    await seed_users(store)

        asyncio.run(seed())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        store = UserStore(config.db_path, password_hasher=FAST_HASHER)
        stores.append(store)
        server = build_server(create_app(config, user_store=store), config, log_level="warning")
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started.append((server, thread))
        base = f"http://127.0.0.1:{port}"
        # Wait until the server answers: readiness, not timing, decides when the test proceeds.
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.02)
        assert server.started, "uvicorn did not start"
        return LiveServer(base, config)

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=10)
    for store in stores:
        asyncio.run(store.close())
