"""The paper broker: a simulated venue that fills against the kernel's own market data.

* Orders placed while bar N is processed fill at the earliest on bar N+1: market orders at its open,
  limit and stop orders when its range crosses their price (at the open if it gaps through).
* Brackets: an entry with ``stop_loss``/``take_profit`` gets two reduce-only children once filled,
  one-cancels-other. If a bar touches both, the stop is assumed first (the conservative reading).
* Slippage and fees are small replaceable models (``SpreadSlippage``, ``PercentFee``...). The default
  slippage is half the bid-ask spread: from the quote when there is one, else ``spread_bps`` of price.
* Fill model (replaceable): by default a touched limit order fills whole (``FullFill``). With
  ``VolumeParticipationFill(participation)`` (options ``partial_fills``/``participation``) the limit
  orders of a symbol together fill at most ``participation * bar.volume`` per bar; the rest keeps
  working (``PARTIALLY_FILLED``), each part is its own Fill, and bracket legs grow with each part.
  A bar with zero volume fills no limit order. Quote-driven fills (live) are not capped.
* Latency (``latency_ms``): an order becomes eligible to fill only at the first bar or quote with
  ``ts >= order.created_ts + latency_ms``. The kernel stamps ``created_ts`` with its clock, which in a
  backtest is the decision bar's timestamp (its open); bracket legs rest at the venue and get none.
* Cash, positions and equity add up: ``equity == cash + sum(qty * last price)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

from stratkernel import hookimpl
from stratkernel.core.broker import BrokerEvents, Preflight, SymbolSpec
from stratkernel.core.errors import ConfigError
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


class SlippageModel(Protocol):
    def price(
        self, side: Side, reference: float, quote: Quote | None, qty: float, bar: Bar | None
    ) -> float: ...


class FeeModel(Protocol):
    def fee(self, qty: float, price: float) -> float: ...


@dataclass(frozen=True)
class SpreadSlippage:
    """Pay half the spread: from the live quote when there is one, else ``spread_bps`` of the price."""

    spread_bps: float = 2.0

    def price(self, side: Side, reference: float, quote: Quote | None, qty: float, bar: Bar | None) -> float:
        half = (quote.ask - quote.bid) / 2.0 if quote is not None else reference * self.spread_bps / 20_000.0
        return reference + half if side is Side.BUY else max(reference - half, 1e-12)


@dataclass(frozen=True)
class VolumeParticipationSlippage:
    """Spread slippage plus an impact that grows with the order's share of the bar's volume."""

    spread: SpreadSlippage = SpreadSlippage()
    impact_bps_at_full_volume: float = 100.0

    def price(self, side: Side, reference: float, quote: Quote | None, qty: float, bar: Bar | None) -> float:
        p = self.spread.price(side, reference, quote, qty, bar)
        if bar is None or bar.volume <= 0:
            return p
        share = min(qty / bar.volume, 1.0)
        impact = reference * self.impact_bps_at_full_volume / 10_000.0 * share
        return p + impact if side is Side.BUY else max(p - impact, 1e-12)


@dataclass(frozen=True)
class PercentFee:
    percent: float = 0.0

    def fee(self, qty: float, price: float) -> float:
        return abs(qty) * price * self.percent / 100.0


@dataclass(frozen=True)
class PerLotFee:
    per_lot: float = 0.0
    lot_size: float = 1.0

    def fee(self, qty: float, price: float) -> float:
        return abs(qty) / self.lot_size * self.per_lot


class FillModel(Protocol):
    def bar_capacity(self, bar: Bar) -> float:
        """The most quantity this bar can fill across the symbol's limit orders (``inf``: no cap)."""
        ...


@dataclass(frozen=True)
class FullFill:
    """A limit order whose price the bar reaches fills whole (the classic backtest assumption)."""

    def bar_capacity(self, bar: Bar) -> float:
        return math.inf


