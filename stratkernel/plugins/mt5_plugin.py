"""MetaTrader 5: a broker and a data source over the official ``MetaTrader5`` package.

The package exists only for Windows and talks to a running MetaTrader 5 terminal. It is imported in
exactly one place, :func:`load_mt5_module`, and only when a broker or data source is built without a
``module`` option; tests and Linux users pass :class:`stratkernel.testing.mt5_double.MetaTrader5Double`
instead. Loading this plugin never imports it, so ``stratkernel plugins`` works everywhere.

Broker config (the ``[broker.options]`` table)::

    login = 5001234                 # account number (int)
    server = "Broker-Demo"          # trade server name
    path = 'C:\\Program Files\\MetaTrader 5\\terminal64.exe'   # optional
    magic_base = 20240000           # magic = magic_base + a stable number per strategy
    deviation = 10                  # max slippage in points for instant-execution symbols
    symbols = ["EURUSD"]            # selected into Market Watch at connect (more on demand)
    # password comes from the environment: STRATKERNEL_MT5_PASSWORD

What the broker does with an approved order: rounds the volume to ``volume_step`` (floating noise
only) and refuses what is outside ``volume_min``/``volume_max`` or off the step; checks stop-loss and
take-profit distances against ``trade_stops_level * point``; picks a filling mode the symbol supports;
calls ``order_check`` and only then ``order_send``; retries requotes with a fresh price; maps every
retcode to a clear outcome (fills through ``BrokerEvents.on_fill`` with the deal ticket as fill id,
refusals through ``on_order_update`` with status REJECTED and a reason such as
``autotrading_disabled: ... (retcode 10027)``). Orders carry the kernel order id in their comment
(MT5 limits comments to 31 characters, see :func:`comment_for`) and ``magic = magic_base + n`` where
``n`` is stable per strategy (:func:`strategy_number`). Pending-order fills, SL/TP closes, expiries and
cancellations made at the terminal are picked up by :meth:`MT5Broker.poll` (run every
``poll_interval`` seconds after ``connect``). When the terminal goes away (IPC errors), calls
re-initialize it with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import os
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from stratkernel.core.broker import BrokerEvents, Preflight, SymbolSpec
from stratkernel.core.data import BarSeries
from stratkernel.core.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigError,
    ValidationError,
)
from stratkernel.core.hookspecs import hookimpl
from stratkernel.core.model import (
    Account,
    Bar,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
)

log = logging.getLogger("stratkernel.mt5")

T = TypeVar("T")

PASSWORD_ENV = "STRATKERNEL_MT5_PASSWORD"
MAX_COMMENT = 31
COMMENT_PREFIX = "sk:"  # the kernel order id verbatim
HASHED_PREFIX = "sk#"  # a digest of a kernel order id too long (or not plain ASCII) for a comment
STRATEGY_SLOTS = 100_000
IPC_ERRORS = frozenset(range(-10005, -9999))  # RES_E_INTERNAL_FAIL*: the terminal is gone
FAR_FUTURE_S = 4_102_444_800  # 2100-01-01: "until now" in history queries whatever the server clock says

# SYMBOL_FILLING_* are MQL5 flags of SymbolInfo.filling_mode; the Python package does not define them.
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2

# retcode -> (stable reason code, explanation). 10008/10009/10010 are successes, handled separately.
RETCODES: dict[int, tuple[str, str]] = {
    10004: ("requote", "the price changed (requote)"),
    10006: ("rejected", "the trade server rejected the request"),
    10007: ("cancelled", "the request was cancelled by the trader"),
    10011: ("server_error", "the trade server failed to process the request"),
    10012: ("timeout", "the request timed out"),
    10013: ("invalid_request", "the trade server considers the request invalid"),
    10014: ("invalid_volume", "invalid volume"),
    10015: ("invalid_price", "invalid price"),
    10016: ("invalid_stops", "invalid stop-loss or take-profit"),
    10017: ("trading_disabled", "trading is disabled for this symbol or account"),
    10018: ("market_closed", "the market is closed"),
    10019: ("insufficient_funds", "not enough money (free margin) for this order"),
    10020: ("price_changed", "the price changed"),
    10021: ("no_prices", "no quotes to process the request"),
    10022: ("invalid_expiration", "invalid order expiration"),
    10023: ("order_changed", "the order state changed"),
    10024: ("too_many_requests", "too many requests"),
    10025: ("no_changes", "the request changes nothing"),
    10026: ("autotrading_disabled_by_server", "the server does not allow automated trading for this account"),
    10027: ("autotrading_disabled", "AutoTrading is disabled in the MetaTrader 5 terminal (press the AutoTrading button)"),
    10028: ("locked", "the request is locked for processing"),
    10029: ("frozen", "the order or position is frozen (too close to the market)"),
    10030: ("invalid_filling", "the filling mode is not supported for this symbol"),
    10031: ("no_connection", "the terminal has no connection to the trade server"),
    10032: ("only_real", "this operation is allowed only for live accounts"),
    10033: ("order_limit", "the number of pending orders reached the limit"),
    10034: ("volume_limit", "the volume of orders and positions for this symbol reached the limit"),
    10035: ("invalid_order", "incorrect or prohibited order type"),
    10036: ("position_closed", "the position is already closed"),
    10038: ("invalid_close_volume", "the close volume exceeds the position volume"),
    10039: ("close_order_exists", "a close order already exists for this position"),
    10040: ("position_limit", "the number of open positions reached the limit"),
    10041: ("reject_cancel", "the pending order activation was rejected and the order cancelled"),
    10042: ("long_only", "only long positions are allowed for this symbol"),
    10043: ("short_only", "only short positions are allowed for this symbol"),
    10044: ("close_only", "only closing positions is allowed for this symbol"),
    10045: ("fifo_close", "positions must be closed in FIFO order"),
}  # fmt: skip
RETRY_RETCODES = frozenset(
    {10004, 10020, 10021}
)  # requote, price changed, no prices: retry with a fresh price
DONE, PLACED, DONE_PARTIAL = 10009, 10008, 10010


def load_mt5_module() -> Any:
    """The one place that imports the official ``MetaTrader5`` package."""
    try:
        import MetaTrader5  # Windows-only, optional: the `mt5` extra
    except ImportError as exc:
        raise ConfigError(
            "module",
            "the MetaTrader5 package is not installed. It exists only for Windows: run "
            "`pip install stratkernel[mt5]` on Windows next to a MetaTrader 5 terminal, or pass "
            f"module=MetaTrader5Double() for tests ({exc})",
        ) from None
    return MetaTrader5


# ------------------------------------------------------------------------------------------------
# naming: comments and magic numbers
# ------------------------------------------------------------------------------------------------
def comment_for(order_id: str) -> str:
    """The MT5 comment for a kernel order id (at most 31 chars).

    Ids of up to 28 printable ASCII characters are carried verbatim (``sk:<id>``), so they survive a
    restart; longer ids become ``sk#<digest>`` and are resolved through the ids this broker sent.
    """
    if len(order_id) <= MAX_COMMENT - len(COMMENT_PREFIX) and order_id.isascii() and order_id.isprintable():
        return COMMENT_PREFIX + order_id
    digest = hashlib.sha256(order_id.encode()).hexdigest()
    return HASHED_PREFIX + digest[: MAX_COMMENT - len(HASHED_PREFIX)]


def strategy_number(strategy: str) -> int:
    """A stable number in [1, 100000) per strategy name (0 means: no strategy)."""
    if not strategy:
        return 0
    return zlib.crc32(strategy.encode()) % (STRATEGY_SLOTS - 1) + 1


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------
@dataclass
class MT5Config:
    module: Any = None
    login: int | None = None
    password: str | None = None
    server: str | None = None
    path: str | None = None
    timeout_ms: int = 60_000
    magic_base: int = 20_240_000
    deviation: int = 10
    symbols: list[str] = field(default_factory=list)
    symbol: str | None = None  # one more symbol (the kernel passes its primary symbol to data sources)
    requote_retries: int = 3
    reconnect_attempts: int = 5
    reconnect_base_delay: float = 0.5
    reconnect_max_delay: float = 10.0
    poll_interval: float = 1.0
    timeframe: str = "M1"
    server_time_offset_s: int = 0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MT5Config:
        if not isinstance(options, dict):
            raise ConfigError("mt5", f"options must be a table, got {type(options).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown MT5 option (known: {', '.join(sorted(known))})")
        cfg = cls(**options)
        if cfg.password is None:
            cfg.password = os.environ.get(PASSWORD_ENV) or None
        cfg._validate()
        return cfg

    def _validate(self) -> None:
        def integer(name: str, low: int, high: int | None = None, *, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < low or (high is not None and v > high):
                bound = f"between {low} and {high}" if high is not None else f">= {low}"
                raise ConfigError(name, f"must be an integer {bound}, got {v!r}")

        def number(name: str, low: float) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < low:
                raise ConfigError(name, f"must be a finite number >= {low}, got {v!r}")

        integer("login", 1, optional=True)
        integer("timeout_ms", 0)
        integer("magic_base", 0, 2**63 - STRATEGY_SLOTS)
        integer("deviation", 0, 100_000)
        integer("requote_retries", 0, 100)
        integer("reconnect_attempts", 1, 1000)
        integer("server_time_offset_s", -86_400, 86_400)
        for name in ("reconnect_base_delay", "reconnect_max_delay", "poll_interval"):
            number(name, 0.0)
        for name in ("password", "server", "path"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ConfigError(name, f"must be a string, got {type(v).__name__}")
        if not isinstance(self.symbols, list) or not all(isinstance(s, str) and s for s in self.symbols):
            raise ConfigError("symbols", f"must be a list of symbol names, got {self.symbols!r}")
        if self.symbol is not None:
            if not isinstance(self.symbol, str) or not self.symbol:
                raise ConfigError("symbol", f"must be a symbol name, got {self.symbol!r}")
            if self.symbol not in self.symbols:
                self.symbols = [*self.symbols, self.symbol]
        if self.timeframe not in TIMEFRAMES:
            raise ConfigError("timeframe", f"must be one of {', '.join(TIMEFRAMES)}, got {self.timeframe!r}")
        if self.login is not None and not self.password:
            raise ConfigError("password", f"login {self.login} needs a password: set {PASSWORD_ENV}")


# MetaTrader5 TIMEFRAME_* constant names by short name (values are read from the module).
TIMEFRAMES = {
    name: f"TIMEFRAME_{name}"
    for name in ("M1", "M2", "M3", "M4", "M5", "M6", "M10", "M12", "M15", "M20", "M30",
                 "H1", "H2", "H3", "H4", "H6", "H8", "H12", "D1", "W1", "MN1")
}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# the terminal session: one per module object, shared by broker and data source
# ------------------------------------------------------------------------------------------------
class _Session:
    """Serializes every call to one MetaTrader5 module (it is process-global and not thread-safe) on
    one worker thread, and owns initialize / login / reconnect."""

    _registry: dict[int, _Session] = {}
    _registry_lock = threading.Lock()

    def __init__(self, mt5: Any) -> None:
        self.mt5 = mt5
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt5")
        self.users = 0
        self.initialized = False
        self.cfg: MT5Config | None = None
        self.reconnects = 0

    @classmethod
    def acquire(cls, mt5: Any) -> _Session:
        with cls._registry_lock:
            session = cls._registry.get(id(mt5))
            if session is None or session.mt5 is not mt5:
                session = cls._registry[id(mt5)] = _Session(mt5)
            session.users += 1
            return session

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            last = self.users <= 0
            if last:
                self._registry.pop(id(self.mt5), None)
        if last:
            if self.initialized:
                with contextlib.suppress(Exception):
                    self.executor.submit(self.mt5.shutdown).result()
                self.initialized = False
            self.executor.shutdown(wait=True)

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    # -- the following run on the session thread ------------------------------------------------
    def last_error(self) -> tuple[int, str]:
        err = self.mt5.last_error()
        return (int(err[0]), str(err[1])) if err else (0, "unknown error")

    def ensure(self, cfg: MT5Config) -> None:
        """initialize (+ login) once. One terminal holds one account: a second user naming another
        login is refused; one naming a login when the first attached without one logs in now."""
        current = self.cfg
        if current is not None and cfg.login is not None and current.login not in (None, cfg.login):
            raise ConfigError(
                "login",
                f"this terminal is already used with login {current.login}; one MetaTrader 5 terminal "
                f"trades one account (run a second terminal for login {cfg.login})",
            )
        upgrade = current is not None and current.login is None and cfg.login is not None
        if current is None or upgrade:
            self.cfg = cfg
        if not self.initialized:
            self._initialize(self.cfg or cfg)
        elif upgrade and not self.mt5.login(
            cfg.login, password=cfg.password or "", server=cfg.server or None
        ):
            code, text = self.last_error()
            raise BrokerError(f"MetaTrader 5 refused login {cfg.login}: {text} ({code})")

    def _initialize(self, cfg: MT5Config) -> None:
        kwargs: dict[str, Any] = {"timeout": cfg.timeout_ms}
        if cfg.login is not None:
            kwargs.update(login=cfg.login, password=cfg.password or "")
            if cfg.server:
                kwargs["server"] = cfg.server
        args = (cfg.path,) if cfg.path else ()
        if self.mt5.initialize(*args, **kwargs):
            self.initialized = True
            return
        code, text = self.last_error()
        if code == -6:
            raise BrokerError(
                f"MetaTrader 5 refused login {cfg.login} on server {cfg.server or '(terminal default)'}: "
                f"{text} ({code}); check login, server and {PASSWORD_ENV}"
            )
        raise BrokerConnectionError(f"MetaTrader 5 initialize failed: {text} ({code})")

    def reconnect(self) -> None:
        """Re-initialize the terminal with capped exponential backoff; raise when it stays away."""
        cfg = self.cfg or MT5Config()
        delay = cfg.reconnect_base_delay
        last: Exception | None = None
        for attempt in range(1, cfg.reconnect_attempts + 1):
            with contextlib.suppress(Exception):
                self.mt5.shutdown()
            self.initialized = False
            try:
                self._initialize(cfg)
            except BrokerConnectionError as exc:
                last = exc
                log.warning("MT5 reconnect attempt %d/%d failed: %s", attempt, cfg.reconnect_attempts, exc)
                if attempt < cfg.reconnect_attempts and delay > 0:
                    time.sleep(delay)
                delay = min(max(delay * 2, cfg.reconnect_base_delay), cfg.reconnect_max_delay)
                continue
            self.reconnects += 1
            log.info("MT5 terminal reconnected after %d attempt(s)", attempt)
            return
        raise BrokerConnectionError(
            f"MetaTrader 5 terminal unreachable after {cfg.reconnect_attempts} reconnect attempts: {last}"
        )

    def call(self, name: str, *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        """Call ``mt5.<name>``; on an IPC failure reconnect and (if ``retry``) call once more.

        Returns the result, which may still be None/False for a non-IPC failure (see last_error).
        With ``retry=False`` an IPC failure reconnects and then raises BrokerConnectionError, so the
        caller can find out what happened before repeating a non-idempotent call.
        """
        if not self.initialized and self.cfg is not None:
            self.reconnect()
        fn = getattr(self.mt5, name)
        result = fn(*args, **kwargs)
        if result is None or result is False:
            code, text = self.last_error()
            if code in IPC_ERRORS:
                log.warning("MT5 %s failed with %s (%d): reconnecting", name, text, code)
                self.initialized = False
                self.reconnect()
                if not retry:
                    raise BrokerConnectionError(f"MT5 {name} lost the terminal ({text}, {code})")
                result = fn(*args, **kwargs)
                if result is None or result is False:
                    code, text = self.last_error()
                    if code in IPC_ERRORS:
                        raise BrokerConnectionError(f"MT5 {name} failed after reconnect: {text} ({code})")
        return result

    def need(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Like call, but a None result is an error naming the call and last_error()."""
        result = self.call(name, *args, **kwargs)
        if result is None:
            code, text = self.last_error()
            raise BrokerError(f"MT5 {name}{args!r} failed: {text} ({code})")
        return result


