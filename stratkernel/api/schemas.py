"""Request and response bodies of the API. Every input is a pydantic model with bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .users import MAX_PASSWORD_LEN, MIN_PASSWORD_LEN

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RoleName = Literal["viewer", "trader", "admin"]


class Strict(BaseModel):
    """Inputs refuse unknown fields, so a typo is an error rather than a silently ignored setting."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str = Field(examples=["unauthorized"])
    message: str = Field(examples=["token has expired"])
    details: list[dict[str, object]] | None = Field(
        None, description="per-field problems (validation errors only)"
    )


class ErrorResponse(BaseModel):
    """The one shape of every error the API returns."""

    error: ErrorBody

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "forbidden", "message": "this needs the trader role"}}]
        }
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})


class Version(BaseModel):
    name: str = "stratkernel"
    version: str
    api: int = 1
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "stratkernel", "version": "0.1.0", "api": 1}]}
    )


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_expires_in: int = Field(description="seconds until the refresh token expires")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.sig",
                    "refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0eXAiOiJyZWZyZXNoIn0.sig",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_expires_in": 604800,
                }
            ]
        }
    )


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=4096)
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."}]},
    )


class UserOut(BaseModel):
    username: str
    role: RoleName
    created_at: int = Field(description="seconds since the epoch")
    disabled: bool
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "alice", "role": "trader", "created_at": 1767225600, "disabled": False}]
        }
    )


class Me(BaseModel):
    username: str
    role: RoleName
    via: Literal["token", "api_key"]
    api_key_id: str | None = None
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "alice", "role": "trader", "via": "token", "api_key_id": None}]
        }
    )


class PasswordChange(Strict):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LEN)
    new_password: str = Field(min_length=MIN_PASSWORD_LEN, max_length=MAX_PASSWORD_LEN)
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"current_password": "old passphrase here", "new_password": "a new long passphrase"}]
        },
    )


class UserCreate(Strict):
    username: str = Field(pattern=USERNAME_PATTERN, max_length=64)
    role: RoleName
    password: str | None = Field(
        None,
        min_length=MIN_PASSWORD_LEN,
        max_length=MAX_PASSWORD_LEN,
        description="omit to have one generated and returned once",
    )
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"username": "bob", "role": "viewer"}]}
    )


class UserCreated(BaseModel):
    user: UserOut
    password: str | None = Field(None, description="the generated password, shown only in this response")


class UserUpdate(Strict):
    role: RoleName | None = None
    disabled: bool | None = None
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "trader"}]})


class PasswordSet(Strict):
    password: str = Field(min_length=MIN_PASSWORD_LEN, max_length=MAX_PASSWORD_LEN)
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"password": "a long new passphrase"}]}
    )


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\x20-\x7e]+$")
    role: RoleName
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "dashboard", "role": "viewer"}]}
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    owner: str
    role: RoleName
    created_at: int
    last_used_at: int | None
    revoked: bool
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f9a1c2b7d4e",
                    "name": "dashboard",
                    "owner": "alice",
                    "role": "viewer",
                    "created_at": 1767225600,
                    "last_used_at": None,
                    "revoked": False,
                }
            ]
        }
    )


class ApiKeyCreated(BaseModel):
    key: ApiKeyOut
    secret: str = Field(description="send as the X-API-Key header; shown only in this response")


class AuditEntry(BaseModel):
    ts: int
    actor: str | None
    action: str
    target: str | None
    detail: dict[str, object] | None
