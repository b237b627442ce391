"""Tokens, principals and the role every route must declare.

Tokens (python-jose):

- The algorithm is pinned by the server configuration. The token header's ``alg`` is compared with it
  before anything else and the decoder is given only that one algorithm, so ``alg: none`` and HS/RS
  confusion (an HS256 token "signed" with the RSA public key) are refused.
- ``exp``, ``iat``, ``nbf``, ``iss``, ``aud``, ``jti`` and ``sub`` are required and checked (with
  ``clock_skew_seconds`` of leeway); ``iat`` in the future is refused too.
- ``typ`` separates access tokens from refresh tokens: neither is accepted where the other is expected.
- Every token carries ``fam``, its session (token family). An access token is only accepted while its
  family is live and its user enabled, so logout, refresh-token reuse, a password change, disabling
  or demoting a user end the session at once rather than when the access token expires. The role
  used for authorization is the user's current role in the database, not the token's ``role`` claim.

Roles are ordered viewer < trader < admin. Routes declare theirs with a dependency:
``Depends(require_role("trader"))`` (which also yields the :class:`Principal`) or
``Depends(public)``. :func:`route_roles` reads the declaration back from a route, which is how the
test that enumerates ``app.routes`` finds an undeclared route.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request, Response, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError
from starlette.routing import BaseRoute

from ..core.errors import AuthError
from .config import ApiConfig, SigningKeys
from .users import ROLE_RANK, Session, User, UserStore

TokenType = Literal["access", "refresh"]
RouteRole = Literal["public", "viewer", "trader", "admin"]
ROLE_ATTR = "stratkernel_role"
MAX_TOKEN_CHARS = 4096


class Forbidden(AuthError):
    """Authenticated, but the role does not allow this (HTTP 403 rather than 401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user through a session token, or a user's program through an API key."""

    user: User
    via: Literal["token", "api_key"]
    family_id: str | None = None
    key_id: str | None = None

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def role(self) -> str:
        return self.user.role

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.user.role] >= ROLE_RANK[role]

    @property
    def rate_key(self) -> str:
        # API keys get their own bucket so one busy program cannot starve its owner's dashboard.
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user.id}"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    token_type: str = "bearer"

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
        }


_REQUIRED = ("exp", "iat", "nbf", "iss", "aud", "jti", "sub")


