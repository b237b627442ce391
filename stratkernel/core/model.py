"""The domain model: bars, quotes, order requests, orders, fills, positions, accounts, decisions.

Two kinds of construction, on purpose:

* ``Bar.parse(...)``, ``Quote.parse(...)``, :func:`order_request_from_untrusted` validate. Use them
  where data *enters* the kernel: a data-source plugin's output, API input, anything a sandbox worker
  sends back. A refusal is a :class:`~stratkernel.core.errors.ValidationError` naming field and value.
* The plain constructors (``Bar(ts, o, h, l, c, v, symbol)``) do not. The hot loop uses them for data
  that was validated once, vectorized, when it entered (see :mod:`stratkernel.core.series`).

Timestamps are integer milliseconds since the Unix epoch, UTC (the convention of ccxt and of most
exchange APIs); ``bar.time`` gives an aware ``datetime`` when a person needs one.

Quantities are signed only on :class:`Position` (``qty > 0`` long, ``< 0`` short); orders carry a
positive ``qty`` and a :class:`Side`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from .errors import ValidationError

__all__ = [
    "Account",
    "Bar",
    "Decision",
    "Fill",
    "Order",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "Position",
    "Quote",
    "Side",
    "TradingState",
    "ms_to_datetime",
    "order_request_from_untrusted",
    "to_ms",
]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class OrderStatus(StrEnum):
    """An order's lifecycle.

    ``DENIED`` never reaches a broker (the risk gate refused it). ``PENDING`` was approved and handed
    to the broker but not acknowledged yet; after a crash a PENDING order is reconciled with the
    broker by its client id instead of being sent again.
    """

    DENIED = "denied"
    PENDING = "pending"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        return self in _OPEN_STATUSES


_OPEN_STATUSES = frozenset({OrderStatus.PENDING, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


class TradingState(StrEnum):
    """ACTIVE trades; REDUCING lets only position-reducing orders pass; HALTED lets nothing new pass."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


