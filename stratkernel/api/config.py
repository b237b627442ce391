"""API configuration: where to listen, how tokens are signed, rate limits, body and CORS limits.

Everything comes from the environment (prefix ``STRATKERNEL_API_``) or from keyword arguments, and the
object is frozen once built. The signing secret is never given a default: :func:`load_signing_keys`
refuses to return keys when the secret is missing, a known placeholder, or shorter than 32 bytes, so
neither ``create_app`` nor ``stratkernel run`` can start with a guessable secret.

The HS256 secret may come from ``STRATKERNEL_JWT_SECRET`` (or ``STRATKERNEL_API_JWT_SECRET``) or from
a file named by ``STRATKERNEL_API_JWT_SECRET_FILE``; :func:`ensure_local_secret` creates such a file
with mode 0600 on a first local run. RS256/ES256 read PEM key files instead.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from limits import parse as parse_limit
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..core.errors import ConfigError

JwtAlgorithm = Literal["HS256", "RS256", "ES256"]

MIN_SECRET_BYTES = 32
DEFAULT_DB_PATH = Path(".stratkernel") / "stratkernel.db"
DEFAULT_SECRET_PATH = Path(".stratkernel") / "jwt.secret"

# Secrets copied from tutorials and templates. Refused whatever their length, because they are the
# first thing an attacker tries.
_KNOWN_PLACEHOLDERS = frozenset(
    {
        "secret",
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "your-secret-key",
        "your_secret_key",
        "supersecret",
        "super-secret-key",
        "jwt-secret",
        "jwt_secret",
        "mysecret",
        "password",
        "default",
        "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",  # the FastAPI tutorial's
    }
)


class ApiConfig(BaseSettings):
    """Settings of the HTTP API. Frozen; build a new one to change anything."""

    model_config = SettingsConfigDict(
        env_prefix="STRATKERNEL_API_",
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        env_ignore_empty=True,
    )

    host: str = Field("127.0.0.1", min_length=1, max_length=255, description="address to listen on")
    port: int = Field(8787, ge=0, le=65535, description="0 picks a free port")
    db_path: Path = Field(
        DEFAULT_DB_PATH,
        validation_alias=AliasChoices("STRATKERNEL_DB", "STRATKERNEL_API_DB_PATH"),
        description="SQLite database holding users, tokens and API keys (shared with the kernel)",
    )

    jwt_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("STRATKERNEL_JWT_SECRET", "STRATKERNEL_API_JWT_SECRET"),
        description="HS256 signing secret, at least 32 bytes",
    )
    jwt_secret_file: Path | None = Field(None, description="file holding the HS256 secret")
    jwt_algorithm: JwtAlgorithm = Field(
        "HS256", description="pinned server-side; the token header is never trusted"
    )
    jwt_private_key_file: Path | None = Field(None, description="PEM private key for RS256/ES256")
    jwt_public_key_file: Path | None = Field(None, description="PEM public key for RS256/ES256")
    issuer: str = Field("stratkernel", min_length=1, max_length=200)
    audience: str = Field("stratkernel-api", min_length=1, max_length=200)
    access_ttl_seconds: int = Field(15 * 60, ge=30, le=24 * 3600)
    refresh_ttl_seconds: int = Field(7 * 24 * 3600, ge=60, le=90 * 24 * 3600)
    clock_skew_seconds: int = Field(10, ge=0, le=300, description="leeway for exp/nbf/iat between hosts")

    cors_origins: tuple[str, ...] = Field((), description="allowed browser origins; none by default")

    rate_limit_login_ip: str = Field("5/minute", description="login attempts per client address")
    rate_limit_login_user: str = Field("5/minute", description="login attempts per username")
    rate_limit_refresh: str = Field("30/minute", description="token refreshes per user")
    rate_limit_general: str = Field("600/minute", description="other requests per user or API key")
    rate_limit_storage_uri: str = Field("memory://", description="memory:// or redis://host:port/db")

    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)

    ws_auth_timeout_seconds: float = Field(10.0, gt=0, le=120, description="time to send the auth message")
    ws_heartbeat_seconds: float = Field(
        15.0, gt=0, le=300, description="heartbeat interval; the session is re-checked at each one"
    )
    ws_queue_size: int = Field(
        1000, ge=1, le=100_000, description="events buffered per client before it is dropped"
    )
    ws_max_connections: int = Field(100, ge=1, le=10_000)

    @field_validator(
        "rate_limit_login_ip", "rate_limit_login_user", "rate_limit_refresh", "rate_limit_general"
    )
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        try:
            parse_limit(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '5/minute': {value!r}") from exc
        return value

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _valid_storage(cls, value: str) -> str:
        allowed = ("memory://", "redis://", "rediss://", "redis+sentinel://", "redis+cluster://")
        if not value.startswith(allowed):
            raise ValueError(f"rate-limit storage must start with one of {allowed}, got {value!r}")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            # A wildcard would let any web page drive the API with a user's stored token.
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin must be an explicit http(s) origin, got {origin!r}")
        return value


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The key material the token service uses: ``sign`` for new tokens, ``verify`` for incoming ones."""

    algorithm: str
    sign: str
    verify: str


