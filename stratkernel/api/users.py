"""Users, sessions (refresh-token families) and API keys, stored in the kernel's SQLite database.

The tables live next to the kernel's but are migrated separately, through their own
``schema_migrations_auth`` table, so the API and the kernel store can evolve independently.

What is stored, and why it is safe to store:

- ``users``: argon2id password hashes (argon2-cffi), never the password.
- ``token_families``: one row per login session. Every refresh token and access token carries its
  family id; revoking the family (logout, reuse of a spent refresh token, password change) ends the
  whole session, access tokens included.
- ``refresh_tokens``: one row per issued refresh token, keyed by its ``jti``. A refresh token can be
  spent once; presenting a spent one is treated as theft and revokes its family.
- ``api_keys``: the SHA-256 of the key, never the key. A key is shown once, at creation. Its role can
  not exceed its owner's, and it stops working when the owner is disabled or removed.
- ``auth_audit``: who did what to which account or key.

All methods are async and safe to call concurrently from one event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiosqlite
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..core.errors import AuthError, StoreError, ValidationError

Role = Literal["viewer", "trader", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "trader", "admin")
ROLE_RANK: dict[str, int] = {"viewer": 1, "trader": 2, "admin": 3}

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD_LEN = 12
# argon2 cost grows with input length; a bound keeps a login from becoming a CPU sink.
MAX_PASSWORD_LEN = 1024
API_KEY_PREFIX = "sk_"
# How long a verified session is trusted without asking the database again (see check_session).
SESSION_CACHE_SECONDS = 2.0


def _now() -> int:
    return int(time.time())


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise ValidationError(
            "username",
            username,
            "1-64 characters: letters, digits, '_', '.', '-'; starting with a letter or digit",
        )
    return username


def check_password(password: str) -> str:
    if not isinstance(password, str):
        raise ValidationError("password", "<hidden>", "must be a string")
    if len(password) < MIN_PASSWORD_LEN:
        raise ValidationError("password", "<hidden>", f"must be at least {MIN_PASSWORD_LEN} characters")
    if len(password) > MAX_PASSWORD_LEN:
        raise ValidationError("password", "<hidden>", f"must be at most {MAX_PASSWORD_LEN} characters")
    return password


def check_role(role: str) -> Role:
    if role not in ROLE_RANK:
        raise ValidationError("role", role, f"must be one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def generate_password() -> str:
    """A random password for a new account, to be shown to the operator exactly once."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role
    created_at: int
    disabled: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "role": self.role,
            "created_at": self.created_at,
            "disabled": self.disabled,
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    owner: str
    role: Role
    created_at: int
    last_used_at: int | None
    revoked: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "role": self.role,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class Session:
    """What a valid token resolves to after the database has been consulted."""

    user: User
    family_id: str


