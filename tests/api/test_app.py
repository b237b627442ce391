"""App skeleton: every route declares a role, one error shape, security headers, CORS, config refusal."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends

from stratkernel.api.app import create_app, iter_routes, undeclared_routes
from stratkernel.api.auth import public, require_role
from stratkernel.api.config import ApiConfig, ensure_local_secret, load_signing_keys
from stratkernel.core.errors import ConfigError

from .conftest import PASSWORDS, Api, make_config

# ---- every route declares its role ---------------------------------------------------------------


async def test_every_route_declares_exactly_one_role(api: Api) -> None:
    routes = iter_routes(api.app)
    assert len(routes) >= 15
    assert undeclared_routes(api.app) == []
    paths = {path: roles for _, path, roles in routes}
    assert paths["/health"] == {"public"} and paths["/auth/token"] == {"public"}
    assert paths["/users"] == {"admin"} and paths["/me"] == {"viewer"}


async def test_an_undeclared_route_is_detected(api: Api) -> None:
    # Proves the enumeration test above can fail.
    async def sneaky() -> dict[str, str]:
        return {}

    async def confused() -> dict[str, str]:
        return {}

    api.app.add_api_route("/sneaky", sneaky, methods=["GET"])
    api.app.add_api_route(
        "/confused",
        confused,
        methods=["GET"],
        dependencies=[Depends(public), Depends(require_role("admin"))],
    )
    problems = undeclared_routes(api.app)
    assert any("/sneaky" in p and "no role" in p for p in problems)
    assert any("/confused" in p for p in problems)


async def test_openapi_publishes_roles_and_error_shape(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert op.get("x-required-role") in {"public", "viewer", "trader", "admin"}, (method, path)
            assert op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ErrorResponse"
            )
    assert spec["paths"]["/users"]["post"]["x-required-role"] == "admin"
    assert "OAuth2PasswordBearer" in spec["components"]["securitySchemes"]
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]


# ---- one error shape -----------------------------------------------------------------------------


def assert_error(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in str(body)


async def test_errors_have_one_shape(api: Api) -> None:
    r = await api.client.get("/nowhere")
    assert r.status_code == 404
    assert_error(r.json(), "not_found")
    r = await api.client.delete("/health")
    assert r.status_code == 405
    assert_error(r.json(), "method_not_allowed")
    r = await api.client.get("/me")
    assert r.status_code == 401
    assert_error(r.json(), "unauthorized")
    h = await api.bearer("vic")
    r = await api.client.get("/users", headers=h)
    assert r.status_code == 403
    assert_error(r.json(), "forbidden")
    r = await api.client.get("/users/no-such-user", headers=await api.bearer("ada"))
    assert r.status_code == 404
    assert_error(r.json(), "not_found")


async def test_validation_errors_name_the_field_and_never_echo_input(api: Api) -> None:
    h = await api.bearer("ada")
    secret_password = "Pw-never-echoed-7"
    r = await api.client.post(
        "/users", headers=h, json={"username": "bad name!", "role": "admin", "password": secret_password}
    )
    assert r.status_code == 422
    body = r.json()
    assert_error(body, "validation_error")
    assert ["body", "username"] in [d["loc"] for d in body["error"]["details"]]
    assert secret_password not in r.text
    r = await api.client.post("/users", headers=h, json={"username": "newbie", "role": "root"})
    assert r.status_code == 422
    assert ["body", "role"] in [d["loc"] for d in r.json()["error"]["details"]]
    r = await api.client.post("/users", headers=h, json={"username": "newbie", "role": "viewer", "extra": 1})
    assert r.status_code == 422
    r = await api.client.post(
        "/users", headers={**h, "content-type": "application/json"}, content=b"{not json"
    )
    assert r.status_code == 422
    assert_error(r.json(), "validation_error")
    # Nothing was created by any of these.
    assert await api.store.get_user("newbie") is None


async def test_login_with_short_wrong_password_does_not_echo_it(api: Api) -> None:
    r = await api.client.post("/auth/token", data={"username": "ada", "password": "hunter2"})
    assert r.status_code == 401
    assert "hunter2" not in r.text


async def test_unexpected_errors_are_a_bare_500(api: Api) -> None:
    async def broken() -> dict[str, str]:
        raise RuntimeError("secret internal detail /etc/passwd")

    api.app.add_api_route("/broken", broken, methods=["GET"], dependencies=[Depends(public)])
    r = await api.client.get("/broken")
    assert r.status_code == 500
    assert_error(r.json(), "internal_error")
    assert "secret internal detail" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_duplicate_user_is_a_conflict(api: Api) -> None:
    h = await api.bearer("ada")
    r = await api.client.post("/users", headers=h, json={"username": "vic", "role": "viewer"})
    assert r.status_code == 409
    assert_error(r.json(), "conflict")


# ---- hygiene -------------------------------------------------------------------------------------


async def test_security_headers_on_success_and_error(api: Api) -> None:
    for r in [await api.client.get("/health"), await api.client.get("/me")]:
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        assert "server" not in r.headers


async def test_token_response_is_not_cacheable(api: Api) -> None:
    r = await api.client.post("/auth/token", data={"username": "vic", "password": PASSWORDS["vic"]})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"


async def test_no_cors_by_default(api: Api) -> None:
    r = await api.client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = await api.client.options(
        "/me", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in r.headers


async def test_cors_allows_only_configured_origins(api_factory: Any) -> None:
    api = await api_factory(cors_origins=("https://dash.example",))
    r = await api.client.options(
        "/me",
        headers={
            "Origin": "https://dash.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://dash.example"
    r = await api.client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_declared_body_over_limit_is_413(api_factory: Any) -> None:
    api = await api_factory(max_body_bytes=2048)
    h = await api.bearer("ada")
    r = await api.client.post(
        "/users", headers=h, json={"username": "big", "role": "viewer", "password": "p" * 1000 + "x" * 2000}
    )
    assert r.status_code == 413
    assert_error(r.json(), "payload_too_large")
    assert await api.store.get_user("big") is None


async def test_streamed_body_over_limit_is_413(api_factory: Any) -> None:
    api = await api_factory(max_body_bytes=2048)

    async def chunks() -> Any:
        for _ in range(10):
            yield b'{"refresh_token": "' + b"a" * 500

    r = await api.client.post("/auth/refresh", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert_error(r.json(), "payload_too_large")


async def test_general_rate_limit_is_per_user(api_factory: Any) -> None:
    api = await api_factory(rate_limit_general="3/minute")
    h_vic = await api.bearer("vic")
    for i in range(3):
        r = await api.client.get("/me", headers=h_vic)
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "3"
        assert r.headers["x-ratelimit-remaining"] == str(2 - i)
    r = await api.client.get("/me", headers=h_vic)
    assert r.status_code == 429
    assert_error(r.json(), "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-remaining"] == "0"
    # Another user has their own budget.
    assert (await api.client.get("/me", headers=await api.bearer("tom"))).status_code == 200


async def test_refresh_rate_limit_is_per_user(api_factory: Any) -> None:
    api = await api_factory(rate_limit_refresh="2/minute")
    tokens = await api.login("tom")
    for _ in range(2):
        r = await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200
        tokens = r.json()
    r = await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 429
    assert "retry-after" in r.headers
    # The refused attempt did not spend the token: after the window it would still work, and the
    # session is intact now.
    assert (
        await api.client.get("/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    ).status_code == 200


# ---- configuration refusal -----------------------------------------------------------------------


def test_app_refuses_to_start_without_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STRATKERNEL_JWT_SECRET", "STRATKERNEL_API_JWT_SECRET", "STRATKERNEL_API_JWT_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="no JWT secret configured"):
        create_app(ApiConfig(db_path=tmp_path / "x.db"))


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("", "empty"),
        ("changeme", "placeholder"),
        ("09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7", "placeholder"),
        ("short-but-random-Q7x", "shorter than 32"),
        ("a" * 64, "distinct"),
    ],
)
def test_weak_secrets_are_refused(tmp_path: Path, secret: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        create_app(make_config(tmp_path, jwt_secret=secret))
    if secret:
        assert secret not in str(info.value)


def test_secret_from_environment_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATKERNEL_JWT_SECRET", "env-Secret-0123456789-abcdefghijklmnop")
    assert load_signing_keys(ApiConfig()).sign == "env-Secret-0123456789-abcdefghijklmnop"
    monkeypatch.delenv("STRATKERNEL_JWT_SECRET")
    secret_file = tmp_path / "jwt.secret"
    monkeypatch.setenv("STRATKERNEL_API_JWT_SECRET_FILE", str(secret_file))
    with pytest.raises(ConfigError, match="cannot read"):
        load_signing_keys(ApiConfig())
    secret = ensure_local_secret(secret_file)
    assert load_signing_keys(ApiConfig()).sign == secret


def test_ensure_local_secret_creates_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / ".stratkernel" / "jwt.secret"
    first = ensure_local_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_local_secret(path) == first
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        ensure_local_secret(path)


def test_asymmetric_algorithms_need_matching_key_files(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(ConfigError, match="needs both"):
        load_signing_keys(make_config(tmp_path, jwt_algorithm="ES256"))

    def pem_pair(name: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        priv, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
        priv.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return priv, pub

    a_priv, a_pub = pem_pair("a")
    _, b_pub = pem_pair("b")
    keys = load_signing_keys(
        make_config(tmp_path, jwt_algorithm="ES256", jwt_private_key_file=a_priv, jwt_public_key_file=a_pub)
    )
    assert keys.algorithm == "ES256"
    with pytest.raises(ConfigError, match="does not belong"):
        load_signing_keys(
            make_config(
                tmp_path, jwt_algorithm="ES256", jwt_private_key_file=a_priv, jwt_public_key_file=b_pub
            )
        )
    with pytest.raises(ConfigError, match="does not suit RS256"):
        load_signing_keys(
            make_config(
                tmp_path, jwt_algorithm="RS256", jwt_private_key_file=a_priv, jwt_public_key_file=a_pub
            )
        )


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    from pydantic import ValidationError as PydanticValidationError

    for bad in (
        {"cors_origins": ("*",)},
        {"rate_limit_login_ip": "lots"},
        {"rate_limit_storage_uri": "mongodb://x"},
        {"port": 70000},
        {"port": -1},
        {"jwt_algorithm": "none"},
        {"jwt_algorithm": "HS384"},
        {"access_ttl_seconds": 0},
        {"unknown_setting": 1},
    ):
        with pytest.raises(PydanticValidationError):
            make_config(tmp_path, **bad)


def test_config_is_frozen(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with pytest.raises(Exception, match="frozen"):
        config.port = 1  # type: ignore[misc]


async def test_every_operation_has_an_example(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    missing = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            found = False
            for code, response in op["responses"].items():
                if code == "204":
                    found = True
                content = response.get("content", {}).get("application/json", {})
                if not code.startswith("2") or not content:
                    continue
                schema = content.get("schema", {})
                ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
                if "example" in content or (ref and "examples" in schemas[ref.rsplit("/", 1)[1]]):
                    found = True
            if not found:
                missing.append(f"{method.upper()} {path}")
    assert missing == []
