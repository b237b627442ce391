"""Rate limits shared by several API workers through Redis (a real redis-server on 127.0.0.1)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import PASSWORDS

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


@pytest.fixture
def redis_url(tmp_path: Any) -> Iterator[str]:
    import redis

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert REDIS is not None
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(500):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    pytest.fail("redis-server exited")
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


async def test_two_workers_share_the_login_limit(api_factory: Any, redis_url: str) -> None:
    # Two apps stand for two API worker processes: only the Redis counters connect them.
    worker_a = await api_factory(rate_limit_storage_uri=redis_url)
    worker_b = await api_factory(rate_limit_storage_uri=redis_url)
    codes = []
    for worker in (worker_a, worker_b, worker_a, worker_b, worker_a):
        r = await worker.client.post("/auth/token", data={"username": "ada", "password": "wrong password!"})
        codes.append(r.status_code)
    assert codes == [401] * 5
    r = await worker_b.client.post("/auth/token", data={"username": "ada", "password": PASSWORDS["ada"]})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