_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'trader', 'admin')),
            created_at INTEGER NOT NULL,
            password_changed_at INTEGER NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE token_families (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER,
            revoked_reason TEXT
        );
        CREATE INDEX token_families_user ON token_families(user_id);
        CREATE TABLE refresh_tokens (
            jti TEXT PRIMARY KEY,
            family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
            issued_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            used_at INTEGER
        );
        CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'trader', 'admin')),
            created_at INTEGER NOT NULL,
            last_used_at INTEGER,
            revoked_at INTEGER
        );
        CREATE TABLE auth_audit (
            id INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL,
            actor TEXT,
            action TEXT NOT NULL,
            target TEXT,
            detail TEXT
        );
        """,
    ),
]
SCHEMA_VERSION = _MIGRATIONS[-1][0]


def _hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserStore:
    """Accounts, sessions and API keys in SQLite. ``await open()`` before use, ``await close()`` after.

    Raises :class:`ValidationError` for malformed input, :class:`AuthError` for refused credentials
    and tokens, :class:`StoreError` for an unusable database (e.g. written by a newer version).
    """

    def __init__(self, db_path: Path | str, *, password_hasher: PasswordHasher | None = None) -> None:
        """``password_hasher``: argon2 parameters; the argon2-cffi defaults (RFC 9106 low-memory
        profile) unless given. Hashes made with other parameters are upgraded at the next login."""
        self.db_path = Path(db_path)
        self._hasher = password_hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        self._session_cache: dict[tuple[str, int], tuple[float, Session]] = {}
        self._db: aiosqlite.Connection | None = None
        # One connection is shared; the lock keeps one coroutine's transaction from interleaving with
        # another's statements.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> UserStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._db is not None:
            return
        if str(self.db_path) != ":memory:":
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(self.db_path, isolation_level=None)
        except Exception as exc:
            raise StoreError(f"cannot open {self.db_path}: {exc}") from exc
        self._db = db
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("UserStore is not open; call await store.open() first")
        return self._db

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self.db
            self._session_cache.clear()
            # IMMEDIATE takes the write lock up front, so two API workers rotating the same refresh
            # token cannot both read it as unused.
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            else:
                await db.execute("COMMIT")

    async def _migrate(self) -> None:
        async with self._tx() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations_auth "
                "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
            )
            async with db.execute("SELECT MAX(version) FROM schema_migrations_auth") as cur:
                row = await cur.fetchone()
            current = (row[0] if row else None) or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.db_path}: auth schema version {current} is newer than this stratkernel "
                    f"supports ({SCHEMA_VERSION})"
                )
            for version, sql in _MIGRATIONS:
                if version <= current:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations_auth (version, applied_at) VALUES (?, ?)",
                    (version, _now()),
                )

    async def _audit(
        self, db: aiosqlite.Connection, actor: str | None, action: str, target: str | None, **detail: Any
    ) -> None:
        await db.execute(
            "INSERT INTO auth_audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (_now(), actor, action, target, json.dumps(detail, sort_keys=True) if detail else None),
        )

    # ---- users -------------------------------------------------------------------------------

    @staticmethod
    def _user(row: aiosqlite.Row) -> User:
        return User(
            id=row["id"],
            username=row["username"],
            role=row["role"],
            created_at=row["created_at"],
            disabled=bool(row["disabled"]),
        )

    async def add_user(self, username: str, password: str, role: str, *, actor: str | None = None) -> User:
        """Create an account. Raises ValidationError for a bad name/password/role or a taken name."""
        check_username(username)
        check_password(password)
        check_role(role)
        # Hash outside the lock: argon2 is deliberately slow and must not block other requests.
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        now = _now()
        async with self._tx() as db:
            async with db.execute("SELECT 1 FROM users WHERE username = ?", (username,)) as cur:
                if await cur.fetchone():
                    raise ValidationError("username", username, "already exists")
            cur = await db.execute(
                "INSERT INTO users (username, password_hash, role, created_at, password_changed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (username, password_hash, role, now, now),
            )
            user_id = cur.lastrowid
            await self._audit(db, actor, "user.add", username, role=role)
        assert user_id is not None
        return User(user_id, username, role, now, False)  # type: ignore[arg-type]

    async def get_user(self, username: str) -> User | None:
        async with self._lock, self.db.execute("SELECT * FROM users WHERE username = ?", (username,)) as cur:
            row = await cur.fetchone()
        return self._user(row) if row else None

    async def list_users(self) -> list[User]:
        async with self._lock, self.db.execute("SELECT * FROM users ORDER BY username") as cur:
            rows = await cur.fetchall()
        return [self._user(r) for r in rows]

    async def count_users(self) -> int:
        async with self._lock, self.db.execute("SELECT COUNT(*) FROM users") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def ensure_admin(self, username: str = "admin") -> str | None:
        """On a fresh database (no users at all), create ``username`` as admin with a random password.

        Returns the password, which the caller prints once (``make run``), or None when users exist.
        There is no default account: without this call, or ``stratkernel users add``, nobody can log in.
        """
        if await self.count_users() > 0:
            return None
        password = generate_password()
        try:
            await self.add_user(username, password, "admin", actor="first-run")
        except ValidationError:
            # Another process created the first user between the count and the insert.
            return None
        return password

    async def _require_user(self, db: aiosqlite.Connection, username: str) -> aiosqlite.Row:
        async with db.execute("SELECT * FROM users WHERE username = ?", (username,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise ValidationError("username", username, "no such user")
        return row

    async def _refuse_losing_last_admin(self, db: aiosqlite.Connection, row: aiosqlite.Row) -> None:
        # Without an enabled admin nobody could resume after a loss-limit halt or manage users.
        if row["role"] != "admin" or row["disabled"]:
            return
        async with db.execute(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id != ?", (row["id"],)
        ) as cur:
            others = (await cur.fetchone())[0]  # type: ignore[index]
        if others == 0:
            raise ValidationError("username", row["username"], "is the last enabled admin")

    async def remove_user(self, username: str, *, actor: str | None = None) -> None:
        """Delete an account with its sessions and API keys."""
        async with self._tx() as db:
            row = await self._require_user(db, username)
            await self._refuse_losing_last_admin(db, row)
            await db.execute("DELETE FROM users WHERE id = ?", (row["id"],))
            await self._audit(db, actor, "user.remove", username)

    async def set_password(self, username: str, password: str, *, actor: str | None = None) -> None:
        """Change a password; every session of the user is revoked."""
        check_password(password)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        async with self._tx() as db:
            row = await self._require_user(db, username)
            await db.execute(
                "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                (password_hash, _now(), row["id"]),
            )
            await self._revoke_user_sessions(db, row["id"], "password changed")
            await self._audit(db, actor, "user.passwd", username)

    async def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        actor: str | None = None,
    ) -> User:
        """Change role and/or disabled flag. Sessions end when a user is disabled or demoted."""
        if role is not None:
            check_role(role)
        async with self._tx() as db:
            row = await self._require_user(db, username)
            demoted = role is not None and ROLE_RANK[role] < ROLE_RANK[row["role"]]
            if demoted or disabled:
                await self._refuse_losing_last_admin(db, row)
            new_role = role if role is not None else row["role"]
            new_disabled = int(disabled) if disabled is not None else row["disabled"]
            await db.execute(
                "UPDATE users SET role = ?, disabled = ? WHERE id = ?", (new_role, new_disabled, row["id"])
            )
            if demoted or disabled:
                await self._revoke_user_sessions(db, row["id"], "role or status changed")
            await self._audit(db, actor, "user.update", username, role=new_role, disabled=bool(new_disabled))
        return User(row["id"], row["username"], check_role(new_role), row["created_at"], bool(new_disabled))

    async def verify_password(self, username: str, password: str) -> User:
        """Return the user if the password matches; AuthError otherwise (same message either way)."""
        refused = AuthError("incorrect username or password")
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LEN:
            raise refused
        row = None
        if isinstance(username, str) and USERNAME_RE.match(username):
            async with (
                self._lock,
                self.db.execute("SELECT * FROM users WHERE username = ?", (username,)) as cur,
            ):
                row = await cur.fetchone()
        if row is None and self._dummy_hash is None:
            # Verified against when the username does not exist, so a login for an unknown name costs
            # the same as one with a wrong password and does not reveal which names exist.
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
        stored = row["password_hash"] if row is not None else self._dummy_hash
        assert stored is not None
        try:
            await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise refused from None
        if row is None:
            raise refused
        if row["disabled"]:
            raise AuthError("account disabled")
        if self._hasher.check_needs_rehash(stored):
            new_hash = await asyncio.to_thread(self._hasher.hash, password)
            async with self._tx() as db:
                await db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (new_hash, row["id"]))
        return self._user(row)

    # ---- sessions and refresh tokens ---------------------------------------------------------

    async def start_session(self, user: User, refresh_jti: str, refresh_expires_at: int) -> str:
        """Open a token family for ``user`` with its first refresh token; returns the family id."""
        family_id = uuid.uuid4().hex
        now = _now()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO token_families (id, user_id, created_at) VALUES (?, ?, ?)",
                (family_id, user.id, now),
            )
            await db.execute(
                "INSERT INTO refresh_tokens (jti, family_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                (refresh_jti, family_id, now, refresh_expires_at),
            )
            await self._audit(db, user.username, "session.start", family_id)
        return family_id

    async def rotate_refresh(
        self, jti: str, family_id: str, user_id: int, new_jti: str, new_expires_at: int
    ) -> Session:
        """Spend refresh token ``jti`` and record ``new_jti`` as its successor in the same family.

        A token that was already spent is a replay (the token was stolen, or the client is broken):
        the whole family is revoked, so the thief's and the owner's newer tokens both stop working.
        """
        now = _now()
        reuse = False
        async with self._tx() as db:
            async with db.execute(
                "SELECT r.used_at, r.expires_at, f.revoked_at, f.user_id, u.disabled, u.id AS uid, "
                "u.username, u.role, u.created_at "
                "FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id "
                "JOIN users u ON u.id = f.user_id WHERE r.jti = ? AND r.family_id = ?",
                (jti, family_id),
            ) as cur:
                row = await cur.fetchone()
            if row is None or row["user_id"] != user_id:
                raise AuthError("refresh token is not known")
            if row["revoked_at"] is not None:
                raise AuthError("session has been revoked")
            if row["used_at"] is not None:
                await self._revoke_family(db, family_id, "refresh token reuse")
                await self._audit(db, row["username"], "session.reuse_detected", family_id, jti=jti)
                reuse = True
            else:
                if row["expires_at"] <= now:
                    raise AuthError("refresh token has expired")
                if row["disabled"]:
                    raise AuthError("account disabled")
                await db.execute("UPDATE refresh_tokens SET used_at = ? WHERE jti = ?", (now, jti))
                await db.execute(
                    "INSERT INTO refresh_tokens (jti, family_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                    (new_jti, family_id, now, new_expires_at),
                )
        # Raised after COMMIT so the revocation sticks.
        if reuse:
            raise AuthError("refresh token was already used; the session has been revoked")
        user = User(row["uid"], row["username"], row["role"], row["created_at"], False)
        return Session(user, family_id)

    async def check_session(self, family_id: str, user_id: int) -> Session:
        """Resolve an access token's session: the family must be live and the user enabled.

        Answers are cached for :data:`SESSION_CACHE_SECONDS`; every write through this store clears the
        cache, so revocations made through the API or this process apply at once, and those made by
        another process (the CLI) within that many seconds.
        """
        key = (family_id, user_id)
        cached = self._session_cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._lock:
            rows = await self.db.execute_fetchall(
                "SELECT f.revoked_at, u.* FROM token_families f JOIN users u ON u.id = f.user_id "
                "WHERE f.id = ? AND f.user_id = ?",
                (family_id, user_id),
            )
        row = next(iter(rows), None)
        if row is None:
            raise AuthError("session is not known")
        if row["revoked_at"] is not None:
            raise AuthError("session has been revoked")
        if row["disabled"]:
            raise AuthError("account disabled")
        session = Session(self._user(row), family_id)
        if len(self._session_cache) > 10_000:
            self._session_cache.clear()
        self._session_cache[key] = (now + SESSION_CACHE_SECONDS, session)
        return session

    async def revoke_session(
        self, family_id: str, *, reason: str = "logout", actor: str | None = None
    ) -> None:
        async with self._tx() as db:
            await self._revoke_family(db, family_id, reason)
            await self._audit(db, actor, "session.revoke", family_id, reason=reason)

    async def _revoke_family(self, db: aiosqlite.Connection, family_id: str, reason: str) -> None:
        await db.execute(
            "UPDATE token_families SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
            (_now(), reason, family_id),
        )

    async def _revoke_user_sessions(self, db: aiosqlite.Connection, user_id: int, reason: str) -> None:
        await db.execute(
            "UPDATE token_families SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL",
            (_now(), reason, user_id),
        )

    async def session_state(self, family_id: str) -> dict[str, Any] | None:
        """A family's revocation state and its refresh tokens (for tests and the operator)."""
        async with self._lock:
            async with self.db.execute("SELECT * FROM token_families WHERE id = ?", (family_id,)) as cur:
                fam = await cur.fetchone()
            if fam is None:
                return None
            async with self.db.execute(
                "SELECT jti, used_at, expires_at FROM refresh_tokens WHERE family_id = ? ORDER BY issued_at, rowid",
                (family_id,),
            ) as cur:
                tokens = [dict(r) for r in await cur.fetchall()]
        return {"revoked_at": fam["revoked_at"], "revoked_reason": fam["revoked_reason"], "tokens": tokens}

    async def purge_expired(self) -> int:
        """Delete refresh tokens and families past their expiry; returns the number of tokens deleted."""
        now = _now()
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (now,))
            deleted = cur.rowcount
            await db.execute(
                "DELETE FROM token_families WHERE id NOT IN (SELECT family_id FROM refresh_tokens)"
            )
        return deleted

    # ---- API keys ----------------------------------------------------------------------------

    async def create_api_key(
        self, owner: str, name: str, role: str, *, actor: str | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key for ``owner``; returns the record and the secret key (shown once, not stored).

        The key's role may not exceed the owner's role.
        """
        check_role(role)
        if not isinstance(name, str) or not (1 <= len(name) <= 100) or not name.isprintable():
            raise ValidationError("name", name, "1-100 printable characters")
        key_id = secrets.token_hex(6)
        secret = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = _now()
        async with self._tx() as db:
            row = await self._require_user(db, owner)
            if ROLE_RANK[role] > ROLE_RANK[row["role"]]:
                raise ValidationError("role", role, f"exceeds the owner's role ({row['role']})")
            await db.execute(
                "INSERT INTO api_keys (id, user_id, name, key_hash, role, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, row["id"], name, _hash_key(secret), role, now),
            )
            await self._audit(db, actor or owner, "apikey.create", key_id, owner=row["username"], role=role)
        return ApiKey(key_id, name, row["username"], role, now, None, False), secret  # type: ignore[arg-type]

    async def list_api_keys(self, owner: str | None = None) -> list[ApiKey]:
        sql = (
            "SELECT k.*, u.username AS owner FROM api_keys k JOIN users u ON u.id = k.user_id"
            + (" WHERE u.username = ?" if owner is not None else "")
            + " ORDER BY k.created_at, k.id"
        )
        async with self._lock, self.db.execute(sql, (owner,) if owner is not None else ()) as cur:
            rows = await cur.fetchall()
        return [
            ApiKey(
                r["id"],
                r["name"],
                r["owner"],
                r["role"],
                r["created_at"],
                r["last_used_at"],
                r["revoked_at"] is not None,
            )
            for r in rows
        ]

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        keys = [k for k in await self.list_api_keys() if k.id == key_id]
        return keys[0] if keys else None

    async def revoke_api_key(
        self, key_id: str, *, owner: str | None = None, actor: str | None = None
    ) -> None:
        """Revoke a key. With ``owner``, only that user's key can be revoked."""
        async with self._tx() as db:
            async with db.execute(
                "SELECT k.id, u.username FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?",
                (key_id,),
            ) as cur:
                row = await cur.fetchone()
            # The same message whether the key does not exist or belongs to someone else.
            if row is None or (owner is not None and row["username"] != owner):
                raise ValidationError("key_id", key_id, "no such API key")
            await db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), key_id)
            )
            await self._audit(db, actor, "apikey.revoke", key_id, owner=row["username"])

    async def verify_api_key(self, secret: str) -> tuple[User, ApiKey]:
        """Resolve a presented key to its owner and record; AuthError if unknown, revoked or orphaned.

        The effective role is the lower of the key's role and the owner's current role.
        """
        refused = AuthError("invalid API key")
        if not isinstance(secret, str) or not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
            raise refused
        key_id = secret[len(API_KEY_PREFIX) :].split("_", 1)[0]
        async with self._lock:
            rows = await self.db.execute_fetchall(
                "SELECT k.*, u.username, u.role AS user_role, u.created_at AS user_created, u.disabled "
                "FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?",
                (key_id,),
            )
            row = next(iter(rows), None)
            if row is None or not hmac.compare_digest(row["key_hash"], _hash_key(secret)):
                raise refused
            if row["revoked_at"] is not None:
                raise AuthError("API key has been revoked")
            if row["disabled"]:
                raise AuthError("account disabled")
            now = _now()
            # Written at most once a minute per key so a busy program does not turn reads into writes.
            if row["last_used_at"] is None or now - row["last_used_at"] >= 60:
                await self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))
        role = min(row["role"], row["user_role"], key=ROLE_RANK.__getitem__)
        user = User(row["user_id"], row["username"], role, row["user_created"], False)
        key = ApiKey(key_id, row["name"], row["username"], row["role"], row["created_at"], now, False)
        return user, key

    # ---- audit -------------------------------------------------------------------------------

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        async with (
            self._lock,
            self.db.execute(
                "SELECT ts, actor, action, target, detail FROM auth_audit ORDER BY id DESC LIMIT ?", (limit,)
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]
