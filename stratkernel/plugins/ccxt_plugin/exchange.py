"""Building ccxt exchanges from stratkernel config, retrying network errors, and mapping ccxt errors.

Shared by the ccxt broker and the ccxt data source. Only *network* errors are retried (timeouts,
5xx, 429/418 rate limiting, dropped connections: ccxt's ``NetworkError`` family); an exchange that
answers "no" (insufficient funds, invalid order, bad credentials) is never asked again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ccxt
import ccxt.async_support as ccxt_async

from stratkernel.core.errors import BrokerConnectionError, ConfigError

try:  # ccxt.pro ships inside ccxt; keep the plugin importable if a trimmed build lacks it
    import ccxt.pro as ccxt_pro
except ImportError:  # pragma: no cover - ccxt 4.x always has pro
    ccxt_pro = None

log = logging.getLogger("stratkernel.plugins.ccxt")

T = TypeVar("T")

ENV_API_KEY = "STRATKERNEL_CCXT_API_KEY"
ENV_SECRET = "STRATKERNEL_CCXT_SECRET"
ENV_PASSWORD = "STRATKERNEL_CCXT_PASSWORD"  # some venues (OKX, KuCoin) need a passphrase too

_KNOWN_KEYS = {
    "exchange",
    "api_key",
    "secret",
    "password",
    "urls",
    "options",
    "sandbox",
    "rate_limit",
    "timeout_ms",
}


def exchange_config(config: dict[str, Any], *, extra_keys: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """Validate the keys shared by the broker and the data source; return them with defaults applied."""
    if not isinstance(config, dict):
        raise ConfigError("ccxt", f"options must be a table/dict, got {type(config).__name__}")
    unknown = set(config) - _KNOWN_KEYS - set(extra_keys)
    if unknown:
        allowed = ", ".join(sorted(_KNOWN_KEYS | set(extra_keys)))
        raise ConfigError(f"ccxt.{sorted(unknown)[0]}", f"unknown option (allowed: {allowed})")
    name = config.get("exchange")
    if not isinstance(name, str) or not name:
        raise ConfigError("ccxt.exchange", 'is required, e.g. "binance"')
    if name not in ccxt.exchanges:
        raise ConfigError("ccxt.exchange", f"{name!r} is not an exchange ccxt {ccxt.__version__} knows")
    for key in ("urls", "options"):
        if key in config and not isinstance(config[key], dict):
            raise ConfigError(f"ccxt.{key}", "must be a table/dict")
    timeout = config.get("timeout_ms", 10_000)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise ConfigError("ccxt.timeout_ms", f"must be a positive integer, got {timeout!r}")
    out = dict(config)
    out["timeout_ms"] = timeout
    out.setdefault("api_key", os.environ.get(ENV_API_KEY, ""))
    out.setdefault("secret", os.environ.get(ENV_SECRET, ""))
    out.setdefault("password", os.environ.get(ENV_PASSWORD, ""))
    return out


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_exchange(cfg: dict[str, Any], *, pro: bool) -> Any:
    """An async ccxt exchange (ccxt.pro when ``pro`` and the venue has websockets) from a validated cfg.

    ccxt's own rate limiter is on unless ``rate_limit: false`` (tests against the local emulator).
    ``urls`` is deep-merged into ``exchange.urls['api']``: that is how the emulator (or a proxy) is
    reached; ccxt's ``proxyUrl`` option does not work for this in ccxt 4.5.
    """
    name = cfg["exchange"]
    module: Any = ccxt_async
    if pro and ccxt_pro is not None and name in ccxt_pro.exchanges:
        module = ccxt_pro
    params: dict[str, Any] = {
        "enableRateLimit": bool(cfg.get("rate_limit", True)),
        "timeout": cfg["timeout_ms"],
        "options": dict(cfg.get("options") or {}),
    }
    if cfg.get("api_key"):
        params["apiKey"] = cfg["api_key"]
    if cfg.get("secret"):
        params["secret"] = cfg["secret"]
    if cfg.get("password"):
        params["password"] = cfg["password"]
    exchange = getattr(module, name)(params)
    if cfg.get("sandbox"):
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported as exc:
            raise ConfigError("ccxt.sandbox", f"{name} has no testnet in ccxt: {exc}") from None
    if cfg.get("urls"):
        exchange.urls["api"] = _deep_merge(exchange.urls["api"], cfg["urls"])
    return exchange


class Backoff:
    """Capped exponential backoff with jitter.

    The n-th delay is drawn from ``[d/2, d]`` with ``d = min(cap, base * 2**n)``: it grows until the cap,
    never drops to zero (so a flapping connection cannot turn into a tight reconnect loop) and the
    jitter keeps many clients from reconnecting in lockstep.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ConfigError("backoff", f"need 0 < base <= cap, got base={base}, cap={cap}")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2.0 ** min(self.attempt, 60)))
        self.attempt += 1
        return ceiling / 2.0 + self._rng.uniform(0.0, ceiling / 2.0)

    def reset(self) -> None:
        self.attempt = 0


def retry_after_seconds(exchange: Any) -> float:
    """The ``Retry-After`` header of the exchange's last response, in seconds (0 if absent)."""
    headers = getattr(exchange, "last_response_headers", None) or {}
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return 0.0
    return 0.0


async def with_retries(
    exchange: Any,
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    backoff: Backoff,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Run ``call``; on a ccxt NetworkError wait (backoff, or Retry-After when rate limited) and retry.

    Exchange errors propagate at once. When retries are exhausted: :class:`BrokerConnectionError`.
    """
    backoff.reset()
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return await call()
        except ccxt.NetworkError as exc:
            last = exc
            if attempt == retries:
                break
            delay = backoff.next_delay()
            if isinstance(exc, ccxt.DDoSProtection):
                delay = max(delay, retry_after_seconds(exchange))
            log.warning(
                "%s: %s: %s; retry %d/%d in %.2fs",
                what,
                type(exc).__name__,
                _short(exc),
                attempt + 1,
                retries,
                delay,
            )
            await sleep(delay)
    raise BrokerConnectionError(
        f"{what} failed after {retries + 1} attempts: {type(last).__name__}: {_short(last)}"
    )


def reject_code(exc: BaseException) -> str:
    """A stable reason code for an exchange's refusal (used in OrderRejectedError and Order.reason)."""
    if isinstance(exc, ccxt.InsufficientFunds):
        return "insufficient_funds"
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return "auth"
    if isinstance(exc, ccxt.BadSymbol):
        return "unknown_symbol"
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.ArgumentsRequired):
        return "invalid_order"
    if isinstance(exc, ccxt.OrderNotFound):
        return "order_not_found"
    return "exchange_error"


def _short(exc: BaseException | None, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."