def _check_secret(secret: str, where: str) -> str:
    if not secret:
        raise ConfigError("jwt_secret", f"the JWT secret from {where} is empty")
    if secret.strip().lower() in _KNOWN_PLACEHOLDERS:
        raise ConfigError("jwt_secret", f"the JWT secret from {where} is a well-known placeholder")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            "jwt_secret", f"the JWT secret from {where} is shorter than {MIN_SECRET_BYTES} bytes"
        )
    if len(set(secret)) < 8:
        raise ConfigError("jwt_secret", f"the JWT secret from {where} has too few distinct characters")
    return secret


def _read_file(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror or exc}") from None


def load_signing_keys(config: ApiConfig) -> SigningKeys:
    """Resolve the configured key material, refusing anything weak. Raises :class:`ConfigError`.

    The messages name where the secret was looked for, never its value.
    """
    if config.jwt_algorithm == "HS256":
        if config.jwt_secret is not None:
            secret = _check_secret(
                config.jwt_secret.get_secret_value(), "jwt_secret (STRATKERNEL_JWT_SECRET)"
            )
        elif config.jwt_secret_file is not None:
            secret = _check_secret(
                _read_file(config.jwt_secret_file, "jwt_secret_file"), str(config.jwt_secret_file)
            )
        else:
            raise ConfigError(
                "jwt_secret",
                "no JWT secret configured: set STRATKERNEL_JWT_SECRET or STRATKERNEL_API_JWT_SECRET_FILE "
                "(the API has no default secret)",
            )
        return SigningKeys("HS256", secret, secret)

    if config.jwt_private_key_file is None or config.jwt_public_key_file is None:
        raise ConfigError(
            "jwt_private_key_file",
            f"{config.jwt_algorithm} needs both jwt_private_key_file and jwt_public_key_file",
        )
    private = _read_file(config.jwt_private_key_file, "jwt_private_key_file")
    public = _read_file(config.jwt_public_key_file, "jwt_public_key_file")
    _check_pem(private, public, config.jwt_algorithm)
    return SigningKeys(config.jwt_algorithm, private, public)


def _check_pem(private: str, public: str, algorithm: str) -> None:
    # Load both keys now so a wrong or mismatched file fails at startup, not on the first login.
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    try:
        priv = load_pem_private_key(private.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("jwt_private_key_file", f"not an unencrypted PEM private key: {exc}") from None
    try:
        pub = load_pem_public_key(public.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError("jwt_public_key_file", f"not a PEM public key: {exc}") from None
    want = rsa.RSAPrivateKey if algorithm == "RS256" else ec.EllipticCurvePrivateKey
    if not isinstance(priv, want):
        raise ConfigError("jwt_private_key_file", f"the key does not suit {algorithm}")
    if isinstance(priv, rsa.RSAPrivateKey) and priv.key_size < 2048:
        raise ConfigError("jwt_private_key_file", "RSA keys shorter than 2048 bits are refused")
    if isinstance(priv, ec.EllipticCurvePrivateKey) and not isinstance(priv.curve, ec.SECP256R1):
        raise ConfigError("jwt_private_key_file", "ES256 needs a P-256 (secp256r1) key")
    if priv.public_key().public_numbers() != pub.public_numbers():  # type: ignore[union-attr]
        raise ConfigError("jwt_public_key_file", "the public key does not belong to the private key")


def ensure_local_secret(path: Path | str = DEFAULT_SECRET_PATH) -> str:
    """Return the HS256 secret stored at ``path``, creating it (random, mode 0600) if absent.

    For local runs only: the default path is under the git-ignored ``.stratkernel/`` data directory.
    An existing file readable by group or others is refused rather than silently used.
    """
    path = Path(path)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                "jwt_secret_file", f"{path} is readable by other users (mode {mode:o}); chmod 600 it"
            )
        return _check_secret(_read_file(path, "jwt_secret_file"), str(path))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: if two processes race on first start, one creates and the other fails instead of both
    # writing different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ensure_local_secret(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    return secret