@dataclass(frozen=True)
class VolumeParticipationFill:
    """Limit orders take at most ``participation`` of each bar's traded volume (shared by the
    symbol's limit orders in submission order); what is left keeps working for later bars."""

    participation: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.participation, bool) or not 0.0 < self.participation <= 1.0:
            raise ConfigError(
                "broker.options.participation", f"must be in (0, 1], got {self.participation!r}"
            )

    def bar_capacity(self, bar: Bar) -> float:
        return max(bar.volume, 0.0) * self.participation


_EPS = 1e-12
_LEG_ROLES = ("stop_loss", "take_profit")


class PaperBroker:
    """A simulated broker. See the module docstring for the fill rules."""

    name = "paper"

    def __init__(
        self,
        events: BrokerEvents,
        *,
        cash: float = 100_000.0,
        currency: str = "USD",
        slippage: SlippageModel | None = None,
        fees: FeeModel | None = None,
        symbols: list[str] | None = None,
        min_qty: float = 0.0,
        qty_step: float = 0.0,
        fill_model: FillModel | None = None,
        latency_ms: int = 0,
    ) -> None:
        if type(latency_ms) is not int or latency_ms < 0:
            raise ConfigError("broker.options.latency_ms", f"must be an integer >= 0, got {latency_ms!r}")
        self.events = events
        self.fill_model: FillModel = fill_model or FullFill()
        self.latency_ms = latency_ms
        # limit-order quantity already filled in the current bar, per symbol: (bar ts, qty)
        self._bar_used: dict[str, tuple[int, float]] = {}
        self.cash = cash
        self.currency = currency
        self.slippage = slippage or SpreadSlippage()
        self.fees = fees or PercentFee(0.0)
        self._symbols = set(symbols or [])
        self._spec_defaults = (min_qty, qty_step)
        self._working: list[Order] = []
        self._orders: dict[str, Order] = {}
        self._positions: dict[tuple[str, str], list[float]] = {}  # (strategy, symbol) -> [qty, avg]
        self._last: dict[str, float] = {}
        self._quotes: dict[str, Quote] = {}
        self._fill_n = 0
        self._bar_ts_map: dict[str, int] = {}
        # per symbol: (trigger if low <= lo, trigger if high >= hi); a market order makes both always true.
        # Recomputed when the working set changes, so a bar with nothing to fill costs one comparison.
        self._thresholds: dict[str, tuple[float, float]] = {}
        self.trading_allowed = True

    # -- lifecycle ------------------------------------------------------------------------------
    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def preflight(self) -> Preflight:
        return Preflight(
            self.trading_allowed, "" if self.trading_allowed else "paper trading disabled by operator"
        )

    def symbol_spec(self, symbol: str) -> SymbolSpec | None:
        if self._symbols and symbol not in self._symbols:
            return None
        return SymbolSpec(symbol, qty_step=self._spec_defaults[1], min_qty=self._spec_defaults[0])

    def restore(self, positions: list[Position], orders: list[Order], cash: float) -> None:
        self.cash = cash
        self._positions = {(p.strategy, p.symbol): [p.qty, p.avg_price] for p in positions if not p.is_flat}
        self._working = [o for o in orders if o.status.is_open]
        self._orders = {o.id: o for o in self._working}
        self._recompute()

    # -- orders ---------------------------------------------------------------------------------
    async def submit(self, order: Order) -> None:
        if order.id in self._orders:
            return  # idempotent by client order id: a retried submit never doubles an order
        order.status = OrderStatus.ACCEPTED
        self._orders[order.id] = order
        self._working.append(order)
        self._recompute()
        self.events.on_order_update(order)
        quote = self._quotes.get(order.symbol)
        if (
            order.request.type is OrderType.MARKET
            and quote is not None
            and quote.ts >= self._bar_ts(order.symbol)
            and self._eligible(order, quote.ts)
        ):
            # live with quotes: a market order fills against the current quote
            self._try_fill_quote(order, quote)
            self._working = [o for o in self._working if o.status.is_open]
            self._recompute()

    async def cancel(self, order_id: str) -> None:
        order = self._orders.get(order_id)
        if order is None or not order.status.is_open:
            return
        order.status = OrderStatus.CANCELLED
        self._working = [o for o in self._working if o is not order]
        self._recompute()
        self.events.on_order_update(order)

    async def open_orders(self) -> list[Order]:
        return [o for o in self._working if o.status.is_open]

    async def positions(self) -> list[Position]:
        net: dict[str, list[float]] = {}
        for (_strategy, symbol), (qty, avg) in self._positions.items():
            if abs(qty) < _EPS:
                continue
            cur = net.setdefault(symbol, [0.0, 0.0])
            total = cur[0] + qty
            cur[1] = (cur[1] * cur[0] + avg * qty) / total if abs(total) > _EPS else 0.0
            cur[0] = total
        return [Position(s, q, a) for s, (q, a) in net.items() if abs(q) > _EPS]

    async def account(self) -> Account:
        value = 0.0
        gross = 0.0
        for (_s, symbol), (qty, avg) in self._positions.items():
            px = self._last.get(symbol, avg)
            value += qty * px
            gross += abs(qty) * px
        equity = self.cash + value
        return Account(self.cash, equity, gross, equity - gross, self.currency, 1.0)

    # -- market data ----------------------------------------------------------------------------
    def _bar_ts(self, symbol: str) -> int:
        return self._bar_ts_map.get(symbol, -1)

    def _recompute(self) -> None:
        th: dict[str, tuple[float, float]] = {}
        inf = float("inf")
        for o in self._working:
            if not o.status.is_open:
                continue
            r = o.request
            lo, hi = th.get(r.symbol, (-inf, inf))
            if r.type is OrderType.MARKET:
                lo, hi = inf, -inf
            else:
                price = r.limit_price if r.type is OrderType.LIMIT else r.stop_price
                assert price is not None
                if (r.side is Side.BUY) == (r.type is OrderType.LIMIT):
                    lo = max(lo, price)  # buy limit / sell stop: triggers when the low reaches it
                else:
                    hi = min(hi, price)  # sell limit / buy stop: triggers when the high reaches it
            th[r.symbol] = (lo, hi)
        self._thresholds = th

    def on_market(self, data: Bar | Quote) -> None:
        if type(data) is Bar:
            th = self._thresholds.get(data.symbol)
            if th is not None and (data.low <= th[0] or data.high >= th[1]):
                self._on_bar(data)
            self._last[data.symbol] = data.close  # after fills: the bar ends at its close
        else:
            assert isinstance(data, Quote)
            self._quotes[data.symbol] = data
            self._last[data.symbol] = data.last
            if self._working:
                for order in list(self._working):
                    if order.status.is_open and order.symbol == data.symbol:
                        self._try_fill_quote(order, data)
                self._working = [o for o in self._working if o.status.is_open]
                self._recompute()

    def _on_bar(self, bar: Bar) -> None:
        sym = bar.symbol
        self._bar_ts_map[sym] = bar.ts
        # entries first (in submission order), then protective legs, so a bracket placed by an
        # entry filled at this bar's open is already live for the rest of the bar
        for order in [
            o for o in self._working if o.symbol == sym and o.role not in ("stop_loss", "take_profit")
        ]:
            if order.status.is_open:
                self._try_fill_bar(order, bar)
        legs = [
            o
            for o in self._working
            if o.symbol == sym and o.role in ("stop_loss", "take_profit") and o.status.is_open
        ]
        # stop before take-profit when both could trigger in this bar
        legs.sort(key=lambda o: 0 if o.role == "stop_loss" else 1)
        for order in legs:
            if order.status.is_open:
                self._try_fill_bar(order, bar)
        self._working = [o for o in self._working if o.status.is_open]
        self._recompute()

    def _eligible(self, order: Order, ts: int) -> bool:
        """Decision-to-fill latency: bracket legs already rest at the venue, everything else waits."""
        return self.latency_ms == 0 or order.role in _LEG_ROLES or ts >= order.created_ts + self.latency_ms

    def _limit_qty(self, order: Order, bar: Bar) -> float:
        """How much of a touched limit order this bar can fill under the fill model (0: none)."""
        want = order.remaining
        cap = self.fill_model.bar_capacity(bar)
        if cap == math.inf:
            return want
        ts, used = self._bar_used.get(bar.symbol, (bar.ts, 0.0))
        if ts != bar.ts:
            used = 0.0
        qty = min(want, cap - used)
        step = self._spec_defaults[1]
        if step > 0 and qty < want:
            qty = math.floor(qty / step + 1e-9) * step  # a part fill is a whole number of steps
        return qty if qty > _EPS else 0.0

    def _try_fill_bar(self, order: Order, bar: Bar) -> None:
        req = order.request
        side = req.side
        kind = req.type
        if not self._eligible(order, bar.ts):
            return
        if kind is OrderType.MARKET:
            self._fill(order, self.slippage.price(side, bar.open, None, order.remaining, bar), bar.ts, bar)
        elif kind is OrderType.LIMIT:
            lim = req.limit_price
            assert lim is not None
            touched = bar.low <= lim if side is Side.BUY else bar.high >= lim
            if touched:
                qty = self._limit_qty(order, bar)
                if qty > 0:
                    price = min(bar.open, lim) if side is Side.BUY else max(bar.open, lim)
                    filled = self._fill(order, price, bar.ts, bar, qty)
                    ts, used = self._bar_used.get(bar.symbol, (bar.ts, 0.0))
                    self._bar_used[bar.symbol] = (bar.ts, (used if ts == bar.ts else 0.0) + filled)
        else:
            stop = req.stop_price
            assert stop is not None
            if side is Side.BUY and bar.high >= stop:
                self._fill(
                    order,
                    self.slippage.price(side, max(bar.open, stop), None, order.remaining, bar),
                    bar.ts,
                    bar,
                )
            elif side is Side.SELL and bar.low <= stop:
                self._fill(
                    order,
                    self.slippage.price(side, min(bar.open, stop), None, order.remaining, bar),
                    bar.ts,
                    bar,
                )

    def _try_fill_quote(self, order: Order, q: Quote) -> None:
        req = order.request
        if not self._eligible(order, q.ts):
            return
        buy = req.side is Side.BUY
        touch = q.ask if buy else q.bid
        if req.type is OrderType.MARKET:
            self._fill(order, touch, q.ts, None)
        elif req.type is OrderType.LIMIT:
            lim = req.limit_price
            assert lim is not None
            if (buy and q.ask <= lim) or (not buy and q.bid >= lim):
                self._fill(order, touch, q.ts, None)
        else:
            stop = req.stop_price
            assert stop is not None
            if (buy and q.ask >= stop) or (not buy and q.bid <= stop):
                self._fill(order, touch, q.ts, None)

    def _fill(self, order: Order, price: float, ts: int, bar: Bar | None, part: float | None = None) -> float:
        """Fill ``part`` of the order (default: all that remains); returns the quantity filled."""
        req = order.request
        key = (req.strategy, req.symbol)
        pos = self._positions.get(key)
        qty = order.remaining if part is None else min(part, order.remaining)
        complete = part is None or qty >= order.remaining - _EPS
        if req.reduce_only:
            held = 0.0 if pos is None else pos[0]
            reducible = (
                abs(held)
                if (held > 0 and req.side is Side.SELL) or (held < 0 and req.side is Side.BUY)
                else 0.0
            )
            if reducible <= qty:
                complete = True  # this fill flattens the position: nothing is left to reduce afterwards
            qty = min(qty, reducible)
            if qty <= _EPS:
                order.status = OrderStatus.CANCELLED
                order.reason = "reduce-only order had nothing to reduce"
                self.events.on_order_update(order)
                return 0.0
        fee = self.fees.fee(qty, price)
        signed = qty if req.side is Side.BUY else -qty
        self.cash -= signed * price + fee
        if pos is None:
            pos = self._positions[key] = [0.0, 0.0]
        old = pos[0]
        new = old + signed
        if abs(old) < _EPS or (old > 0) == (signed > 0):
            pos[1] = (pos[1] * abs(old) + price * abs(signed)) / abs(new) if abs(new) > _EPS else 0.0
        elif abs(new) > _EPS and (new > 0) != (old > 0):
            pos[1] = price
        pos[0] = 0.0 if abs(new) < _EPS else new
        if pos[0] == 0.0:
            pos[1] = 0.0
        self._last[req.symbol] = price
        prev_filled = order.filled_qty
        order.filled_qty = prev_filled + qty
        order.avg_fill_price = (order.avg_fill_price * prev_filled + price * qty) / order.filled_qty
        order.updated_ts = ts
        order.status = OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED
        self._fill_n += 1
        fill = Fill(
            f"{order.id}-f{self._fill_n}",
            order.id,
            req.symbol,
            req.side,
            qty,
            price,
            fee,
            ts,
            req.strategy,
            order.role,
        )
        if not complete:
            self.events.on_order_update(order)  # PARTIALLY_FILLED: the rest keeps working
        self.events.on_fill(fill)
        if order.role in _LEG_ROLES and order.parent_id:
            if complete:
                self._cancel_siblings(order)
        elif order.role == "entry" and (req.stop_loss is not None or req.take_profit is not None):
            self._open_bracket(order, qty, ts)
        if pos[0] == 0.0:
            # flat: protective legs of this strategy/symbol have nothing left to protect
            for o in self._working:
                if (
                    o.status.is_open
                    and o.role in ("stop_loss", "take_profit")
                    and o.request.strategy == req.strategy
                    and o.symbol == req.symbol
                ):
                    o.status = OrderStatus.CANCELLED
                    o.reason = "position closed"
                    self.events.on_order_update(o)
        return qty

    def _open_bracket(self, parent: Order, qty: float, ts: int) -> None:
        """Protect ``qty`` just filled of ``parent``: grow its working legs by ``qty``, or open them."""
        req = parent.request
        exit_side = req.side.opposite
        grown = set()
        for o in self._working:
            if o.parent_id == parent.id and o.role in _LEG_ROLES and o.status.is_open and o.role not in grown:
                o.request = replace(o.request, qty=o.request.qty + qty)
                o.updated_ts = ts
                grown.add(o.role)
                self.events.on_order_update(o)
        legs: list[Order] = []
        if req.stop_loss is not None and "stop_loss" not in grown:
            legs.append(
                Order(
                    f"{parent.id}.sl",
                    OrderRequest(
                        req.symbol,
                        exit_side,
                        qty,
                        OrderType.STOP,
                        stop_price=req.stop_loss,
                        reduce_only=True,
                        strategy=req.strategy,
                        source=req.source,
                    ),
                    OrderStatus.ACCEPTED,
                    created_ts=ts,
                    updated_ts=ts,
                    parent_id=parent.id,
                    role="stop_loss",
                )
            )
        if req.take_profit is not None and "take_profit" not in grown:
            legs.append(
                Order(
                    f"{parent.id}.tp",
                    OrderRequest(
                        req.symbol,
                        exit_side,
                        qty,
                        OrderType.LIMIT,
                        limit_price=req.take_profit,
                        reduce_only=True,
                        strategy=req.strategy,
                        source=req.source,
                    ),
                    OrderStatus.ACCEPTED,
                    created_ts=ts,
                    updated_ts=ts,
                    parent_id=parent.id,
                    role="take_profit",
                )
            )
        for leg in legs:
            if leg.id in self._orders:  # an earlier leg of this entry is done: the new one needs its own id
                n = 2
                while f"{leg.id}{n}" in self._orders:
                    n += 1
                leg.id = f"{leg.id}{n}"
            self._orders[leg.id] = leg
            self._working.append(leg)
            self.events.on_order_update(leg)
        self._recompute()

    def _cancel_siblings(self, leg: Order) -> None:
        for o in self._working:
            if o is not leg and o.parent_id == leg.parent_id and o.status.is_open:
                o.status = OrderStatus.CANCELLED
                o.reason = f"one-cancels-other: {leg.role} filled"
                self.events.on_order_update(o)

    def working_triggers(self, strategy: str) -> list[tuple[Side, OrderType, float | None]]:
        """(side, type, price) of this strategy's working orders: lets a backtest know how far ahead a
        sandboxed script can run before one of them could fill."""
        out = []
        for o in self._working:
            if o.status.is_open and o.request.strategy == strategy:
                r = o.request
                out.append((r.side, r.type, r.limit_price if r.type is OrderType.LIMIT else r.stop_price))
        return out


