"""Rate limits: login per client address and per username, refresh and general requests per user.

Built on slowapi's :class:`~slowapi.Limiter`, which owns the storage (``memory://`` by default,
``redis://`` when configured so several API workers share counters) and the moving-window strategy
from the ``limits`` library. The checks themselves run in our dependencies rather than through
slowapi's route decorator, because the keys we need are not visible to a decorator's key function:
the username inside the login form, and the authenticated user or API key.

A refused request raises :class:`RateLimited`, which the app turns into 429 with ``Retry-After`` and
``X-RateLimit-*`` headers; an allowed request gets the ``X-RateLimit-*`` headers of its tightest limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from fastapi import Response
from limits import RateLimitItem, parse
from slowapi import Limiter
from slowapi.util import get_remote_address

from ..core.errors import StratkernelError
from .config import ApiConfig


class RateLimited(StratkernelError):
    """Too many requests for one key. ``retry_after`` is in whole seconds."""

    def __init__(self, scope: str, limit: RateLimitItem, retry_after: int, reset_at: int) -> None:
        self.scope = scope
        self.limit = limit
        self.retry_after = retry_after
        self.reset_at = reset_at
        super().__init__(f"rate limit exceeded for {scope}: {limit}; retry in {retry_after}s")

    def headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(self.retry_after),
            "X-RateLimit-Limit": str(self.limit.amount),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(self.reset_at),
        }


@dataclass(frozen=True, slots=True)
class RateStatus:
    limit: int
    remaining: int
    reset_at: int

    def apply(self, response: Response) -> None:
        response.headers["X-RateLimit-Limit"] = str(self.limit)
        response.headers["X-RateLimit-Remaining"] = str(self.remaining)
        response.headers["X-RateLimit-Reset"] = str(self.reset_at)


class RateLimits:
    """The API's limits, from :class:`ApiConfig`."""

    def __init__(self, config: ApiConfig) -> None:
        self.slowapi = Limiter(
            key_func=get_remote_address,
            storage_uri=config.rate_limit_storage_uri,
            strategy="moving-window",
            headers_enabled=True,
            key_prefix="stratkernel",
        )
        self._strategy = self.slowapi.limiter
        # Remote storage does network I/O; keep it off the event loop. Memory storage is a dict.
        self._offload = not config.rate_limit_storage_uri.startswith("memory://")
        self.login_ip = parse(config.rate_limit_login_ip)
        self.login_user = parse(config.rate_limit_login_user)
        self.refresh = parse(config.rate_limit_refresh)
        self.general = parse(config.rate_limit_general)

    def _hit_sync(self, limit: RateLimitItem, scope: str, key: str) -> RateStatus:
        allowed = self._strategy.hit(limit, scope, key)
        stats = self._strategy.get_window_stats(limit, scope, key)
        reset_at = math.ceil(stats.reset_time)
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(scope, limit, retry_after, reset_at)
        return RateStatus(limit.amount, stats.remaining, reset_at)

    async def hit(self, limit: RateLimitItem, scope: str, key: str) -> RateStatus:
        """Count one request for ``key`` under ``scope``; raise :class:`RateLimited` if over ``limit``."""
        if self._offload:
            return await asyncio.to_thread(self._hit_sync, limit, scope, key)
        return self._hit_sync(limit, scope, key)

    async def hit_login(self, client: str, username: str, response: Response) -> None:
        # Both counters move on every attempt: per address stops one client trying many names, per
        # username stops many clients (a botnet) trying one name.
        by_ip = await self.hit(self.login_ip, "login-ip", client)
        by_user = await self.hit(self.login_user, "login-user", username.strip().lower()[:64])
        min(by_ip, by_user, key=lambda s: s.remaining).apply(response)

    async def hit_refresh(self, user_key: str, response: Response) -> None:
        (await self.hit(self.refresh, "refresh", user_key)).apply(response)

    async def hit_general(self, principal_key: str, response: Response) -> None:
        (await self.hit(self.general, "general", principal_key)).apply(response)

    def reset(self) -> None:
        """Forget all counters (operator action after a false positive; also used by tests)."""
        self._strategy.storage.reset()
