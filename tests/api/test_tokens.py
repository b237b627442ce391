"""Forged and broken credentials are refused with 401/403, and nothing changes in the database."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from jose import jwt

from stratkernel.api.auth import require_role

from .conftest import SECRET, Api, b64url, db_snapshot, unverified_claims


def sign_hs256(claims: dict[str, Any], key: bytes | str, header: dict[str, Any] | None = None) -> str:
    """Sign by hand so tests can produce tokens the library would refuse to create."""
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    key_bytes = key.encode() if isinstance(key, str) else key
    sig = hmac.new(key_bytes, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


async def admin_claims(api: Api) -> dict[str, Any]:
    """The claims of a real admin access token: forgeries below change one thing at a time."""
    tokens = await api.login("ada")
    return unverified_claims(tokens["access_token"])


async def attack(api: Api, headers: dict[str, str]) -> list[int]:
    """Try state-changing admin actions; return the status codes (every answer in the error shape)."""
    responses = [
        await api.client.post("/users", headers=headers, json={"username": "mallory", "role": "admin"}),
        await api.client.patch("/users/vic", headers=headers, json={"role": "admin"}),
        await api.client.delete("/users/tom", headers=headers),
    ]
    for r in responses:
        body = r.json()
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return [r.status_code for r in responses]


async def test_control_a_correctly_signed_token_is_accepted(api: Api) -> None:
    # The forgeries below are only meaningful if the same construction with nothing wrong works.
    claims = await admin_claims(api)
    token = sign_hs256(claims, SECRET)
    r = await api.client.get("/users", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


def _now() -> int:
    return int(time.time())


FORGERIES = {
    "wrong_key": lambda c: sign_hs256(c, "another-secret-that-is-long-enough-1234567"),
    "expired": lambda c: sign_hs256(
        {**c, "iat": _now() - 3600, "nbf": _now() - 3600, "exp": _now() - 60}, SECRET
    ),
    "not_yet_valid": lambda c: sign_hs256({**c, "nbf": _now() + 3600, "exp": _now() + 7200}, SECRET),
    "issued_in_future": lambda c: sign_hs256({**c, "iat": _now() + 3600, "exp": _now() + 7200}, SECRET),
    "wrong_audience": lambda c: sign_hs256({**c, "aud": "someone-else"}, SECRET),
    "wrong_issuer": lambda c: sign_hs256({**c, "iss": "evil"}, SECRET),
    "missing_jti": lambda c: sign_hs256({k: v for k, v in c.items() if k != "jti"}, SECRET),
    "missing_exp": lambda c: sign_hs256({k: v for k, v in c.items() if k != "exp"}, SECRET),
    "missing_nbf": lambda c: sign_hs256({k: v for k, v in c.items() if k != "nbf"}, SECRET),
    "missing_aud": lambda c: sign_hs256({k: v for k, v in c.items() if k != "aud"}, SECRET),
    "refresh_type": lambda c: sign_hs256({**c, "typ": "refresh"}, SECRET),
    "no_type": lambda c: sign_hs256({k: v for k, v in c.items() if k != "typ"}, SECRET),
    "unknown_session": lambda c: sign_hs256({**c, "fam": "0" * 32}, SECRET),
    "unknown_user": lambda c: sign_hs256({**c, "sub": "999"}, SECRET),
    "alg_none": lambda c: (
        f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64url(json.dumps(c).encode())}."
    ),
    "alg_none_capitalised": lambda c: (
        f"{b64url(json.dumps({'alg': 'None'}).encode())}.{b64url(json.dumps(c).encode())}."
    ),
    "alg_hs512": lambda c: jwt.encode(c, SECRET, algorithm="HS512"),
    "garbage": lambda c: "not.a.token",
    "empty_signature": lambda c: sign_hs256(c, SECRET).rsplit(".", 1)[0] + ".",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
async def test_forged_tokens_are_refused_and_change_nothing(api: Api, name: str) -> None:
    claims = await admin_claims(api)
    token = FORGERIES[name](claims)
    before = db_snapshot(api.config.db_path)
    codes = await attack(api, {"Authorization": f"Bearer {token}"})
    assert codes == [401, 401, 401], name
    r = await api.client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert db_snapshot(api.config.db_path) == before


async def test_tampered_claims_with_original_signature_are_refused(api: Api) -> None:
    real = (await api.login("vic"))["access_token"]
    head, _body, sig = real.split(".")
    claims = unverified_claims(real)
    ada = await api.store.get_user("ada")
    assert ada is not None
    claims.update(role="admin", sub=str(ada.id), name="ada")
    forged = f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"
    before = db_snapshot(api.config.db_path)
    assert await attack(api, {"Authorization": f"Bearer {forged}"}) == [401, 401, 401]
    assert db_snapshot(api.config.db_path) == before
    # The untampered token still works, and still only as a viewer.
    r = await api.client.get("/me", headers={"Authorization": f"Bearer {real}"})
    assert r.json()["role"] == "viewer"


async def test_role_claim_is_not_trusted_even_when_validly_signed(api: Api) -> None:
    # Someone holding the key could mint role=admin for a viewer; authorization uses the database role.
    claims = unverified_claims((await api.login("vic"))["access_token"])
    token = sign_hs256({**claims, "role": "admin"}, SECRET)
    before = db_snapshot(api.config.db_path)
    assert await attack(api, {"Authorization": f"Bearer {token}"}) == [403, 403, 403]
    assert db_snapshot(api.config.db_path) == before


async def test_refresh_token_is_not_an_access_token(api: Api) -> None:
    tokens = await api.login("ada")
    before = db_snapshot(api.config.db_path)
    assert await attack(api, {"Authorization": f"Bearer {tokens['refresh_token']}"}) == [401, 401, 401]
    assert db_snapshot(api.config.db_path) == before


async def test_access_token_is_not_a_refresh_token(api: Api) -> None:
    tokens = await api.login("ada")
    r = await api.client.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert r.status_code == 401
    assert "refresh" in r.json()["error"]["message"]


async def test_refresh_rotates_and_reuse_revokes_the_family(api: Api) -> None:
    first = await api.login("ada")
    r = await api.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        unverified_claims(second["refresh_token"])["fam"] == unverified_claims(first["refresh_token"])["fam"]
    )
    # The newer access token works until the old refresh token is replayed.
    h2 = {"Authorization": f"Bearer {second['access_token']}"}
    assert (await api.client.get("/me", headers=h2)).status_code == 200

    r = await api.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401
    assert "already used" in r.json()["error"]["message"]

    # Reuse revoked the whole family: the newer sibling refresh token and access tokens are dead.
    r = await api.client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    assert (await api.client.get("/me", headers=h2)).status_code == 401
    assert (
        await api.client.get("/me", headers={"Authorization": f"Bearer {first['access_token']}"})
    ).status_code == 401
    # Another session of the same user is unaffected.
    assert (await api.client.get("/me", headers=await api.bearer("ada"))).status_code == 200


async def test_logout_revokes_access_and_refresh_tokens(api: Api) -> None:
    tokens = await api.login("tom")
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await api.client.post("/auth/logout", headers=h)).status_code == 204
    assert (await api.client.get("/me", headers=h)).status_code == 401
    r = await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]["message"]


async def test_password_change_and_disable_end_sessions(api: Api) -> None:
    h_tom = await api.bearer("tom")
    h_ada = await api.bearer("ada")
    r = await api.client.put("/users/tom/password", headers=h_ada, json={"password": "a brand new password"})
    assert r.status_code == 204
    assert (await api.client.get("/me", headers=h_tom)).status_code == 401
    await api.login("tom", "a brand new password")

    h_vic = await api.bearer("vic")
    r = await api.client.patch("/users/vic", headers=h_ada, json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert (await api.client.get("/me", headers=h_vic)).status_code == 401
    r = await api.client.post("/auth/token", data={"username": "vic", "password": "viewer password 1"})
    assert r.status_code == 401


async def test_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    r1 = await api.client.post("/auth/token", data={"username": "ada", "password": "wrong password!!"})
    r2 = await api.client.post("/auth/token", data={"username": "nobody", "password": "wrong password!!"})
    assert r1.status_code == r2.status_code == 401
    assert r1.json() == r2.json()


async def test_viewer_is_refused_on_trader_and_admin_routes(api: Api) -> None:
    # No kernel routes exist yet, so a trader route is declared here exactly as the real ones will be.
    from fastapi import Depends

    async def trader_only() -> dict[str, str]:
        return {"ok": "yes"}

    api.app.add_api_route(
        "/probe/trader", trader_only, methods=["POST"], dependencies=[Depends(require_role("trader"))]
    )
    h_vic = await api.bearer("vic")
    r = await api.client.post("/probe/trader", headers=h_vic)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert (await api.client.post("/probe/trader", headers=await api.bearer("tom"))).status_code == 200
    assert (await api.client.post("/probe/trader", headers=await api.bearer("ada"))).status_code == 200

    before = db_snapshot(api.config.db_path)
    assert await attack(api, h_vic) == [403, 403, 403]
    assert await attack(api, await api.bearer("tom")) == [403, 403, 403]
    after = db_snapshot(api.config.db_path)
    # The tom login above added its session rows; nothing else changed.
    assert after["users"] == before["users"] and after["api_keys"] == before["api_keys"]


async def test_api_keys_work_until_revoked_and_cannot_escalate(api: Api) -> None:
    h_tom = await api.bearer("tom")
    r = await api.client.post("/apikeys", headers=h_tom, json={"name": "bot", "role": "admin"})
    assert r.status_code == 403
    r = await api.client.post("/apikeys", headers=h_tom, json={"name": "bot", "role": "trader"})
    assert r.status_code == 201
    created = r.json()
    key = {"X-API-Key": created["secret"]}
    me = (await api.client.get("/me", headers=key)).json()
    assert me == {"username": "tom", "role": "trader", "via": "api_key", "api_key_id": created["key"]["id"]}
    # A key cannot mint keys, and is not admin.
    assert (
        await api.client.post("/apikeys", headers=key, json={"name": "x", "role": "viewer"})
    ).status_code == 403
    assert (await api.client.get("/users", headers=key)).status_code == 403
    # Stored hashed: the secret is nowhere in the database file.
    assert created["secret"].encode() not in Path(api.config.db_path).read_bytes()

    assert (await api.client.delete(f"/apikeys/{created['key']['id']}", headers=h_tom)).status_code == 204
    before = db_snapshot(api.config.db_path)
    r = await api.client.get("/me", headers=key)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert await attack(api, key) == [401, 401, 401]
    assert db_snapshot(api.config.db_path) == before


async def test_forged_api_keys_are_refused(api: Api) -> None:
    h_ada = await api.bearer("ada")
    created = (await api.client.post("/apikeys", headers=h_ada, json={"name": "k", "role": "admin"})).json()
    secret = created["secret"]
    before = db_snapshot(api.config.db_path)
    for bad in [
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        "sk_" + created["key"]["id"],
        "sk_",
        "x" * 300,
    ]:
        assert await attack(api, {"X-API-Key": bad}) == [401, 401, 401]
    assert db_snapshot(api.config.db_path) == before


async def test_both_credentials_at_once_are_refused(api: Api) -> None:
    h = await api.bearer("ada")
    key = (await api.client.post("/apikeys", headers=h, json={"name": "k", "role": "viewer"})).json()[
        "secret"
    ]
    r = await api.client.get("/me", headers={**h, "X-API-Key": key})
    assert r.status_code == 401


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    d = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = d / "jwt.key"
    pub = d / "jwt.pub"
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


async def test_rs256_works_and_hs_rs_confusion_is_refused(
    api_factory: Any, rsa_keys: tuple[Path, Path]
) -> None:
    priv, pub = rsa_keys
    api = await api_factory(jwt_algorithm="RS256", jwt_private_key_file=priv, jwt_public_key_file=pub)
    tokens = await api.login("ada")
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "RS256"
    assert (
        await api.client.get("/users", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    ).status_code == 200

    claims = unverified_claims(tokens["access_token"])
    public_pem = pub.read_bytes()
    for variant in (public_pem, public_pem.strip()):
        forged = sign_hs256(claims, variant)
        before = db_snapshot(api.config.db_path)
        assert await attack(api, {"Authorization": f"Bearer {forged}"}) == [401, 401, 401]
        assert db_snapshot(api.config.db_path) == before
    # An RS256 token signed by a different key pair is refused as well.
    other = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        capture_output=True,
        check=False,
    )
    if other.returncode == 0:
        forged = jwt.encode(claims, other.stdout.decode(), algorithm="RS256")
        assert await attack(api, {"Authorization": f"Bearer {forged}"}) == [401, 401, 401]
