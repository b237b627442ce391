"""Routes for sessions, the caller's own account, user administration and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, Response, status

from ..core.errors import AuthError, ValidationError
from .auth import Forbidden, Principal, TokenService, public, require_role
from .limits import RateLimits
from .schemas import (
    USERNAME_PATTERN,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    AuditEntry,
    ErrorResponse,
    Me,
    PasswordChange,
    PasswordSet,
    RefreshRequest,
    TokenResponse,
    UserCreate,
    UserCreated,
    UserOut,
    UserUpdate,
)
from .users import MAX_PASSWORD_LEN, ROLE_RANK, UserStore, generate_password

router = APIRouter()

Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
UsernamePath = Annotated[str, Path(pattern=USERNAME_PATTERN, max_length=64, examples=["alice"])]
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", examples=["3f9a1c2b7d4e"])]


def _tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


def _store(request: Request) -> UserStore:
    store: UserStore = request.app.state.user_store
    return store


def _limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.limits
    return limits


def _client(request: Request) -> str:
    # The socket peer. X-Forwarded-For is not trusted: anyone could send it to dodge the limit.
    return request.client.host if request.client else "unknown"


# ---- sessions ------------------------------------------------------------------------------------


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    tags=["auth"],
    summary="Log in (OAuth2 password flow)",
    dependencies=[Depends(public)],
    responses={
        401: {"model": ErrorResponse, "description": "wrong username or password"},
        429: {"model": ErrorResponse, "description": "too many attempts"},
    },
)
async def login(
    request: Request,
    response: Response,
    username: Annotated[str, Form(min_length=1, max_length=64, examples=["alice"])],
    password: Annotated[str, Form(min_length=1, max_length=MAX_PASSWORD_LEN)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    scope: Annotated[str, Form(max_length=200)] = "",
) -> TokenResponse:
    """Exchange a username and password for an access token (short-lived) and a refresh token.

    Limited per client address and per username (default 5/minute each).
    """
    await _limits(request).hit_login(_client(request), username, response)
    pair = await _tokens(request).login(username, password)
    return TokenResponse(**pair.as_dict())


@router.post(
    "/auth/refresh",
    response_model=TokenResponse,
    tags=["auth"],
    summary="Rotate a refresh token",
    dependencies=[Depends(public)],
    responses={
        401: {"model": ErrorResponse, "description": "invalid, expired, revoked or reused refresh token"}
    },
)
async def refresh(request: Request, response: Response, body: RefreshRequest) -> TokenResponse:
    """Spend a refresh token for a new token pair. Each refresh token works once: presenting a spent one
    revokes the whole session (every token issued from the same login)."""
    tokens = _tokens(request)
    claims = tokens.decode(body.refresh_token, "refresh")
    await _limits(request).hit_refresh(f"user:{claims['sub']}", response)
    pair = await tokens.refresh(body.refresh_token, claims)
    return TokenResponse(**pair.as_dict())


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    summary="End this session",
    responses={400: {"model": ErrorResponse, "description": "called with an API key"}},
)
async def logout(request: Request, principal: Viewer) -> Response:
    """Revoke the session of the presented access token: it and its refresh tokens stop working."""
    if principal.family_id is None:
        raise HTTPException(400, "API keys have no session; revoke the key instead")
    await _tokens(request).logout(principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- the caller ----------------------------------------------------------------------------------


@router.get("/me", response_model=Me, tags=["auth"], summary="Who am I")
async def me(principal: Viewer) -> Me:
    return Me(
        username=principal.username,
        role=principal.role,
        via=principal.via,
        api_key_id=principal.key_id,
    )


@router.post(
    "/me/password", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"], summary="Change my password"
)
async def change_my_password(request: Request, principal: Viewer, body: PasswordChange) -> Response:
    """Change the caller's password. Every session of the caller, this one included, is revoked."""
    if principal.via != "token":
        raise Forbidden("a password can only be changed with a session token, not an API key")
    store = _store(request)
    try:
        await store.verify_password(principal.username, body.current_password)
    except AuthError:
        raise Forbidden("current password is incorrect") from None
    await store.set_password(principal.username, body.new_password, actor=principal.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- users (admin) -------------------------------------------------------------------------------


async def _existing(store: UserStore, username: str) -> UserOut:
    user = await store.get_user(username)
    if user is None:
        raise HTTPException(404, f"no user named {username!r}")
    return UserOut(**user.as_dict())


@router.get("/users", response_model=list[UserOut], tags=["users"], summary="List users")
async def list_users(request: Request, principal: Admin) -> list[UserOut]:
    return [UserOut(**u.as_dict()) for u in await _store(request).list_users()]


@router.post(
    "/users",
    response_model=UserCreated,
    status_code=status.HTTP_201_CREATED,
    tags=["users"],
    summary="Create a user",
    responses={409: {"model": ErrorResponse, "description": "username taken"}},
)
async def create_user(request: Request, principal: Admin, body: UserCreate) -> UserCreated:
    """Create an account. Without ``password`` one is generated and returned in this response only."""
    store = _store(request)
    if await store.get_user(body.username) is not None:
        raise HTTPException(409, f"user {body.username!r} already exists")
    password = body.password or generate_password()
    user = await store.add_user(body.username, password, body.role, actor=principal.username)
    return UserCreated(user=UserOut(**user.as_dict()), password=None if body.password else password)


@router.get("/users/{username}", response_model=UserOut, tags=["users"], summary="Show a user")
async def get_user(request: Request, principal: Admin, username: UsernamePath) -> UserOut:
    return await _existing(_store(request), username)


@router.patch("/users/{username}", response_model=UserOut, tags=["users"], summary="Change role or status")
async def update_user(
    request: Request, principal: Admin, username: UsernamePath, body: UserUpdate
) -> UserOut:
    """Change a user's role or disable/enable it. Demoting or disabling ends the user's sessions."""
    store = _store(request)
    await _existing(store, username)
    user = await store.update_user(username, role=body.role, disabled=body.disabled, actor=principal.username)
    return UserOut(**user.as_dict())


@router.put(
    "/users/{username}/password",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["users"],
    summary="Set a user's password",
)
async def set_user_password(
    request: Request, principal: Admin, username: UsernamePath, body: PasswordSet
) -> Response:
    store = _store(request)
    await _existing(store, username)
    await store.set_password(username, body.password, actor=principal.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/users/{username}", status_code=status.HTTP_204_NO_CONTENT, tags=["users"], summary="Remove a user"
)
async def remove_user(request: Request, principal: Admin, username: UsernamePath) -> Response:
    """Delete a user with its sessions and API keys. The last enabled admin cannot be removed."""
    store = _store(request)
    await _existing(store, username)
    await store.remove_user(username, actor=principal.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/audit", response_model=list[AuditEntry], tags=["users"], summary="Account audit log")
async def auth_audit(
    request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditEntry]:
    return [AuditEntry(**e) for e in await _store(request).audit_log(limit)]


# ---- API keys ------------------------------------------------------------------------------------


@router.get("/apikeys", response_model=list[ApiKeyOut], tags=["apikeys"], summary="List API keys")
async def list_api_keys(
    request: Request,
    principal: Viewer,
    all_users: Annotated[bool, Query(alias="all", description="every user's keys (admin only)")] = False,
) -> list[ApiKeyOut]:
    if all_users and not principal.has_role("admin"):
        raise Forbidden("listing every user's keys needs the admin role")
    owner = None if all_users else principal.username
    return [ApiKeyOut(**k.as_dict()) for k in await _store(request).list_api_keys(owner)]


@router.post(
    "/apikeys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    tags=["apikeys"],
    summary="Create an API key",
)
async def create_api_key(request: Request, principal: Viewer, body: ApiKeyCreate) -> ApiKeyCreated:
    """Create a key acting as the caller with at most the caller's role. The key is in this response
    only; the server keeps its SHA-256."""
    if principal.via != "token":
        # A leaked key must not be able to mint more keys and outlive its own revocation.
        raise Forbidden("API keys can only be created with a session token")
    if ROLE_RANK[body.role] > ROLE_RANK[principal.role]:
        raise Forbidden(f"a key cannot have more than your role ({principal.role})")
    key, secret = await _store(request).create_api_key(
        principal.username, body.name, body.role, actor=principal.username
    )
    return ApiKeyCreated(key=ApiKeyOut(**key.as_dict()), secret=secret)


@router.delete(
    "/apikeys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["apikeys"], summary="Revoke an API key"
)
async def revoke_api_key(request: Request, principal: Viewer, key_id: KeyIdPath) -> Response:
    """Revoke one of the caller's keys (an admin may revoke anyone's)."""
    owner = None if principal.has_role("admin") else principal.username
    try:
        await _store(request).revoke_api_key(key_id, owner=owner, actor=principal.username)
    except ValidationError:
        raise HTTPException(404, f"no API key {key_id!r}") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