def to_ms(value: datetime | int | float | str, field_name: str = "ts") -> int:
    """Convert an aware datetime, ISO string or epoch (s or ms) to epoch milliseconds.

    Naive datetimes are refused: a timestamp without a zone is a bug waiting for a DST change.
    """
    if isinstance(value, bool):
        raise ValidationError(field_name, value, "timestamp must be a datetime or a number")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(field_name, value, "naive datetime; give a timezone (e.g. UTC)")
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field_name, value, "not an ISO-8601 timestamp") from None
        return to_ms(parsed, field_name)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValidationError(field_name, value, "timestamp must be a finite, non-negative number")
        # Heuristic shared with most exchange tooling: below 1e11 it is seconds (before year 5138).
        return int(value * 1000) if value < 1e11 else int(value)
    raise ValidationError(field_name, value, "timestamp must be a datetime, ISO string or epoch number")


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _price(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if type(value) is int:
        value = float(value)
    if type(value) is not float:
        raise ValidationError(name, value, "must be a number")
    if not math.isfinite(value):
        raise ValidationError(name, value, "must be finite")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(name, value, "must be positive")
    return value


class Bar(NamedTuple):
    """One OHLCV bar. ``ts`` is the bar's open time in epoch ms, UTC."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    symbol: str = ""

    @property
    def time(self) -> datetime:
        return ms_to_datetime(self.ts)

    @classmethod
    def parse(
        cls,
        ts: datetime | int | float | str,
        open: Any,
        high: Any,
        low: Any,
        close: Any,
        volume: Any = 0.0,
        symbol: str = "",
    ) -> Bar:
        """Build a bar from untrusted values, refusing anything that is not a real bar."""
        o = _price("open", _num(open, "open"))
        h = _price("high", _num(high, "high"))
        lo = _price("low", _num(low, "low"))
        c = _price("close", _num(close, "close"))
        v = _num(volume, "volume")
        if not math.isfinite(v) or v < 0:
            raise ValidationError("volume", volume, "must be finite and >= 0")
        if h < lo:
            raise ValidationError("high", high, f"high is below low ({low})")
        if not lo <= o <= h:
            raise ValidationError("open", open, f"open is outside [low, high] = [{low}, {high}]")
        if not lo <= c <= h:
            raise ValidationError("close", close, f"close is outside [low, high] = [{low}, {high}]")
        if not isinstance(symbol, str):
            raise ValidationError("symbol", symbol, "must be a string")
        return cls(to_ms(ts), o, h, lo, c, v, symbol)


class Quote(NamedTuple):
    """Top of book. ``last`` is the last trade price when the venue reports one, else the mid."""

    ts: int
    bid: float
    ask: float
    last: float
    symbol: str = ""
    bid_size: float = 0.0
    ask_size: float = 0.0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> float:
        return self.ask - self.bid

    @classmethod
    def parse(
        cls,
        ts: datetime | int | float | str,
        bid: Any,
        ask: Any,
        last: Any = None,
        symbol: str = "",
        bid_size: Any = 0.0,
        ask_size: Any = 0.0,
    ) -> Quote:
        b = _price("bid", _num(bid, "bid"))
        a = _price("ask", _num(ask, "ask"))
        if a < b:
            raise ValidationError("ask", ask, f"ask is below bid ({bid})")
        lst = (b + a) / 2.0 if last is None else _price("last", _num(last, "last"))
        bs, as_ = _num(bid_size, "bid_size"), _num(ask_size, "ask_size")
        for name, val in (("bid_size", bs), ("ask_size", as_)):
            if not math.isfinite(val) or val < 0:
                raise ValidationError(name, val, "must be finite and >= 0")
        return cls(to_ms(ts), b, a, lst, symbol, bs, as_)


def _num(value: Any, name: str) -> float:
    """Accept ints, floats and numeric strings (CSV cells); refuse bools and everything else."""
    if isinstance(value, bool):
        raise ValidationError(name, value, "must be a number, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValidationError(name, value, "must be a number") from None
    raise ValidationError(name, value, "must be a number")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a strategy, script, API client or operator asks for. It becomes an Order only if approved.

    ``stop_loss`` and ``take_profit`` are absolute prices attached as a bracket to an opening order.
    ``reduce_only`` orders may only shrink a position (``ctx.close`` produces them).
    """

    symbol: str
    side: Side
    qty: float
    type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    reduce_only: bool = False
    strategy: str = ""
    source: str = "strategy"
    client_id: str = ""
    tag: str = ""

    def with_(self, **changes: Any) -> OrderRequest:
        return replace(self, **changes)

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side is Side.BUY else -self.qty


_REQUEST_FIELDS = {
    "symbol", "side", "qty", "type", "limit_price", "stop_price", "stop_loss", "take_profit",
    "reduce_only", "tag", "client_id",
}  # fmt: skip
MAX_QTY = 1e12
MAX_TEXT = 64


def order_request_from_untrusted(
    raw: Any, *, strategy: str, source: str, default_symbol: str = ""
) -> OrderRequest:
    """Build an OrderRequest from data we do not trust (a sandbox worker, an API body).

    Exact types only: a subclass of ``float`` or ``str`` is refused, because a subclass can carry
    behaviour (``__eq__``, ``__float__``) that runs later in the kernel.
    """
    if type(raw) is not dict:
        raise ValidationError("order", type(raw).__name__, "must be a plain object")
    unknown = set(raw) - _REQUEST_FIELDS
    if unknown:
        raise ValidationError("order", sorted(map(str, unknown))[:5], "unknown fields")

    def text(name: str, default: str = "") -> str:
        v = raw.get(name, default)
        if v is None:
            return default
        if type(v) is not str or len(v) > MAX_TEXT or not v.isprintable():
            raise ValidationError(name, v, f"must be a printable string of at most {MAX_TEXT} chars")
        return v

    def number(name: str, *, required: bool = False) -> float | None:
        v = raw.get(name)
        if v is None:
            if required:
                raise ValidationError(name, v, "is required")
            return None
        if type(v) is int:
            v = float(v)
        if type(v) is not float:
            raise ValidationError(name, v, "must be a number")
        if not math.isfinite(v) or v <= 0 or v > MAX_QTY:
            raise ValidationError(name, v, f"must be finite, > 0 and <= {MAX_QTY:g}")
        return v

    symbol = text("symbol", default_symbol)
    if not symbol:
        raise ValidationError("symbol", symbol, "is required")
    side_raw = raw.get("side")
    if type(side_raw) is not str or side_raw.lower() not in ("buy", "sell"):
        raise ValidationError("side", side_raw, "must be 'buy' or 'sell'")
    type_raw = raw.get("type", "market")
    if type(type_raw) is not str or type_raw.lower() not in ("market", "limit", "stop"):
        raise ValidationError("type", type_raw, "must be 'market', 'limit' or 'stop'")
    otype = OrderType(type_raw.lower())
    reduce_only = raw.get("reduce_only", False)
    if type(reduce_only) is not bool:
        raise ValidationError("reduce_only", reduce_only, "must be true or false")
    qty = number("qty", required=True)
    assert qty is not None
    limit_price = number("limit_price")
    stop_price = number("stop_price")
    if otype is OrderType.LIMIT and limit_price is None:
        raise ValidationError("limit_price", None, "a limit order needs limit_price")
    if otype is OrderType.STOP and stop_price is None:
        raise ValidationError("stop_price", None, "a stop order needs stop_price")
    return OrderRequest(
        symbol=symbol,
        side=Side(side_raw.lower()),
        qty=qty,
        type=otype,
        limit_price=limit_price,
        stop_price=stop_price,
        stop_loss=number("stop_loss"),
        take_profit=number("take_profit"),
        reduce_only=reduce_only,
        strategy=strategy,
        source=source,
        client_id=text("client_id"),
        tag=text("tag"),
    )


@dataclass(slots=True)
class Order:
    """An approved request in flight at a broker. Mutable: status and fills change over its life."""

    id: str
    request: OrderRequest
    status: OrderStatus = OrderStatus.PENDING
    filled_qty: float = 0.0
    avg_fill_price: float = 0.0
    created_ts: int = 0
    updated_ts: int = 0
    broker_order_id: str = ""
    reason: str = ""
    parent_id: str = ""  # set on bracket children (stop-loss / take-profit legs)
    role: str = "entry"  # entry | stop_loss | take_profit | close

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def side(self) -> Side:
        return self.request.side

    @property
    def remaining(self) -> float:
        return max(self.request.qty - self.filled_qty, 0.0)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``id`` is unique per venue so a replayed fill is recognised and not counted twice."""

    id: str
    order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float = 0.0
    ts: int = 0
    strategy: str = ""
    role: str = "entry"

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side is Side.BUY else -self.qty


@dataclass(frozen=True, slots=True)
class Position:
    """A net position in one symbol. ``qty`` is signed; ``avg_price`` is the average entry price."""

    symbol: str
    qty: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    strategy: str = ""

    @property
    def is_flat(self) -> bool:
        return abs(self.qty) < 1e-12

    @property
    def side(self) -> Side | None:
        if self.is_flat:
            return None
        return Side.BUY if self.qty > 0 else Side.SELL

    def unrealized(self, price: float) -> float:
        return (price - self.avg_price) * self.qty

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "qty": self.qty,
            "avg_price": self.avg_price,
            "realized_pnl": self.realized_pnl,
            "strategy": self.strategy,
        }


@dataclass(frozen=True, slots=True)
class Account:
    """The account as the broker reports it. ``margin_level`` is equity / margin_used in percent."""

    cash: float
    equity: float
    margin_used: float = 0.0
    free_margin: float = 0.0
    currency: str = "USD"
    leverage: float = 1.0

    @property
    def margin_level(self) -> float:
        return math.inf if self.margin_used <= 0 else self.equity / self.margin_used * 100.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cash": self.cash,
            "equity": self.equity,
            "margin_used": self.margin_used,
            "free_margin": self.free_margin,
            "currency": self.currency,
            "leverage": self.leverage,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The risk gate's answer. A denial is a value, never an exception and never a silent drop.

    ``code`` is a stable reason code (``ok`` when approved, e.g. ``halted``, ``stop_loss_missing``,
    ``max_order_qty``); ``rule`` names the rule that decided; ``details`` holds the values it compared.
    ``request`` is the request as approved (a rule may attach a default stop-loss).
    """

    approved: bool
    code: str
    message: str
    request: OrderRequest
    rule: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    order_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "code": self.code,
            "message": self.message,
            "rule": self.rule,
            "details": self.details,
            "order_id": self.order_id,
        }
