"""The ccxt broker: spot trading on any ccxt exchange, tested end to end against Binance spot.

Guarantees, in the order an order meets them:

* **Precision before sending.** Quantity must sit on the market's amount step, prices on its tick,
  quantity >= the minimum and notional >= the minimum notional (from ``load_markets``). A violation is
  refused here with the numbers, never rounded silently.
* **Outcomes are events, not exceptions.** ``submit`` and ``cancel`` run inside the kernel's loop, so
  they report everything the venue does through :class:`BrokerEvents` (a refusal is a REJECTED update
  whose ``reason`` starts with a code) and raise only when the broker is not connected.
* **One order per client id.** ``order.id`` becomes the venue's client order id (Binance
  ``newClientOrderId``); ids that do not fit ``[A-Za-z0-9_-]{1,36}`` are mapped deterministically
  (``sk`` + 32 hex of their SHA-256), so the same kernel id always maps to the same venue id, even after
  a restart. After a network error the broker *looks the order up by client id before resending*: a
  filled market order no longer counts as a duplicate at Binance, so resending blindly could double it.
  A venue answer "Duplicate order sent." is resolved the same way.
* **Retries only for network errors** (timeout, 5xx, 429/418 honouring ``Retry-After``, dropped
  connection), with capped exponential backoff and jitter. Refusals are mapped to reason codes
  (``insufficient_funds``, ``invalid_order``, ``auth``, ``unknown_symbol``, ``exchange_error``).
* **Status by websocket, polling as the safety net.** Where ccxt.pro has ``watchOrders`` the broker
  watches it; a poller refreshes open orders every ``poll_interval`` seconds (``ws_poll_interval`` while
  the websocket is healthy). Fills are always read from the venue's trade list, so each
  :class:`~stratkernel.core.model.Fill` carries the venue's trade id and is reported once.
* **Reconciliation.** :meth:`CcxtBroker.reconcile` takes the kernel's open orders after a restart and
  looks each up by client id: fills and cancels that happened while the kernel was down are reported,
  nothing is sent again.

Stop orders (``OrderType.STOP``) are sent as the venue's native stop (Binance ``STOP_LOSS``, or
``STOP_LOSS_LIMIT`` with a limit price). Binance spot cannot attach a stop-loss/take-profit bracket to an
entry (``native_brackets = False``), so this broker protects each entry itself as it fills: the legs
``<id>.sl`` / ``<id>.tp`` go to the venue as one OCO order list (or a single order for one leg), like the
paper broker's bracket legs; while a partially filled entry is still working, interim legs cover what
it has filled so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt

from stratkernel.core.broker import BrokerEvents, Preflight, SymbolSpec
from stratkernel.core.errors import BrokerConnectionError, BrokerError, ConfigError, OrderRejectedError
from stratkernel.core.model import (
    Account,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
)

from .exchange import Backoff, exchange_config, make_exchange, reject_code, retry_after_seconds, with_retries

log = logging.getLogger("stratkernel.plugins.ccxt.broker")

_CLIENT_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_BROKER_KEYS = {
    "doubt_window",
    "quote",
    "use_websocket",
    "poll_interval",
    "ws_poll_interval",
    "max_retries",
    "retry_base",
    "retry_cap",
}


def venue_client_id(order_id: str) -> str:
    """The client order id sent to the venue for a kernel order id (deterministic, <= 36 chars)."""
    if _CLIENT_ID_OK.match(order_id):
        return order_id
    return "sk" + hashlib.sha256(order_id.encode()).hexdigest()[:32]


def _status(ccxt_order: dict[str, Any]) -> OrderStatus:
    status = ccxt_order.get("status")
    filled = float(ccxt_order.get("filled") or 0.0)
    if status == "open":
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
    if status == "closed":
        return OrderStatus.FILLED
    if status == "canceled":
        return OrderStatus.CANCELLED
    if status == "expired":
        return OrderStatus.EXPIRED
    if status == "rejected":
        return OrderStatus.REJECTED
    return OrderStatus.ACCEPTED


def _positive_number(config: dict[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"ccxt.{key}", f"must be a positive number, got {value!r}")
    return float(value)


class CcxtBroker:
    """A :class:`~stratkernel.core.broker.Broker` over ccxt (async + pro). See the module docstring."""

    name = "ccxt"
    native_brackets = False  # the venue cannot attach SL/TP to an entry: this broker places the legs itself
    native_stops = True  # OrderType.STOP is sent as the venue's stop order

    def __init__(self, config: dict[str, Any], events: BrokerEvents) -> None:
        self.cfg = exchange_config(config, extra_keys=_BROKER_KEYS)
        self.events = events
        self.quote = str(self.cfg.get("quote", "USDT"))
        self.use_websocket = bool(self.cfg.get("use_websocket", True))
        self.poll_interval = _positive_number(self.cfg, "poll_interval", 2.0)
        self.ws_poll_interval = _positive_number(self.cfg, "ws_poll_interval", 15.0)
        retries = self.cfg.get("max_retries", 5)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError("ccxt.max_retries", f"must be an integer >= 0, got {retries!r}")
        self.max_retries = retries
        self._retry_base = _positive_number(self.cfg, "retry_base", 0.25)
        self._retry_cap = _positive_number(self.cfg, "retry_cap", 10.0)
        # How long after a request in doubt a "not found" becomes final: the venue's recvWindow.
        default_window = float((self.cfg.get("options") or {}).get("recvWindow", 10_000)) / 1000.0
        self.doubt_window = _positive_number(self.cfg, "doubt_window", default_window)
        self.exchange: Any = None
        self._orders: dict[str, Order] = {}  # by venue client id
        self._locks: dict[str, asyncio.Lock] = {}
        self._seen_trades: set[str] = set()
        self._orders_with_fills: set[str] = set()  # kernel ids whose venue trades were read in this process
        self._bracketed: set[str] = set()  # entries whose final protective legs were placed (or found) here
        self._protected: dict[str, float] = {}  # entry id -> filled quantity its current legs were made for
        self._base_fees: dict[str, float] = {}  # entry id -> fees charged in the base asset (not held)
        self._avg_price: dict[str, tuple[float, float]] = {}  # symbol -> (qty, avg) from fills seen here
        self._last_price: dict[str, float] = {}
        self._ticker_at: dict[str, float] = {}  # symbol -> monotonic time of the last ticker read
        self._doubt_until: dict[str, float] = {}  # client id -> until when a late execution is possible
        self._tasks: list[asyncio.Task[None]] = []
        self._ws_healthy = False
        self._wake = asyncio.Event()
        self.ws_errors = 0
        self.last_cancel_error = ""
        self._last_net_error: Exception | None = None
        self.poll_errors = 0
        # Every retry wait goes through here (tests replace it to see the delays chosen).
        self.sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep

    # -- lifecycle ------------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Load markets once, check the credentials with a balance request, start status tracking."""
        if self.exchange is None:
            self.exchange = make_exchange(self.cfg, pro=self.use_websocket)
            self.exchange.options.setdefault("warnOnFetchOpenOrdersWithoutSymbol", False)
        try:
            await self._call("load markets", lambda: self.exchange.load_markets())
            await self._call("fetch balance", lambda: self.exchange.fetch_balance())
        except ccxt.AuthenticationError as exc:
            raise BrokerError(f"auth: {self.cfg['exchange']} refused the credentials: {exc}") from None
        except ccxt.ExchangeError as exc:
            raise BrokerConnectionError(f"{self.cfg['exchange']}: {exc}") from None
        if not self._tasks:
            if self.use_websocket and self.exchange.has.get("watchOrders"):
                self._tasks.append(asyncio.create_task(self._ws_loop(), name="ccxt-watch-orders"))
            self._tasks.append(asyncio.create_task(self._poll_loop(), name="ccxt-poll-orders"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.exchange is not None:
            await self.exchange.close()
            self.exchange = None

    def _backoff(self) -> Backoff:
        return Backoff(self._retry_base, self._retry_cap)

    async def _call(self, what: str, call: Any) -> Any:
        return await with_retries(
            self.exchange, what, call, retries=self.max_retries, backoff=self._backoff(), sleep=self.sleep
        )

    def _require_connected(self) -> None:
        if self.exchange is None or not self.exchange.markets:
            raise BrokerConnectionError("ccxt broker is not connected; call connect() first")

    # -- symbols ----------------------------------------------------------------------------------------
    def _step(self, value: Any) -> float:
        """A precision value as a step size (ccxt reports steps or decimal places, per exchange)."""
        if value is None:
            return 0.0
        if self.exchange.precisionMode == ccxt.DECIMAL_PLACES:
            return float(10.0 ** -float(value))
        if self.exchange.precisionMode == ccxt.SIGNIFICANT_DIGITS:
            return 0.0  # no fixed step: the gate cannot pre-check it, the venue will
        return float(value)

    def symbol_spec(self, symbol: str) -> SymbolSpec | None:
        if self.exchange is None or not self.exchange.markets or symbol not in self.exchange.markets:
            return None
        m = self.exchange.markets[symbol]
        limits = m.get("limits") or {}
        amount = limits.get("amount") or {}
        cost = limits.get("cost") or {}
        precision = m.get("precision") or {}
        qty_step = self._step(precision.get("amount"))
        return SymbolSpec(
            symbol=symbol,
            qty_step=qty_step,
            min_qty=float(amount.get("min") or qty_step or 0.0),
            max_qty=float(amount.get("max") or math.inf),
            price_tick=self._step(precision.get("price")),
            min_notional=float(cost.get("min") or 0.0),
            contract_size=float(m.get("contractSize") or 1.0),
        )

    @staticmethod
    def _on_step(value: float, step: float) -> bool:
        if step <= 0:
            return True
        n = value / step
        return abs(n - round(n)) <= 1e-9 * max(1.0, abs(n))

    async def _reference_price(self, req: OrderRequest) -> float:
        if req.limit_price is not None:
            return req.limit_price
        if req.stop_price is not None:
            return req.stop_price
        seen = self._ticker_at.get(req.symbol, -math.inf)
        last = self._last_price.get(req.symbol)
        if last is None or time.monotonic() - seen > 10.0:  # a market order's notional needs a fresh price
            ticker = await self._call(f"ticker {req.symbol}", lambda: self.exchange.fetch_ticker(req.symbol))
            last = float(ticker.get("last") or ticker.get("close") or 0.0)
            self._last_price[req.symbol] = last
            self._ticker_at[req.symbol] = time.monotonic()
        return last

    async def _check_precision(self, req: OrderRequest) -> None:
        spec = self.symbol_spec(req.symbol)
        if spec is None:
            raise OrderRejectedError("unknown_symbol", f"{self.cfg['exchange']} has no market {req.symbol!r}")
        if not self._on_step(req.qty, spec.qty_step):
            raise OrderRejectedError(
                "invalid_order", f"qty {req.qty} is not a multiple of the step {spec.qty_step}"
            )
        if req.qty < spec.min_qty - 1e-12:
            raise OrderRejectedError("invalid_order", f"qty {req.qty} is below the minimum {spec.min_qty}")
        if req.qty > spec.max_qty:
            raise OrderRejectedError("invalid_order", f"qty {req.qty} is above the maximum {spec.max_qty}")
        for field, price in (("limit_price", req.limit_price), ("stop_price", req.stop_price)):
            if price is not None and not self._on_step(price, spec.price_tick):
                raise OrderRejectedError(
                    "invalid_order", f"{field} {price} is not a multiple of the tick {spec.price_tick}"
                )
        if spec.min_notional > 0:
            ref = await self._reference_price(req)
            if ref > 0 and req.qty * ref < spec.min_notional - 1e-9:
                raise OrderRejectedError(
                    "invalid_order",
                    f"notional {req.qty * ref:.8g} ({req.qty} x {ref}) is below the minimum {spec.min_notional}",
                )

    # -- orders ---------------------------------------------------------------------------------------
    def _create_args(self, req: OrderRequest, cid: str) -> tuple[str, float | None, dict[str, Any]]:
        params: dict[str, Any] = {"clientOrderId": cid}
        if req.type is OrderType.MARKET:
            return "market", None, params
        if req.type is OrderType.LIMIT:
            return "limit", req.limit_price, params
        params["stopPrice"] = req.stop_price
        if req.limit_price is not None:
            return "STOP_LOSS_LIMIT", req.limit_price, dict(params, timeInForce="GTC")
        return "STOP_LOSS", None, params

    async def submit(self, order: Order) -> None:
        """Send ``order`` (idempotent by ``order.id``); every outcome is reported through BrokerEvents.

        Like every stratkernel broker, ``submit`` does not raise for what the venue does: a refusal (by the
        precision checks here or by the venue) is a REJECTED update whose ``reason`` starts with the code
        (``insufficient_funds: ...``); a venue that stays unreachable leaves the order PENDING with a
        reason, and the poller resolves it by client id. It raises only if the broker is not connected.
        """
        self._require_connected()
        cid = venue_client_id(order.id)
        known = self._orders.get(cid)
        if known is not None and known is not order:
            order = known
        self._orders[cid] = order
        async with self._lock(cid):
            if order.broker_order_id or (known is not None and not order.status.is_open):
                return  # already at the venue (or finished): sending again would double it
            req = order.request
            if req.reduce_only and order.role not in ("stop_loss", "take_profit"):
                await self._release_protection(req)
            try:
                await self._check_precision(req)
            except OrderRejectedError as exc:
                self._reject(order, exc.code, str(exc).split(": ", 1)[-1])
                return
            except BrokerConnectionError as exc:  # the reference price for the notional check
                self._unresolved(order, str(exc))
                return
            otype, price, params = self._create_args(req, cid)
            backoff = self._backoff()
            in_doubt = False  # a request may have reached the venue: look it up before sending again
            doubt_since = 0.0
            for attempt in range(self.max_retries + 1):
                if in_doubt:
                    try:
                        if await self._adopt_by_client_id(order, cid):
                            return
                        # A request that timed out can still execute until the venue's recvWindow has
                        # passed (Binance: status UNKNOWN). Only a "not found" after that is final.
                        left = self.doubt_window - (time.monotonic() - doubt_since)
                        if left > 0:
                            await self.sleep(left)
                            if await self._adopt_by_client_id(order, cid):
                                return
                        in_doubt = False  # the venue does not have it: sending is safe
                    except ccxt.NetworkError as exc:
                        await self._wait_after(exc, backoff, f"lookup {cid}", attempt)
                        continue
                try:
                    response = await self.exchange.create_order(
                        req.symbol, otype, req.side.value, req.qty, price, params
                    )
                except ccxt.InvalidOrder as exc:
                    if "duplicate order" in str(exc).lower():
                        # An earlier attempt (maybe by a previous process) got through: adopt it via the
                        # lookup at the top of the loop, never fail it and never resend it.
                        in_doubt = True
                        continue
                    self._reject(order, reject_code(exc), str(exc))
                    return
                except ccxt.NetworkError as exc:
                    # 429/418 (and what ccxt files with them) mean "not processed"; anything else may
                    # have reached the matching engine.
                    if not isinstance(exc, ccxt.DDoSProtection):
                        in_doubt = True
                        doubt_since = time.monotonic()
                        self._doubt_until[cid] = doubt_since + self.doubt_window
                    await self._wait_after(exc, backoff, f"submit {cid}", attempt)
                    continue
                except ccxt.ExchangeError as exc:
                    self._reject(order, reject_code(exc), str(exc))
                    return
                await self._apply(order, response, locked=True)
                return
            self._unresolved(
                order,
                f"venue unreachable after {self.max_retries + 1} attempts "
                f"(last: {type(self._last_net_error).__name__}: {self._last_net_error})",
            )

    def _unresolved(self, order: Order, why: str) -> None:
        """The venue could not be asked: the order stays PENDING until the poller finds out by client id."""
        order.reason = f"venue_unreachable: {why}; the order stays pending and is resolved by client id"
        order.updated_ts = int(time.time() * 1000)
        log.error("submit %s: %s", order.id, order.reason)
        self.events.on_order_update(order)

    async def _release_protection(self, req: OrderRequest) -> None:
        """Cancel the strategy's protective legs on ``req.symbol`` before a closing order.

        On spot the legs hold the coins locked; a close could not be filled while they stand, and once
        the position is closed there is nothing left for them to protect.
        """
        for leg in list(self._orders.values()):
            if (
                leg.status.is_open
                and leg.role in ("stop_loss", "take_profit")
                and leg.symbol == req.symbol
                and leg.request.strategy == req.strategy
            ):
                # An OCO sibling goes with the first cancel; cancel() then just notes it is finished.
                await self.cancel(leg.id)

    async def _wait_after(self, exc: Exception, backoff: Backoff, what: str, attempt: int) -> None:
        # ccxt counts some answers as network trouble on purpose, e.g. Binance -2015 "Invalid API-key"
        # after a successful login (a temporary IP ban, per ccxt); the text is kept for the order's reason.
        self._last_net_error = exc
        delay = backoff.next_delay()
        if isinstance(exc, ccxt.DDoSProtection):  # 429/418: the venue says how long to wait
            delay = max(delay, retry_after_seconds(self.exchange))
        log.warning(
            "%s: %s: %s (attempt %d, retry in %.2fs)", what, type(exc).__name__, exc, attempt + 1, delay
        )
        await self.sleep(delay)

    async def _adopt_by_client_id(self, order: Order, cid: str) -> bool:
        try:
            venue = await self.exchange.fetch_order(None, order.symbol, {"origClientOrderId": cid})
        except ccxt.OrderNotFound:
            return False
        await self._apply(order, venue, locked=True)
        return True

    def _reject(self, order: Order, code: str, message: str) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = f"{code}: {message}"
        order.updated_ts = int(time.time() * 1000)
        self.events.on_order_update(order)

    def _lock(self, cid: str) -> asyncio.Lock:
        lock = self._locks.get(cid)
        if lock is None:
            lock = self._locks[cid] = asyncio.Lock()
        return lock

    async def _apply(self, order: Order, venue: dict[str, Any], *, locked: bool = False) -> None:
        """Bring ``order`` up to date with a ccxt order dict: report new fills, then the status change."""
        if not locked:
            async with self._lock(venue_client_id(order.id)):
                await self._apply(order, venue, locked=True)
            return
        status = _status(venue)
        filled = float(venue.get("filled") or 0.0)
        if venue.get("id"):
            order.broker_order_id = str(venue["id"])
        if filled > order.filled_qty + 1e-12 or (filled > 0 and not self._has_fills_for(order)):
            try:
                await self._report_fills(order)
            except BrokerConnectionError as exc:
                # The trades could not be read: keep the order open on our side so the poller comes back
                # for the fills; reporting FILLED without them would lose them.
                log.warning("fills of %s not read yet: %s", order.id, exc)
                if order.status is OrderStatus.PENDING:
                    order.status = OrderStatus.ACCEPTED
                    order.updated_ts = int(time.time() * 1000)
                    self.events.on_order_update(order)
                return
        if status is OrderStatus.EXPIRED and order.role in ("stop_loss", "take_profit") and order.parent_id:
            # Binance expires the other leg of an OCO when one executes: for the kernel that is a cancel.
            status = OrderStatus.CANCELLED
            order.reason = order.reason or "one-cancels-other: the other leg executed"
        changed = status is not order.status or abs(filled - order.filled_qty) > 1e-12
        if filled > 0:
            order.filled_qty = filled
            order.avg_fill_price = float(venue.get("average") or order.avg_fill_price or 0.0)
        if changed:
            order.status = status
            order.updated_ts = int(
                venue.get("lastUpdateTimestamp") or venue.get("timestamp") or time.time() * 1000
            )
            if status is OrderStatus.REJECTED and not order.reason:
                order.reason = "rejected by the venue"
            self.events.on_order_update(order)
        if self._needs_bracket(order):
            await self._protect(order)

    # -- brackets -----------------------------------------------------------------------------------------
    def _needs_bracket(self, order: Order) -> bool:
        req = order.request
        return (
            order.role == "entry"
            and (req.stop_loss is not None or req.take_profit is not None)
            and order.id not in self._bracketed
            and order.filled_qty > self._protected.get(order.id, 0.0) + 1e-12
        )

    async def _protect(self, entry: Order) -> None:
        """Keep what the entry has filled protected at the venue.

        While the entry is still working, each new partial fill replaces the legs with legs for the whole
        quantity held so far (ids ``<entry>.p<n>.sl`` / ``.tp``, ``n`` = filled quantity in steps). When
        the entry is done, the final legs ``<entry>.sl`` / ``.tp`` replace them. That happens unless the
        working legs already cover the final quantity (an entry cancelled after a partial fill), in
        which case they stay.
        """
        final = not entry.status.is_open
        self._protected[entry.id] = entry.filled_qty  # before any await: updates arriving meanwhile wait
        if final:
            self._bracketed.add(entry.id)
        held = self._held_qty(entry)
        working = [o for o in self._orders.values() if o.parent_id == entry.id and o.status.is_open]
        if working and all(abs(o.request.qty - held) <= 1e-12 for o in working):
            return
        for leg in working:
            await self.cancel(leg.id)  # the OCO sibling goes with the first; cancel() then notes it
        if any(leg.filled_qty > 0 for leg in working):
            # A leg executed while being replaced: the position it protected is (partly) gone; protecting
            # the full entry again could sell coins that are no longer there.
            log.warning("a protective leg of %s executed during replacement; not re-protecting", entry.id)
            self._bracketed.add(entry.id)
            return
        spec = self.symbol_spec(entry.symbol)
        step = spec.qty_step if spec is not None and spec.qty_step > 0 else 1e-8
        await self._place_bracket(entry, held, "" if final else f"p{round(entry.filled_qty / step)}")

    def _held_qty(self, entry: Order) -> float:
        """What the entry's fills actually left in the account: minus fees taken in the coin, on the step."""
        fee_in_base = self._base_fees.get(entry.id, 0.0)
        return float(
            self.exchange.amount_to_precision(entry.symbol, max(entry.filled_qty - fee_in_base, 0.0))
        )

    def _leg(self, entry: Order, role: str, qty: float, tag: str = "") -> Order:
        req = entry.request
        if role == "stop_loss":
            assert req.stop_loss is not None
            stop = float(self.exchange.price_to_precision(req.symbol, req.stop_loss))
            leg_req = OrderRequest(
                req.symbol,
                req.side.opposite,
                qty,
                OrderType.STOP,
                stop_price=stop,
                reduce_only=True,
                strategy=req.strategy,
                source=req.source,
            )
            suffix = "sl"
        else:
            assert req.take_profit is not None
            limit = float(self.exchange.price_to_precision(req.symbol, req.take_profit))
            leg_req = OrderRequest(
                req.symbol,
                req.side.opposite,
                qty,
                OrderType.LIMIT,
                limit_price=limit,
                reduce_only=True,
                strategy=req.strategy,
                source=req.source,
            )
            suffix = "tp"
        now = int(time.time() * 1000)
        return Order(
            f"{entry.id}.{tag}.{suffix}" if tag else f"{entry.id}.{suffix}",
            leg_req,
            OrderStatus.PENDING,
            created_ts=now,
            updated_ts=now,
            parent_id=entry.id,
            role=role,
        )

    async def _place_bracket(self, entry: Order, qty: float, tag: str = "") -> None:
        """Protect a filled entry at the venue: its stop-loss and take-profit as native orders.

        Both legs together go out as one OCO order list (Binance ``orderList/oco``): on spot a second,
        separate sell of the same coins would be refused for insufficient balance, and OCO makes the
        venue cancel the other leg when one executes. Leg ids are ``<entry id>.sl`` / ``.tp``, so a
        restarted broker finds legs it placed before instead of placing them twice.
        """
        req = entry.request
        roles = [
            r for r, p in (("stop_loss", req.stop_loss), ("take_profit", req.take_profit)) if p is not None
        ]
        legs = [self._leg(entry, role, qty, tag) for role in roles]
        for leg in legs:
            self._orders[venue_client_id(leg.id)] = leg
        # After a restart the legs may already be at the venue: adopt them, never place them twice.
        found = []
        for leg in legs:
            try:
                found.append(await self._adopt_by_client_id(leg, venue_client_id(leg.id)))
            except ccxt.NetworkError:
                found.append(False)
        if all(found):
            return
        spec = self.symbol_spec(req.symbol)
        if spec is not None and qty < spec.min_qty:
            for leg in legs:
                self._reject(
                    leg,
                    "invalid_order",
                    f"filled quantity {qty} is below the venue minimum {spec.min_qty}: "
                    "the entry cannot be protected at the venue",
                )
            return
        if len(legs) == 2:
            await self._submit_oco(entry, legs)
        else:
            await self.submit(legs[0])
        for leg in legs:
            if leg.status is OrderStatus.REJECTED or leg.reason.startswith("venue_unreachable"):
                log.error(
                    "bracket leg %s of %s is not working at the venue: %s", leg.id, entry.id, leg.reason
                )

    async def _submit_oco(self, entry: Order, legs: list[Order]) -> None:
        sl, tp = legs
        if not self.cfg["exchange"].startswith("binance"):
            # Without an OCO the two sells would lock the same coins twice; protect with the stop alone.
            self._reject(
                tp,
                "unsupported",
                f"take-profit with stop-loss needs an OCO order list, which this broker "
                f"implements for Binance only, not {self.cfg['exchange']}; only the stop-loss was placed",
            )
            await self.submit(sl)
            return
        market = self.exchange.market(entry.symbol)
        sl_cid, tp_cid = venue_client_id(sl.id), venue_client_id(tp.id)
        stop_leg: dict[str, Any] = {
            "Type": "STOP_LOSS",
            "StopPrice": self.exchange.price_to_precision(entry.symbol, sl.request.stop_price),
            "ClientOrderId": sl_cid,
        }
        limit_leg: dict[str, Any] = {
            "Type": "LIMIT_MAKER",
            "Price": self.exchange.price_to_precision(entry.symbol, tp.request.limit_price),
            "ClientOrderId": tp_cid,
        }
        # A sell bracket (protecting a long) has the take-profit above the price and the stop below.
        above, below = (limit_leg, stop_leg) if sl.side is Side.SELL else (stop_leg, limit_leg)
        params: dict[str, Any] = {
            "symbol": market["id"],
            "side": sl.side.value.upper(),
            "quantity": self.exchange.amount_to_precision(entry.symbol, sl.request.qty),
            "listClientOrderId": venue_client_id(f"{sl.id}.oco"),
            "newOrderRespType": "FULL",
        }
        params.update({f"above{k}": v for k, v in above.items()})
        params.update({f"below{k}": v for k, v in below.items()})
        backoff = self._backoff()
        for attempt in range(self.max_retries + 1):
            try:
                response = await self.exchange.privatePostOrderListOco(params)
            except ccxt.NetworkError as exc:
                await self._wait_after(exc, backoff, f"oco {entry.id}", attempt)
                try:  # did it get through? then adopt the legs
                    if await self._adopt_by_client_id(sl, sl_cid):
                        await self._adopt_by_client_id(tp, tp_cid)
                        return
                except ccxt.NetworkError:
                    continue
                continue
            except ccxt.ExchangeError as exc:
                for leg in legs:
                    self._reject(leg, reject_code(exc), str(exc))
                return
            for report in response.get("orderReports") or []:
                parsed = self.exchange.parse_order(report, market)
                leg = sl if parsed.get("clientOrderId") == sl_cid else tp
                async with self._lock(venue_client_id(leg.id)):
                    await self._apply(leg, parsed, locked=True)
            return
        for leg in legs:
            self._unresolved(
                leg, f"bracket of {entry.id}: venue unreachable after {self.max_retries + 1} attempts"
            )

    def _has_fills_for(self, order: Order) -> bool:
        return order.id in self._orders_with_fills

    async def _report_fills(self, order: Order) -> None:
        """Report every venue trade of ``order`` not reported yet, keyed by the venue's trade id."""
        if not order.broker_order_id:
            return
        trades = await self._call(
            f"trades of {order.id}",
            lambda: self.exchange.fetch_my_trades(
                order.symbol, None, None, {"orderId": order.broker_order_id}
            ),
        )
        for t in sorted(trades, key=lambda t: (t.get("timestamp") or 0, str(t.get("id")))):
            tid = f"{self.cfg['exchange']}:{order.symbol}:{t['id']}"
            if tid in self._seen_trades or str(t.get("order")) != order.broker_order_id:
                continue
            self._seen_trades.add(tid)
            self._orders_with_fills.add(order.id)
            price = float(t["price"])
            qty = float(t["amount"])
            fee = t.get("fee") or {}
            fee_cost = float(fee.get("cost") or 0.0)
            market = self.exchange.markets.get(order.symbol, {})
            if fee_cost and fee.get("currency") == market.get("base"):
                self._base_fees[order.id] = self._base_fees.get(order.id, 0.0) + fee_cost
                fee_cost *= price  # report fees in the quote currency, like the rest of the account
            self._track_avg(order.symbol, order.side, qty, price)
            self._last_price[order.symbol] = price
            self.events.on_fill(
                Fill(
                    id=tid,
                    order_id=order.id,
                    symbol=order.symbol,
                    side=order.side,
                    qty=qty,
                    price=price,
                    fee=fee_cost,
                    ts=int(t.get("timestamp") or 0),
                    strategy=order.request.strategy,
                    role=order.role,
                )
            )

    def _track_avg(self, symbol: str, side: Side, qty: float, price: float) -> None:
        held, avg = self._avg_price.get(symbol, (0.0, 0.0))
        if side is Side.BUY:
            total = held + qty
            self._avg_price[symbol] = (total, (held * avg + qty * price) / total if total > 0 else 0.0)
        else:
            left = max(held - qty, 0.0)
            self._avg_price[symbol] = (left, avg if left > 0 else 0.0)

    async def cancel(self, order_id: str) -> None:
        """Cancel an open order by kernel id; the outcome arrives as an order update.

        Does not raise for what the venue says: an order that is unknown, already finished or that the
        venue refuses to cancel is logged (and its final status reported if it changed), and
        :attr:`last_cancel_error` says why. Raises only if the broker is not connected.
        """
        self._require_connected()
        self.last_cancel_error = ""
        cid = venue_client_id(order_id)
        order = self._orders.get(cid)
        if order is None:
            self._cancel_failed(order_id, "not an order this broker tracks")
            return
        if not order.status.is_open:
            self._cancel_failed(order_id, f"already {order.status.value}")
            return
        try:
            result = await self._call(
                f"cancel {order_id}",
                lambda: self.exchange.cancel_order(
                    order.broker_order_id or None,
                    order.symbol,
                    {} if order.broker_order_id else {"origClientOrderId": cid},
                ),
            )
        except ccxt.OrderNotFound:
            await self.refresh(order)  # it may have filled or been cancelled meanwhile: report that
            state = order.status.value if not order.status.is_open else "unknown to the venue"
            self._cancel_failed(order_id, f"already {state}")
            return
        except (ccxt.ExchangeError, BrokerConnectionError) as exc:
            self._cancel_failed(order_id, f"{reject_code(exc)}: {exc}")
            return
        await self._apply(order, result)
        if order.status.is_open:  # some venues answer a cancel with a partial record; ask once more
            await self.refresh(order)

    def _cancel_failed(self, order_id: str, why: str) -> None:
        self.last_cancel_error = why
        log.warning("cancel %s: %s", order_id, why)

    async def refresh(self, order: Order) -> None:
        """Re-read one order from the venue by client id and report what changed."""
        cid = venue_client_id(order.id)
        async with self._lock(cid):  # never interleave with a submit of the same order
            try:
                venue = await self.exchange.fetch_order(None, order.symbol, {"origClientOrderId": cid})
            except ccxt.OrderNotFound:
                if time.monotonic() < self._doubt_until.get(cid, 0.0):
                    return  # a request in doubt may still execute: "not found" is not final yet
                if order.status is OrderStatus.PENDING or not order.broker_order_id:
                    order.status = OrderStatus.REJECTED
                    order.reason = "not found at the venue by client id: it never arrived"
                    order.updated_ts = int(time.time() * 1000)
                    self.events.on_order_update(order)
                return
            await self._apply(order, venue, locked=True)

    async def reconcile(self, orders: list[Order]) -> list[Order]:
        """Adopt the kernel's open orders after a restart and bring each up to date with the venue.

        Orders filled or cancelled while the kernel was down are reported (fills by venue trade id,
        which the kernel de-duplicates); an order the venue never received is marked REJECTED. Nothing
        is sent again. Returns the orders, updated in place.
        """
        self._require_connected()
        for order in orders:
            cid = venue_client_id(order.id)
            self._orders[cid] = order
            if order.status.is_open:
                await self._call(f"reconcile {order.id}", lambda o=order: self.refresh(o))
        return orders

    # -- status tracking -------------------------------------------------------------------------------
    async def _ws_loop(self) -> None:
        backoff = Backoff(0.5, 30.0)
        last_failure = -math.inf
        while True:
            try:
                updates = await self.exchange.watch_orders()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect later, the poller covers meanwhile
                self._ws_healthy = False
                self.ws_errors += 1
                self._wake.set()
                last_failure = time.monotonic()
                delay = backoff.next_delay()
                log.warning("watch_orders: %s: %s; reconnecting in %.2fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            if not self._ws_healthy:
                self._ws_healthy = True
                self._wake.set()  # poll once: events during the outage were not streamed to us
            if time.monotonic() - last_failure >= 60.0:  # only a stream that stayed up resets the backoff
                backoff.reset()
            for venue in updates:
                order = self._orders.get(str(venue.get("clientOrderId") or ""))
                if order is None:
                    continue
                try:
                    await self._apply(order, venue)
                except (ccxt.BaseError, BrokerError) as exc:
                    log.warning("order update %s: %s", order.id, exc)

    async def _poll_loop(self) -> None:
        while True:
            interval = self.ws_poll_interval if self._ws_healthy else self.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()
            await self.poll_once()

    async def poll_once(self) -> None:
        """Refresh every open order this broker tracks (the websocket's safety net)."""
        for cid, order in list(self._orders.items()):
            if not order.status.is_open or self._lock(cid).locked():
                continue  # finished, or a submit/update of it is in progress right now
            try:
                await self.refresh(order)
            except asyncio.CancelledError:
                raise
            except (ccxt.BaseError, BrokerError) as exc:
                self.poll_errors += 1
                log.warning("poll %s: %s: %s", order.id, type(exc).__name__, exc)

    def order(self, order_id: str) -> Order | None:
        """The tracked order for a kernel order id, if any."""
        return self._orders.get(venue_client_id(order_id))

    # -- account ----------------------------------------------------------------------------------------
    async def _balance(self) -> dict[str, Any]:
        balance: dict[str, Any] = await self._call("fetch balance", lambda: self.exchange.fetch_balance())
        return balance

    def _asset_symbols(self, balance: dict[str, Any]) -> dict[str, float]:
        """{symbol: total} for every non-quote asset held that trades against the quote currency."""
        out = {}
        for asset, total in (balance.get("total") or {}).items():
            symbol = f"{asset}/{self.quote}"
            if asset != self.quote and total and float(total) > 0 and symbol in self.exchange.markets:
                out[symbol] = float(total)
        return out

    async def positions(self) -> list[Position]:
        """Spot: every non-quote asset held, as a long position (avg price 0 unless filled here)."""
        self._require_connected()
        held = self._asset_symbols(await self._balance())
        return [
            Position(symbol, qty, self._avg_price.get(symbol, (0.0, 0.0))[1])
            for symbol, qty in sorted(held.items())
        ]

    async def account(self) -> Account:
        """cash = free quote currency; equity = quote total + other assets at their last price."""
        self._require_connected()
        balance = await self._balance()
        quote = balance.get(self.quote) or {}
        held = self._asset_symbols(balance)
        equity = float(quote.get("total") or 0.0)
        if held:
            tickers = await self._call("fetch tickers", lambda: self.exchange.fetch_tickers(sorted(held)))
            for symbol, qty in held.items():
                t = tickers.get(symbol) or {}
                price = float(t.get("last") or t.get("close") or self._last_price.get(symbol) or 0.0)
                self._last_price[symbol] = price
                equity += qty * price
        free = float(quote.get("free") or 0.0)
        return Account(cash=free, equity=equity, free_margin=free, currency=self.quote)

    async def open_orders(self) -> list[Order]:
        """Every open order at the venue: tracked ones updated, others (placed elsewhere) described."""
        self._require_connected()
        venue_orders = await self._call("fetch open orders", lambda: self.exchange.fetch_open_orders())
        out: list[Order] = []
        for v in venue_orders:
            cid = str(v.get("clientOrderId") or "")
            order = self._orders.get(cid)
            if order is not None:
                await self._apply(order, v)
                out.append(order)
                continue
            otype = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}.get(
                str(v.get("type")), OrderType.STOP
            )
            trigger = v.get("triggerPrice") or v.get("stopPrice")
            req = OrderRequest(
                symbol=v["symbol"],
                side=Side(v["side"]),
                qty=float(v["amount"]),
                type=otype,
                limit_price=float(v["price"]) if v.get("price") else None,
                stop_price=float(trigger) if trigger else None,
                source="venue",
                client_id=cid,
            )
            out.append(
                Order(
                    id=cid or str(v["id"]),
                    request=req,
                    status=_status(v),
                    filled_qty=float(v.get("filled") or 0.0),
                    avg_fill_price=float(v.get("average") or 0.0),
                    created_ts=int(v.get("timestamp") or 0),
                    broker_order_id=str(v["id"]),
                )
            )
        return out

    async def preflight(self) -> Preflight:
        """Whether trading is possible now: exchange status, reachable, credentials accepted, canTrade."""
        if self.exchange is None:
            return Preflight(False, "not connected")
        try:
            if self.exchange.has.get("fetchStatus"):
                try:
                    status = await self.exchange.fetch_status()
                except ccxt.NotSupported:
                    status = {}  # e.g. Binance's testnet has no status endpoint; the balance check remains
                if status.get("status") not in ("ok", None):
                    return Preflight(False, f"exchange status: {status.get('status')} ({status.get('info')})")
            balance = await self.exchange.fetch_balance()
        except ccxt.AuthenticationError as exc:
            return Preflight(False, f"auth: credentials refused: {exc}")
        except ccxt.NetworkError as exc:
            return Preflight(False, f"unreachable: {type(exc).__name__}: {exc}")
        except ccxt.ExchangeError as exc:
            return Preflight(False, f"exchange error: {exc}")
        info = balance.get("info") or {}
        if isinstance(info, dict) and info.get("canTrade") is False:
            return Preflight(False, "the account may not trade (canTrade=false)")
        return Preflight(True)