class TokenService:
    """Issues and checks JWTs against one pinned algorithm and key, backed by a :class:`UserStore`."""

    def __init__(self, config: ApiConfig, keys: SigningKeys, store: UserStore) -> None:
        self.config = config
        self.keys = keys
        self.store = store

    # ---- encoding ----------------------------------------------------------------------------

    def _encode(self, user: User, token_type: TokenType, family_id: str, jti: str, ttl: int) -> str:
        now = int(time.time())
        claims = {
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "sub": str(user.id),
            "name": user.username,
            "role": user.role,
            "typ": token_type,
            "fam": family_id,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        return str(jwt.encode(claims, self.keys.sign, algorithm=self.keys.algorithm))

    def _pair(self, user: User, family_id: str, refresh_jti: str) -> TokenPair:
        access = self._encode(user, "access", family_id, uuid.uuid4().hex, self.config.access_ttl_seconds)
        refresh = self._encode(user, "refresh", family_id, refresh_jti, self.config.refresh_ttl_seconds)
        return TokenPair(access, refresh, self.config.access_ttl_seconds, self.config.refresh_ttl_seconds)

    # ---- decoding ----------------------------------------------------------------------------

    def decode(self, token: str, expected: TokenType) -> dict[str, Any]:
        """Verify signature and claims; return the claims. Raises :class:`AuthError` with the reason."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise AuthError("malformed token") from None
        # Checked before the library sees the token: the header is attacker-controlled.
        if header.get("alg") != self.keys.algorithm:
            raise AuthError(f"token algorithm {header.get('alg')!r} is not accepted")
        leeway = self.config.clock_skew_seconds
        options: dict[str, bool | int] = {f"require_{c}": True for c in _REQUIRED}
        options["leeway"] = leeway
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.keys.verify,
                algorithms=[self.keys.algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                options=options,
            )
        except ExpiredSignatureError:
            raise AuthError("token has expired") from None
        except JWTClaimsError as exc:
            raise AuthError(f"token claims refused: {exc}") from None
        except JWTError:
            raise AuthError("token signature or format is invalid") from None
        if not isinstance(claims.get("iat"), int) or claims["iat"] > time.time() + leeway:
            raise AuthError("token claims refused: issued in the future")
        if claims.get("typ") != expected:
            raise AuthError(f"not an {expected} token" if expected == "access" else f"not a {expected} token")
        for name in ("jti", "fam"):
            value = claims.get(name)
            if not isinstance(value, str) or not (1 <= len(value) <= 64):
                raise AuthError(f"token claims refused: {name} missing or malformed")
        if not isinstance(claims.get("sub"), str) or not claims["sub"].isdigit():
            raise AuthError("token claims refused: sub malformed")
        return claims

    # ---- flows -------------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> TokenPair:
        user = await self.store.verify_password(username, password)
        refresh_jti = uuid.uuid4().hex
        expires_at = int(time.time()) + self.config.refresh_ttl_seconds
        family_id = await self.store.start_session(user, refresh_jti, expires_at)
        return self._pair(user, family_id, refresh_jti)

    async def refresh(self, refresh_token: str, claims: dict[str, Any] | None = None) -> TokenPair:
        """Rotate: spend ``refresh_token`` and return a new pair in the same family.

        ``claims`` may be passed when the caller already decoded the token (e.g. to rate-limit by user).
        """
        if claims is None:
            claims = self.decode(refresh_token, "refresh")
        new_jti = uuid.uuid4().hex
        session = await self.store.rotate_refresh(
            claims["jti"],
            claims["fam"],
            int(claims["sub"]),
            new_jti,
            int(time.time()) + self.config.refresh_ttl_seconds,
        )
        return self._pair(session.user, session.family_id, new_jti)

    async def authenticate_token(self, token: str) -> Principal:
        claims = self.decode(token, "access")
        session: Session = await self.store.check_session(claims["fam"], int(claims["sub"]))
        return Principal(session.user, "token", family_id=session.family_id)

    async def authenticate_api_key(self, key: str) -> Principal:
        user, api_key = await self.store.verify_api_key(key)
        return Principal(user, "api_key", key_id=api_key.id)

    async def logout(self, principal: Principal) -> None:
        if principal.family_id is None:
            raise AuthError("API keys have no session; revoke the key instead")
        await self.store.revoke_session(principal.family_id, reason="logout", actor=principal.username)


# ---- FastAPI dependencies ------------------------------------------------------------------------

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


class RoleRequirement:
    """Dependency: authenticate the caller (Bearer JWT or X-API-Key) and require at least ``role``.

    Yields the :class:`Principal`. Also applies the per-user general rate limit and sets the
    ``X-RateLimit-*`` headers, because only here is the user known.
    """

    def __init__(self, role: RouteRole) -> None:
        if role != "public" and role not in ROLE_RANK:
            raise ValueError(f"unknown role {role!r}")
        self.role = role
        setattr(self, ROLE_ATTR, role)

    def __repr__(self) -> str:
        return f"require_role({self.role!r})"

    async def __call__(
        self,
        request: Request,
        response: Response,
        token: str | None = Security(oauth2_scheme),
        api_key: str | None = Security(api_key_scheme),
    ) -> Principal:
        tokens: TokenService = request.app.state.tokens
        if token and api_key:
            raise AuthError("send either a bearer token or an API key, not both")
        if token:
            principal = await tokens.authenticate_token(token)
        elif api_key:
            principal = await tokens.authenticate_api_key(api_key)
        else:
            raise AuthError("not authenticated: send 'Authorization: Bearer <token>' or 'X-API-Key'")
        if not principal.has_role(self.role):
            raise Forbidden(f"this needs the {self.role} role; {principal.username} is {principal.role}")
        request.state.principal = principal
        await request.app.state.limits.hit_general(principal.rate_key, response)
        return principal


_requirements: dict[str, RoleRequirement] = {}


def require_role(role: RouteRole) -> RoleRequirement:
    """The dependency for routes that need ``role`` (one shared instance per role)."""
    if role == "public":
        raise ValueError("use Depends(public) for public routes")
    if role not in _requirements:
        _requirements[role] = RoleRequirement(role)
    return _requirements[role]


async def public(request: Request) -> None:
    """Marks a route as deliberately reachable without credentials."""
    request.state.principal = None


setattr(public, ROLE_ATTR, "public")


def route_roles(route: BaseRoute | Any) -> set[str]:
    """The roles a route declares through its dependencies (empty if it declares none).

    ``route`` is an APIRoute or a FastAPI route context (what ``app.routes`` flattens to), anything
    with the ``dependant`` FastAPI builds for it.
    """
    dependant = getattr(route, "dependant", None)
    found: set[str] = set()
    stack = [dependant] if dependant is not None else []
    while stack:
        dep = stack.pop()
        role = getattr(dep.call, ROLE_ATTR, None) if dep.call is not None else None
        if role is not None:
            found.add(role)
        stack.extend(dep.dependencies)
    return found