# ------------------------------------------------------------------------------------------------
# the broker
# ------------------------------------------------------------------------------------------------
@dataclass
class _Working:
    """A pending order at the terminal that the kernel is waiting on."""

    order: Order
    ticket: int


Emission = tuple[str, Any]  # ("fill", Fill) | ("order", Order)


class MT5Broker:
    """The MetaTrader 5 broker. Built by the kernel through the ``mt5`` broker registration."""

    name = "mt5"

    def __init__(self, cfg: MT5Config, events: BrokerEvents) -> None:
        self.cfg = cfg
        self.events = events
        self.mt5 = cfg.module if cfg.module is not None else load_mt5_module()
        self._session: _Session | None = None
        self._specs: dict[str, SymbolSpec] = {}
        self._infos: dict[str, Any] = {}
        self._sent: set[str] = set()  # kernel order ids handed to order_send (idempotency)
        self._by_comment: dict[str, str] = {}  # comment -> kernel order id
        self._working: dict[int, _Working] = {}  # pending order ticket -> kernel order
        self._orders: dict[str, Order] = {}  # kernel order id -> order, for fills that arrive later
        self._entry_of_position: dict[int, str] = {}  # position identifier -> kernel order id
        self._strategies: dict[int, str] = {}  # magic -> strategy name
        self._seen_deals: set[int] = set()
        self._scan_from_s = 0
        self._poll_task: asyncio.Task[None] | None = None
        self._hedging = False

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def session(self) -> _Session:
        if self._session is None:
            raise BrokerConnectionError("MT5 broker is not connected: call connect() first")
        return self._session

    async def connect(self) -> None:
        if self._session is None:
            self._session = _Session.acquire(self.mt5)
        await self.session.run(self._connect_sync)
        if self.cfg.poll_interval > 0 and self._poll_task is None:
            self._poll_task = asyncio.get_running_loop().create_task(self._poll_loop(), name="mt5-poll")

    def _connect_sync(self) -> None:
        s = self.session
        s.ensure(self.cfg)
        account = s.need("account_info")
        terminal = s.need("terminal_info")
        self._hedging = account.margin_mode == self.mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
        log.info(
            "MT5 connected: login %s on %s (%s account, %s), terminal build %s, AutoTrading %s",
            account.login, account.server, "hedging" if self._hedging else "netting", account.currency,
            terminal.build, "on" if terminal.trade_allowed else "OFF",
        )  # fmt: skip
        for symbol in self.cfg.symbols:
            self._load_symbol(symbol)
        # deals that happened before we connected are history, not news
        deals = s.call("history_deals_get", 0, FAR_FUTURE_S) or ()
        self._seen_deals.update(int(d.ticket) for d in deals)
        if deals:
            self._scan_from_s = max(int(d.time) for d in deals)

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        if self._session is not None:
            session, self._session = self._session, None
            await asyncio.get_running_loop().run_in_executor(None, session.release)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.poll_interval)
            try:
                await self.poll()
            except BrokerError as exc:  # the terminal is away; the next round tries again
                log.warning("MT5 poll failed: %s", exc)

    # -- symbols ------------------------------------------------------------------------------------
    def _load_symbol(self, symbol: str) -> Any:
        s = self.session
        if not s.call("symbol_select", symbol, True):
            code, text = s.last_error()
            raise ValidationError(
                "symbol", symbol, f"not offered by this MetaTrader 5 terminal: {text} ({code})"
            )
        info = s.need("symbol_info", symbol)
        self._infos[symbol] = info
        margin_rate = 1.0
        tick = s.call("symbol_info_tick", symbol)
        price = float(tick.ask) if tick is not None and tick.ask > 0 else 0.0
        if price > 0 and info.trade_contract_size > 0:
            margin = s.call("order_calc_margin", self.mt5.ORDER_TYPE_BUY, symbol, 1.0, price)
            if margin is not None and margin > 0:
                margin_rate = float(margin) / (price * float(info.trade_contract_size))
        self._specs[symbol] = SymbolSpec(
            symbol=symbol,
            qty_step=float(info.volume_step),
            min_qty=float(info.volume_min),
            max_qty=float(info.volume_max) if info.volume_max > 0 else math.inf,
            price_tick=float(info.trade_tick_size or info.point),
            min_stop_distance=float(info.trade_stops_level) * float(info.point),
            contract_size=float(info.trade_contract_size),
            margin_rate=margin_rate,
        )
        return info

    def _fresh_info(self, symbol: str) -> Any:
        """Symbol properties as the terminal has them now (a broker may change stops level or filling
        modes during a session); the first use of a symbol also selects it and builds its spec."""
        if symbol not in self._infos:
            return self._load_symbol(symbol)
        info = self.session.call("symbol_info", symbol)
        if info is None:
            return self._load_symbol(symbol)
        self._infos[symbol] = info
        return info

    def symbol_spec(self, symbol: str) -> SymbolSpec | None:
        """The symbol's constraints (loaded at connect, or now from the terminal). None if unknown."""
        spec = self._specs.get(symbol)
        if spec is None and self._session is not None:
            try:
                self._session.executor.submit(self._load_symbol, symbol).result()
            except ValidationError:
                return None
            spec = self._specs.get(symbol)
        return spec

    # -- account state ------------------------------------------------------------------------------
    async def preflight(self) -> Preflight:
        """Trading is allowed when the terminal's AutoTrading switch is on, Python API trading is not
        disabled, the terminal is connected to the trade server and the account may trade."""
        try:
            terminal, account = await self.session.run(
                lambda: (self.session.call("terminal_info"), self.session.call("account_info"))
            )
        except BrokerError as exc:
            return Preflight(False, f"MetaTrader 5 terminal unreachable: {exc}")
        if terminal is None or account is None:
            code, text = await self.session.run(self.session.last_error)
            return Preflight(False, f"MetaTrader 5 terminal unreachable: {text} ({code})")
        if not terminal.trade_allowed:
            return Preflight(
                False, "AutoTrading is disabled in the MetaTrader 5 terminal (press the AutoTrading button)"
            )
        if terminal.tradeapi_disabled:
            return Preflight(
                False, "trading through the Python API is disabled in the terminal's Expert Advisors options"
            )
        if not terminal.connected:
            return Preflight(False, "the MetaTrader 5 terminal is not connected to the trade server")
        if not account.trade_allowed:
            return Preflight(
                False, f"account {account.login} may not trade (investor password or blocked account)"
            )
        if not account.trade_expert:
            return Preflight(
                False, f"the server does not allow automated trading for account {account.login}"
            )
        return Preflight(True, "")

    async def account(self) -> Account:
        info = await self.session.run(lambda: self.session.need("account_info"))
        return Account(
            cash=float(info.balance),
            equity=float(info.equity),
            margin_used=float(info.margin),
            free_margin=float(info.margin_free),
            currency=str(info.currency),
            leverage=float(info.leverage),
        )

    def _strategy_of(self, magic: int) -> str:
        if magic == 0:
            return "manual"
        name = self._strategies.get(magic)
        if name is not None:
            return name
        if self.cfg.magic_base <= magic < self.cfg.magic_base + STRATEGY_SLOTS:
            return f"magic:{magic}"
        return f"other:{magic}"

    async def positions(self) -> list[Position]:
        """Every open position (manual ones, magic 0, included), netted per symbol and magic."""
        raw = await self.session.run(lambda: self.session.need("positions_get"))
        groups: dict[tuple[str, int], list[Any]] = {}
        for p in raw:
            groups.setdefault((p.symbol, int(p.magic)), []).append(p)
        out = []
        for (symbol, magic), items in sorted(groups.items()):
            signed = [
                (float(p.volume) if p.type == self.mt5.POSITION_TYPE_BUY else -float(p.volume), p)
                for p in items
            ]
            qty = round(sum(q for q, _ in signed), 8)
            avg = sum(q * float(p.price_open) for q, p in signed) / qty if abs(qty) > 1e-12 else 0.0
            out.append(Position(symbol=symbol, qty=qty, avg_price=avg, strategy=self._strategy_of(magic)))
        return out

    async def open_orders(self) -> list[Order]:
        raw = await self.session.run(lambda: self.session.need("orders_get"))
        return [self._order_from_mt5(o) for o in raw]

    def _kernel_id(self, comment: str, ticket: int) -> str:
        if comment.startswith(COMMENT_PREFIX):
            return comment[len(COMMENT_PREFIX) :]
        return self._by_comment.get(comment, f"mt5-{ticket}")

    def _order_from_mt5(self, o: Any) -> Order:
        mt5 = self.mt5
        buy = o.type in (mt5.ORDER_TYPE_BUY_LIMIT, mt5.ORDER_TYPE_BUY_STOP, mt5.ORDER_TYPE_BUY_STOP_LIMIT)
        limit = o.type in (mt5.ORDER_TYPE_BUY_LIMIT, mt5.ORDER_TYPE_SELL_LIMIT)
        oid = self._kernel_id(str(o.comment), int(o.ticket))
        known = self._orders.get(oid)
        request = known.request if known is not None else OrderRequest(
            symbol=str(o.symbol),
            side=Side.BUY if buy else Side.SELL,
            qty=float(o.volume_initial),
            type=OrderType.LIMIT if limit else OrderType.STOP,
            limit_price=float(o.price_open) if limit else None,
            stop_price=None if limit else float(o.price_open),
            stop_loss=float(o.sl) or None,
            take_profit=float(o.tp) or None,
            strategy=self._strategy_of(int(o.magic)),
            source="mt5",
        )  # fmt: skip
        filled = float(o.volume_initial) - float(o.volume_current)
        return Order(
            id=oid,
            request=request,
            status=OrderStatus.PARTIALLY_FILLED if filled > 1e-12 else OrderStatus.ACCEPTED,
            filled_qty=filled,
            created_ts=int(o.time_setup_msc) - self.cfg.server_time_offset_s * 1000,
            updated_ts=int(o.time_setup_msc) - self.cfg.server_time_offset_s * 1000,
            broker_order_id=str(o.ticket),
        )

    # -- orders -------------------------------------------------------------------------------------
    def _emit(self, emissions: list[Emission]) -> None:
        for kind, item in emissions:
            if kind == "fill":
                self.events.on_fill(item)
            else:
                self.events.on_order_update(item)

    async def submit(self, order: Order) -> None:
        """Send an approved order (see the module docstring for every step). Never raises for a
        refusal: the outcome arrives through BrokerEvents. Raises BrokerConnectionError when the
        terminal stays unreachable and nothing was sent."""
        emissions = await self.session.run(lambda: self._submit_sync(order))
        self._emit(emissions)

    def _reject(self, order: Order, code: str, message: str) -> list[Emission]:
        order.status = OrderStatus.REJECTED
        order.reason = f"{code}: {message}"
        log.info("MT5 order %s rejected: %s", order.id, order.reason)
        return [("order", order)]

    def _reject_retcode(self, order: Order, retcode: int, server_comment: str) -> list[Emission]:
        code, message = RETCODES.get(retcode, ("rejected", "the trade server refused the request"))
        return self._reject(order, code, f"{message} (retcode {retcode}: {server_comment})")

    def _submit_sync(self, order: Order) -> list[Emission]:
        if order.id in self._sent:
            log.warning("MT5 order %s was already sent; not sending it twice", order.id)
            return []
        mt5, req = self.mt5, order.request
        comment = comment_for(order.id)
        self._by_comment[comment] = order.id
        self._orders[order.id] = order
        number = strategy_number(req.strategy)
        magic = self.cfg.magic_base + number
        if req.strategy:
            self._strategies[magic] = req.strategy
        # crash safety: an order with this comment may already be at the terminal (sent before a restart)
        existing = self._find_sent(comment, req.symbol)
        if existing:
            self._sent.add(order.id)
            return existing
        try:
            info = self._fresh_info(req.symbol)
        except ValidationError as exc:
            return self._reject(order, "unknown_symbol", str(exc))
        volume, problem = _normalize_volume(req.qty, info)
        if problem:
            return self._reject(order, "invalid_volume", problem)

        if req.reduce_only and self._hedging:
            return self._close_hedged(order, info, volume, magic, comment)

        base: dict[str, Any] = {
            "symbol": req.symbol,
            "volume": volume,
            "magic": magic,
            "comment": comment,
            "deviation": self.cfg.deviation,
            "type_time": mt5.ORDER_TIME_GTC,
        }
        buy = req.side is Side.BUY
        if req.type is OrderType.MARKET:
            base.update(action=mt5.TRADE_ACTION_DEAL, type=mt5.ORDER_TYPE_BUY if buy else mt5.ORDER_TYPE_SELL)
            filling = _market_filling(info, mt5)
            if filling is None:
                return self._reject(
                    order, "invalid_filling",
                    f"{req.symbol} allows no filling mode usable for market orders "
                    f"(filling_mode flags {info.filling_mode}, execution mode {info.trade_exemode})",
                )  # fmt: skip
            base["type_filling"] = filling
        else:
            price = req.limit_price if req.type is OrderType.LIMIT else req.stop_price
            if price is None:
                return self._reject(order, "invalid_price", f"a {req.type} order needs a price")
            if req.type is OrderType.LIMIT:
                otype = mt5.ORDER_TYPE_BUY_LIMIT if buy else mt5.ORDER_TYPE_SELL_LIMIT
            else:
                otype = mt5.ORDER_TYPE_BUY_STOP if buy else mt5.ORDER_TYPE_SELL_STOP
            base.update(action=mt5.TRADE_ACTION_PENDING, type=otype, price=_round_price(price, info),
                        type_filling=mt5.ORDER_FILLING_RETURN)  # fmt: skip
        if not req.reduce_only:
            sl = _round_price(req.stop_loss, info) if req.stop_loss else 0.0
            tp = _round_price(req.take_profit, info) if req.take_profit else 0.0
            problem = self._check_stops(order, info, base, sl, tp)
            if problem:
                return self._reject(order, "invalid_stops", problem)
            base.update(sl=sl, tp=tp)
        return self._check_and_send(order, base)

    def _check_stops(self, order: Order, info: Any, request: dict[str, Any], sl: float, tp: float) -> str:
        """SL/TP on the right side of the price and at least trade_stops_level points away from it."""
        if not sl and not tp:
            return ""
        buy = order.request.side is Side.BUY
        if request["action"] == self.mt5.TRADE_ACTION_DEAL:
            tick = self.session.need("symbol_info_tick", order.request.symbol)
            ref, ref_name = (float(tick.bid), "bid") if buy else (float(tick.ask), "ask")
        else:
            ref, ref_name = float(request["price"]), "order price"
        point = float(info.point)
        gap = float(info.trade_stops_level) * point
        for label, level, below in (("stop_loss", sl, buy), ("take_profit", tp, not buy)):
            if not level:
                continue
            distance = (ref - level) if below else (level - ref)
            side = "below" if below else "above"
            if distance <= 0:
                return f"{label} {level} must be {side} the {ref_name} {ref} for a {order.request.side} order"
            if distance < gap - point * 1e-6:
                return (
                    f"{label} {level} is {distance / point:.1f} points from the {ref_name} {ref}; "
                    f"{order.request.symbol} requires at least {info.trade_stops_level} points (trade_stops_level)"
                )
        return ""

    def _check_and_send(self, order: Order, request: dict[str, Any]) -> list[Emission]:
        s, mt5 = self.session, self.mt5
        for attempt in range(self.cfg.requote_retries + 1):
            if request["action"] == mt5.TRADE_ACTION_DEAL:
                tick = s.need("symbol_info_tick", request["symbol"])
                request["price"] = float(tick.ask if request["type"] == mt5.ORDER_TYPE_BUY else tick.bid)
            check = s.call("order_check", request)
            if check is None:
                code, text = s.last_error()
                return self._reject(
                    order, "invalid_request", f"order_check refused the request: {text} ({code})"
                )
            if check.retcode not in (0, DONE):
                if check.retcode in RETRY_RETCODES and attempt < self.cfg.requote_retries:
                    continue
                return self._reject_retcode(order, int(check.retcode), str(check.comment))
            try:
                result = s.call("order_send", request, retry=False)
            except BrokerConnectionError:
                # the terminal died during order_send: it may or may not have sent the order
                found = self._find_sent(request["comment"], request["symbol"])
                if found:
                    self._sent.add(order.id)
                    return found
                result = s.call("order_send", request, retry=False)
            if result is None:
                code, text = s.last_error()
                return self._reject(
                    order, "invalid_request", f"order_send refused the request: {text} ({code})"
                )
            self._sent.add(order.id)
            retcode = int(result.retcode)
            if retcode in RETRY_RETCODES and attempt < self.cfg.requote_retries:
                self._sent.discard(order.id)
                log.info("MT5 %s for order %s (attempt %d): retrying", result.comment, order.id, attempt + 1)
                continue
            if retcode in (DONE, PLACED, DONE_PARTIAL):
                return self._accepted(order, request, result)
            self._sent.discard(order.id)  # refused: nothing exists at the venue, a resend is a new order
            if retcode in RETRY_RETCODES:
                reason, message = RETCODES[retcode]
                return self._reject(order, reason, f"{message}; gave up after {attempt + 1} attempts "
                                                 f"(retcode {retcode}: {result.comment})")  # fmt: skip
            return self._reject_retcode(order, retcode, str(result.comment))
        raise AssertionError("unreachable: the retry loop always returns")

    def _accepted(self, order: Order, request: dict[str, Any], result: Any) -> list[Emission]:
        mt5 = self.mt5
        order.broker_order_id = str(result.order)
        if request["action"] == mt5.TRADE_ACTION_PENDING:
            order.status = OrderStatus.ACCEPTED
            self._working[int(result.order)] = _Working(order, int(result.order))
            return [("order", order)]
        emissions: list[Emission] = []
        deal = None
        if result.deal:
            deals = self.session.call("history_deals_get", ticket=int(result.deal)) or ()
            deal = deals[0] if deals else None
        if deal is not None:
            emissions.extend(self._fills_from_deals([deal], order))
        elif result.deal:  # the deal is not in the history cache yet: use what order_send reported
            self._seen_deals.add(int(result.deal))
            fill = Fill(id=f"mt5-deal-{int(result.deal)}", order_id=order.id, symbol=order.symbol,
                        side=order.side, qty=float(result.volume), price=float(result.price),
                        ts=self._fill_ts(None), strategy=order.request.strategy, role=order.role)  # fmt: skip
            emissions.append(("fill", fill))
            self._apply_fill(order, fill)
            emissions.append(("order", order))
        else:
            order.status = OrderStatus.ACCEPTED
            self._working[int(result.order)] = _Working(order, int(result.order))
            emissions.append(("order", order))
        if order.status is OrderStatus.PARTIALLY_FILLED and "position" not in request:
            # a market order is filled now or never: what the server did not fill is cancelled (IOC)
            order.status = OrderStatus.CANCELLED
            order.reason = (
                f"partially filled: {order.filled_qty} of {order.request.qty}; the rest was cancelled"
            )
            emissions.append(("order", order))
        return emissions

    def _fill_ts(self, deal: Any) -> int:
        if deal is not None:
            return int(deal.time_msc) - self.cfg.server_time_offset_s * 1000
        return int(time.time() * 1000)

    @staticmethod
    def _apply_fill(order: Order, fill: Fill) -> None:
        total = order.filled_qty + fill.qty
        order.avg_fill_price = (order.avg_fill_price * order.filled_qty + fill.price * fill.qty) / total
        order.filled_qty = round(total, 8)
        order.updated_ts = fill.ts
        order.status = OrderStatus.FILLED if order.remaining <= 1e-9 else OrderStatus.PARTIALLY_FILLED

    def _fills_from_deals(
        self, deals: list[Any], order: Order, role: str | None = None, *, replay: bool = False
    ) -> list[Emission]:
        """Fills (and the order's new state) for deals of one kernel order. Deals seen before are
        skipped unless ``replay`` (after a restart: the kernel ignores fill ids it already has)."""
        emissions: list[Emission] = []
        for d in deals:
            ticket = int(d.ticket)
            if ticket in self._seen_deals and not replay:
                continue
            self._seen_deals.add(ticket)
            if d.entry == self.mt5.DEAL_ENTRY_IN:
                self._entry_of_position[int(d.position_id)] = order.id
            fill = Fill(
                id=f"mt5-deal-{ticket}",
                order_id=order.id,
                symbol=str(d.symbol),
                side=Side.BUY if d.type == self.mt5.DEAL_TYPE_BUY else Side.SELL,
                qty=float(d.volume),
                price=float(d.price),
                fee=-float(d.commission) - float(d.fee),
                ts=self._fill_ts(d),
                strategy=order.request.strategy,
                role=role or order.role,
            )
            emissions.append(("fill", fill))
            if role is None:
                self._apply_fill(order, fill)
                emissions.append(("order", order))
        return emissions

    def _find_sent(self, comment: str, symbol: str) -> list[Emission]:
        """If an order with this comment already exists at the terminal, adopt it instead of resending."""
        order_id = self._by_comment.get(comment)
        order = self._orders.get(order_id) if order_id else None
        if order is None:
            return []
        s = self.session
        for o in s.call("orders_get", symbol=symbol) or ():
            if o.comment == comment:
                order.broker_order_id = str(o.ticket)
                order.status = OrderStatus.ACCEPTED
                self._working[int(o.ticket)] = _Working(order, int(o.ticket))
                log.warning(
                    "MT5 order %s already at the terminal as #%s: adopted, not resent", order.id, o.ticket
                )
                return [("order", order)]
        since = max(0, self._scan_from_s - 7 * 86_400)  # a restart rarely takes longer than a week
        deals = [d for d in (s.call("history_deals_get", since, FAR_FUTURE_S) or ())
                 if d.comment == comment and d.symbol == symbol]  # fmt: skip
        if deals:
            order.broker_order_id = str(deals[0].order)
            log.warning("MT5 order %s already executed as deal(s) %s: adopted, not resent",
                        order.id, [int(d.ticket) for d in deals])  # fmt: skip
            return self._fills_from_deals(deals, order, replay=True) or [("order", order)]
        return []

    def _close_hedged(
        self, order: Order, info: Any, volume: float, magic: int, comment: str
    ) -> list[Emission]:
        """A reduce-only order on a hedging account closes positions by ticket instead of opening an
        opposite one: this strategy's positions first, then any (manual) ones, oldest first."""
        mt5, req = self.mt5, order.request
        closing_type = mt5.POSITION_TYPE_SELL if req.side is Side.BUY else mt5.POSITION_TYPE_BUY
        positions = [
            p for p in (self.session.need("positions_get", symbol=req.symbol)) if p.type == closing_type
        ]
        positions.sort(key=lambda p: (p.magic != magic, p.ticket))
        if not positions:
            return self._reject(
                order, "no_position", f"no {req.symbol} position to reduce with a {req.side} order"
            )
        filling = _market_filling(info, mt5)
        if filling is None:
            return self._reject(order, "invalid_filling", f"{req.symbol} allows no market filling mode")
        emissions: list[Emission] = []
        left = volume
        for p in positions:
            if left <= 1e-12:
                break
            part, _ = _normalize_volume(min(left, float(p.volume)), info)
            request = {
                "action": mt5.TRADE_ACTION_DEAL, "symbol": req.symbol, "volume": part, "magic": magic,
                "comment": comment, "deviation": self.cfg.deviation, "type_time": mt5.ORDER_TIME_GTC,
                "type": mt5.ORDER_TYPE_BUY if req.side is Side.BUY else mt5.ORDER_TYPE_SELL,
                "type_filling": filling, "position": int(p.ticket),
            }  # fmt: skip
            emissions.extend(self._check_and_send(order, request))
            if order.status is OrderStatus.REJECTED:
                break
            left = round(left - part, 8)
        if order.filled_qty > 0:
            self._sent.add(order.id)  # something was executed: never send this id again
        return emissions

    async def cancel(self, order_id: str) -> None:
        """Delete a working pending order. Raises BrokerError when no such order is working at MT5."""
        emissions = await self.session.run(lambda: self._cancel_sync(order_id))
        self._emit(emissions)

    def _cancel_sync(self, order_id: str) -> list[Emission]:
        s, mt5 = self.session, self.mt5
        ticket = next((t for t, w in self._working.items() if w.order.id == order_id), None)
        if ticket is None:
            comment = comment_for(order_id)
            ticket = next((int(o.ticket) for o in s.need("orders_get") if o.comment == comment), None)
        if ticket is None:
            raise BrokerError(
                f"order {order_id} is not working at MetaTrader 5 (filled, cancelled or unknown)"
            )
        result = s.call("order_send", {"action": mt5.TRADE_ACTION_REMOVE, "order": ticket})
        if result is None:
            code, text = s.last_error()
            raise BrokerError(f"MT5 could not cancel order {order_id} (#{ticket}): {text} ({code})")
        if int(result.retcode) not in (DONE, PLACED):
            reason, message = RETCODES.get(int(result.retcode), ("rejected", "refused"))
            raise BrokerError(f"MT5 refused to cancel order {order_id} (#{ticket}): {reason}: {message} "
                              f"(retcode {result.retcode}: {result.comment})")  # fmt: skip
        working = self._working.pop(ticket, None)
        order = working.order if working is not None else self._orders.get(order_id)
        if order is None:
            order = self._order_from_mt5(s.need("history_orders_get", ticket=ticket)[0])
        order.status = OrderStatus.CANCELLED
        order.reason = "cancelled"
        return [("order", order)]

    # -- asynchronous outcomes ------------------------------------------------------------------------
    async def poll(self) -> None:
        """Report what happened at the terminal since the last look: pending orders that filled,
        expired, or were cancelled or rejected there, and SL/TP closes of the kernel's positions."""
        emissions = await self.session.run(self._poll_sync)
        self._emit(emissions)

    def _poll_sync(self) -> list[Emission]:
        s, mt5 = self.session, self.mt5
        emissions: list[Emission] = []
        deals = s.need("history_deals_get", max(0, self._scan_from_s - 86_400), FAR_FUTURE_S)
        working_by_ticket = dict(self._working)
        for d in sorted(deals, key=lambda d: int(d.ticket)):
            self._scan_from_s = max(self._scan_from_s, int(d.time))  # the next look starts a day before
            if int(d.ticket) in self._seen_deals or d.type not in (mt5.DEAL_TYPE_BUY, mt5.DEAL_TYPE_SELL):
                continue
            working = working_by_ticket.get(int(d.order))
            if working is not None:
                emissions.extend(self._fills_from_deals([d], working.order))
                continue
            if d.reason in (mt5.DEAL_REASON_SL, mt5.DEAL_REASON_TP, mt5.DEAL_REASON_SO):
                entry_id = self._entry_of_position.get(int(d.position_id)) or self._entry_from_history(
                    int(d.position_id)
                )
                entry = self._orders.get(entry_id) if entry_id else None
                if entry is not None:
                    role = {mt5.DEAL_REASON_SL: "stop_loss", mt5.DEAL_REASON_TP: "take_profit"}.get(
                        int(d.reason), "stop_out"
                    )
                    emissions.extend(self._fills_from_deals([d], entry, role=role))
                    continue
            order_id = self._by_comment.get(str(d.comment))
            if order_id in self._orders:
                emissions.extend(self._fills_from_deals([d], self._orders[order_id]))
            else:
                self._seen_deals.add(int(d.ticket))  # manual or foreign deal: positions() shows its effect
        open_tickets = {int(o.ticket) for o in s.need("orders_get")}
        for ticket, working in list(self._working.items()):
            if ticket in open_tickets:
                continue
            order = working.order
            history = s.call("history_orders_get", ticket=ticket) or ()
            state = int(history[0].state) if history else mt5.ORDER_STATE_FILLED
            if state == mt5.ORDER_STATE_FILLED and order.status is not OrderStatus.FILLED:
                continue  # filled but the deal is not visible yet: the next poll reports it
            del self._working[ticket]
            if state == mt5.ORDER_STATE_FILLED:
                continue
            order.status, order.reason = {
                mt5.ORDER_STATE_CANCELED: (OrderStatus.CANCELLED, "cancelled at the terminal"),
                mt5.ORDER_STATE_EXPIRED: (OrderStatus.EXPIRED, "expired"),
                mt5.ORDER_STATE_REJECTED: (
                    OrderStatus.REJECTED,
                    "rejected: the server refused it when triggered",
                ),
            }.get(state, (OrderStatus.CANCELLED, f"left the terminal in state {state}"))
            emissions.append(("order", order))
        return emissions

    def _entry_from_history(self, position_id: int) -> str | None:
        orders = self.session.call("history_orders_get", ticket=position_id) or ()
        if not orders:
            return None
        comment = str(orders[0].comment)
        order_id = self._kernel_id(comment, position_id)
        return order_id if order_id in self._orders else None