def _factory(config: dict[str, Any], events: BrokerEvents) -> PaperBroker:
    opts = dict(config)
    unknown = set(opts) - {
        "cash",
        "currency",
        "spread_bps",
        "fee_percent",
        "fee_per_lot",
        "lot_size",
        "slippage",
        "impact_bps",
        "symbols",
        "min_qty",
        "qty_step",
        "partial_fills",
        "participation",
        "latency_ms",
    }
    if unknown:
        raise ConfigError("broker.options", f"unknown paper broker options {sorted(unknown)}")
    spread = SpreadSlippage(float(opts.get("spread_bps", 2.0)))
    slip: SlippageModel = spread
    if opts.get("slippage", "spread") == "volume":
        slip = VolumeParticipationSlippage(spread, float(opts.get("impact_bps", 100.0)))
    elif opts.get("slippage", "spread") != "spread":
        raise ConfigError("broker.options.slippage", "must be 'spread' or 'volume'")
    fees: FeeModel = PercentFee(float(opts.get("fee_percent", 0.0)))
    if "fee_per_lot" in opts:
        fees = PerLotFee(float(opts["fee_per_lot"]), float(opts.get("lot_size", 1.0)))
    cash = float(opts.get("cash", 100_000.0))
    if not math.isfinite(cash) or cash <= 0:
        raise ConfigError("broker.options.cash", "must be a positive number")
    partial = opts.get("partial_fills", "participation" in opts)
    if not isinstance(partial, bool):
        raise ConfigError("broker.options.partial_fills", f"must be true or false, got {partial!r}")
    fill_model: FillModel = FullFill()
    if partial:
        part = opts.get("participation", 0.1)
        if isinstance(part, bool) or not isinstance(part, int | float) or not 0.0 < part <= 1.0:
            raise ConfigError(
                "broker.options.participation",
                f"must be a share of bar volume in (0, 1], e.g. 0.1; got {part!r}",
            )
        fill_model = VolumeParticipationFill(float(part))
    elif "participation" in opts:
        raise ConfigError("broker.options.participation", "needs partial_fills = true")
    latency = opts.get("latency_ms", 0)
    if type(latency) is not int or not 0 <= latency <= 86_400_000:
        raise ConfigError(
            "broker.options.latency_ms", f"must be an integer from 0 to 86400000 (ms), got {latency!r}"
        )
    return PaperBroker(
        events,
        cash=cash,
        currency=str(opts.get("currency", "USD")),
        slippage=slip,
        fees=fees,
        symbols=opts.get("symbols"),
        min_qty=float(opts.get("min_qty", 0.0)),
        qty_step=float(opts.get("qty_step", 0.0)),
        fill_model=fill_model,
        latency_ms=latency,
    )


@hookimpl
def register_brokers(register: Any) -> None:
    register(
        "paper",
        _factory,
        description="Simulated broker filling against the kernel's market data",
        simulated=True,
    )
