"""Over real HTTP: uvicorn on 127.0.0.1, a real client (httpx), real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from .conftest import PASSWORDS


def test_sixth_login_in_a_minute_is_429_with_retry_after(live_server: Any) -> None:
    server = live_server()
    with httpx.Client(base_url=server.base_url) as client:
        codes = []
        for _ in range(5):
            r = client.post("/auth/token", data={"username": "ada", "password": "wrong password here"})
            codes.append(r.status_code)
        assert codes == [401] * 5
        # Even the right password is refused once the limit is reached.
        r = client.post("/auth/token", data={"username": "ada", "password": PASSWORDS["ada"]})
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-limit"] == "5"
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert int(r.headers["x-ratelimit-reset"]) > 0
        assert r.json()["error"]["code"] == "rate_limited"
        # Server header suppressed, security headers present over the wire too.
        assert "server" not in r.headers
        assert r.headers["x-frame-options"] == "DENY"


def test_login_limit_per_username_holds_across_addresses(live_server: Any) -> None:
    # Loopback gives one client address, so the per-address limit is raised to isolate the per-name one.
    server = live_server(rate_limit_login_ip="100/minute", rate_limit_login_user="5/minute")
    with httpx.Client(base_url=server.base_url) as client:
        for _ in range(5):
            assert (
                client.post("/auth/token", data={"username": "tom", "password": "nope nope nope"}).status_code
                == 401
            )
        r = client.post("/auth/token", data={"username": "tom", "password": PASSWORDS["tom"]})
        assert r.status_code == 429
        assert "login-user" in r.json()["error"]["message"]
        # Another name from the same address is still allowed.
        assert (
            client.post("/auth/token", data={"username": "vic", "password": PASSWORDS["vic"]}).status_code
            == 200
        )


def test_login_limit_per_address_holds_across_usernames(live_server: Any) -> None:
    server = live_server(rate_limit_login_ip="5/minute", rate_limit_login_user="100/minute")
    with httpx.Client(base_url=server.base_url) as client:
        for name in ["a1", "b2", "c3", "d4", "e5"]:
            assert (
                client.post("/auth/token", data={"username": name, "password": "guess guess 1"}).status_code
                == 401
            )
        r = client.post("/auth/token", data={"username": "vic", "password": PASSWORDS["vic"]})
        assert r.status_code == 429
        assert "login-ip" in r.json()["error"]["message"]


def test_full_session_over_http(live_server: Any) -> None:
    server = live_server()
    with httpx.Client(base_url=server.base_url) as client:
        assert client.get("/health").json() == {"status": "ok"}
        tokens = client.post("/auth/token", data={"username": "tom", "password": PASSWORDS["tom"]}).json()
        h = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get("/me", headers=h).json()["role"] == "trader"
        new = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
        h2 = {"Authorization": f"Bearer {new['access_token']}"}
        assert client.post("/auth/logout", headers=h2).status_code == 204
        assert client.get("/me", headers=h2).status_code == 401
        assert client.get("/me", headers=h).status_code == 401


def test_body_limits_over_http(live_server: Any) -> None:
    server = live_server(max_body_bytes=4096)
    with httpx.Client(base_url=server.base_url) as client:
        r = client.post("/auth/refresh", content=b"x" * 10_000, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"

        def chunked() -> Iterator[bytes]:
            for _ in range(50):
                yield b"y" * 1000

        # No Content-Length: the limit applies while the body streams in.
        r = client.post("/auth/refresh", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        # The server is fine afterwards.
        assert client.get("/health").status_code == 200