def _normalize_volume(qty: float, info: Any) -> tuple[float, str]:
    """Round away floating noise to the symbol's volume step; refuse what is off-step or out of range."""
    step, vmin, vmax = float(info.volume_step), float(info.volume_min), float(info.volume_max)
    if not math.isfinite(qty) or qty <= 0:
        return 0.0, f"qty {qty!r} must be a positive number of lots"
    if qty < vmin * (1 - 1e-9):
        return 0.0, f"qty {qty} is below {info.name} volume_min {vmin}"
    if vmax > 0 and qty > vmax * (1 + 1e-9):
        return 0.0, f"qty {qty} is above {info.name} volume_max {vmax}"
    if step > 0:
        steps = round(qty / step)
        if abs(steps * step - qty) > step * 1e-6:
            return 0.0, f"qty {qty} is not a multiple of {info.name} volume_step {step}"
        decimals = max(0, 2 - math.floor(math.log10(step)))
        qty = round(steps * step, decimals)
    return float(qty), ""


def _round_price(price: float | None, info: Any) -> float:
    if price is None:
        return 0.0
    tick = float(info.trade_tick_size or info.point)
    return round(round(price / tick) * tick, int(info.digits)) if tick > 0 else float(price)


def _market_filling(info: Any, mt5: Any) -> int | None:
    """A filling mode the symbol accepts for market orders: FOK, then IOC, then RETURN (which the
    server allows for market orders only in Market or Exchange execution)."""
    flags = int(info.filling_mode)
    if flags & SYMBOL_FILLING_FOK:
        return int(mt5.ORDER_FILLING_FOK)
    if flags & SYMBOL_FILLING_IOC:
        return int(mt5.ORDER_FILLING_IOC)
    if info.trade_exemode in (mt5.SYMBOL_TRADE_EXECUTION_MARKET, mt5.SYMBOL_TRADE_EXECUTION_EXCHANGE):
        return int(mt5.ORDER_FILLING_RETURN)
    return None


# ------------------------------------------------------------------------------------------------
# the data source
# ------------------------------------------------------------------------------------------------
class MT5DataSource:
    """History via ``copy_rates_range`` and a polling live stream of quotes and completed bars.

    Options: ``module``, ``symbols``, ``timeframe`` (M1..MN1), ``poll_interval`` (seconds),
    ``server_time_offset_s`` (MT5 stamps bars in the broker's server time written as if it were UTC;
    give the server's offset from UTC to get true UTC), and optionally ``login``/``server``/``path``
    (without them the source attaches to whatever account the terminal has open).
    """

    name = "mt5"

    def __init__(self, cfg: MT5Config) -> None:
        self.cfg = cfg
        self.mt5 = cfg.module if cfg.module is not None else load_mt5_module()
        self.symbols = list(cfg.symbols)
        self._session: _Session | None = None
        self.timeframe = int(getattr(self.mt5, TIMEFRAMES[cfg.timeframe]))

    async def _ready(self) -> _Session:
        if self._session is None:
            session = _Session.acquire(self.mt5)
            try:
                await session.run(functools.partial(session.ensure, self.cfg))
            except BaseException:
                await asyncio.get_running_loop().run_in_executor(None, session.release)
                raise
            self._session = session
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await asyncio.get_running_loop().run_in_executor(None, session.release)

    def _select(self, s: _Session, symbol: str) -> None:
        if not s.call("symbol_select", symbol, True):
            code, text = s.last_error()
            raise ValidationError(
                "symbol", symbol, f"not offered by this MetaTrader 5 terminal: {text} ({code})"
            )

    async def history(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> BarSeries:
        """Bars of ``symbol`` with open time in [start_ms, end_ms] (epoch ms, UTC), validated."""
        s = await self._ready()
        offset = self.cfg.server_time_offset_s
        lo = 0 if start_ms is None else max(0, start_ms // 1000 + offset)
        hi = FAR_FUTURE_S if end_ms is None else end_ms // 1000 + offset

        def fetch() -> Any:
            self._select(s, symbol)
            rates = s.call("copy_rates_range", symbol, self.timeframe, lo, hi)
            if rates is None:
                code, text = s.last_error()
                raise BrokerError(
                    f"MT5 copy_rates_range({symbol}, {self.cfg.timeframe}) failed: {text} ({code})"
                )
            return rates

        rates = await s.run(fetch)
        return rates_to_series(symbol, rates, offset)

    async def stream(self) -> AsyncIterator[Bar | Quote]:
        """Poll the terminal: a Quote when a symbol's tick changes, a Bar when a bar completes."""
        s = await self._ready()
        offset_ms = self.cfg.server_time_offset_s * 1000
        last_tick: dict[str, int] = {}
        last_bar: dict[str, int] = {}

        def latest(symbol: str) -> tuple[Any, Any]:
            tick = s.call("symbol_info_tick", symbol)
            bars = s.call("copy_rates_from_pos", symbol, self.timeframe, 1, 1)
            return tick, bars

        for symbol in self.symbols:
            await s.run(functools.partial(self._select, s, symbol))
            _, bars = await s.run(functools.partial(latest, symbol))
            if bars is not None and len(bars):
                last_bar[symbol] = int(bars[-1]["time"])  # bars completed before we started are history
        while True:
            for symbol in self.symbols:
                tick, bars = await s.run(functools.partial(latest, symbol))
                if bars is not None and len(bars):
                    b = bars[-1]
                    if int(b["time"]) > last_bar.get(symbol, -1):
                        last_bar[symbol] = int(b["time"])
                        yield Bar(int(b["time"]) * 1000 - offset_ms, float(b["open"]), float(b["high"]),
                                  float(b["low"]), float(b["close"]), _bar_volume(b), symbol)  # fmt: skip
                if tick is not None and int(tick.time_msc) > last_tick.get(symbol, -1):
                    last_tick[symbol] = int(tick.time_msc)
                    last = float(tick.last) if tick.last > 0 else (float(tick.bid) + float(tick.ask)) / 2
                    yield Quote(
                        int(tick.time_msc) - offset_ms, float(tick.bid), float(tick.ask), last, symbol
                    )
            await asyncio.sleep(self.cfg.poll_interval)


def _bar_volume(row: Any) -> float:
    real = float(row["real_volume"])
    return real if real > 0 else float(row["tick_volume"])


def rates_to_series(symbol: str, rates: np.ndarray, server_time_offset_s: int = 0) -> BarSeries:
    """An MT5 rates array (time/open/high/low/close/tick_volume/spread/real_volume) as a validated
    BarSeries. Volume is real_volume where the venue reports it (exchanges), else tick_volume (forex)."""
    names = rates.dtype.names or ()
    missing = [
        n for n in ("time", "open", "high", "low", "close", "tick_volume", "real_volume") if n not in names
    ]
    if missing:
        raise ValidationError("rates", list(names), f"not an MT5 rates array: missing {', '.join(missing)}")
    real = rates["real_volume"].astype(np.float64)
    volume = real if len(real) and bool((real > 0).any()) else rates["tick_volume"].astype(np.float64)
    ts = (rates["time"].astype(np.int64) - server_time_offset_s) * 1000
    return BarSeries.from_arrays(
        symbol, ts, rates["open"], rates["high"], rates["low"], rates["close"], volume
    )


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------
def make_broker(config: dict[str, Any], events: BrokerEvents) -> MT5Broker:
    return MT5Broker(MT5Config.from_options(dict(config)), events)


def make_data_source(options: dict[str, Any]) -> MT5DataSource:
    return MT5DataSource(MT5Config.from_options(dict(options)))


@hookimpl
def register_brokers(register: Callable[..., None]) -> None:
    register("mt5", make_broker, description="MetaTrader 5 terminal (Windows; MetaTrader5 package)")


@hookimpl
def register_data_sources(register: Callable[..., None]) -> None:
    register("mt5", make_data_source, description="MetaTrader 5 history (copy_rates_range) and live polling")
