"""Every rule of the risk gate (issue 3), each cheap, each denying with a stable reason code.

A rule has ``name``, ``stage`` (validation → state → order → portfolio → loss) and
``check(req, view) -> Decision | None``. ``None`` passes; an approved Decision amends the request
(the default stop-loss) and the gate goes on with it; a denied one stops the gate.

Reducing orders (``reduce_only`` or shrinking the position the order is booked against) never pass
through the size, exposure, margin, sizing, loss or cooldown checks: they cannot add risk, and a kill
switch must always be able to flatten. They still pass validation, the trading state (HALTED stops
everything new), the price collar and the rate limits.

Stateful rules read the :class:`~stratkernel.core.risk.RiskManager`'s memory (loss tracker,
cooldowns, rate windows, cached broker positions); they never mutate the kernel, except the loss
rule, which trips the configured halt the moment an order sees equity beyond a limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .gateway import GateView, deny, reduces_position
from .model import Account, Decision, OrderRequest, OrderType, Position, Side

if TYPE_CHECKING:
    from .broker import SymbolSpec
    from .risk import RiskManager
    from .risk_state import PendingLedger, RateState


def is_opening(req: OrderRequest, view: GateView) -> bool:
    """True when the order adds to (or opens, or flips) the position it is booked against."""
    if req.reduce_only:
        return False
    pos = view.strategy_position(req.strategy, req.symbol) if req.strategy else view.position(req.symbol)
    return not reduces_position(req, pos)


def entry_price(req: OrderRequest, view: GateView) -> float | None:
    """The price the order is expected to execute at: its own limit/stop price, else the last price."""
    return req.limit_price or req.stop_price or view.last_price(req.symbol)


class OrderFacts:
    """What several rules need to know about one request, computed once per decision.

    The gate's first rule (:class:`PrepareRule`) makes a fresh one for every decision; later rules get
    it through :meth:`FactsCache.get`, which recomputes if a rule amended the request in a way that
    matters (anything but its stop-loss/take-profit). Account values are computed lazily.
    """

    __slots__ = (
        "_account",
        "_cache",
        "_equity",
        "_gross",
        "_spec",
        "_spec_done",
        "entry",
        "net",
        "now",
        "opening",
        "req",
        "view",
    )

    def __init__(self, req: OrderRequest, view: GateView, cache: FactsCache) -> None:
        self._cache = cache
        self.req = req
        self.view = view
        sym = req.symbol
        self.now = view.now_ms()
        self.net = cache.net_qty(sym, view)
        if req.reduce_only:
            self.opening = False
        else:
            pos = view.strategy_position(req.strategy, sym) if req.strategy else Position(sym, self.net)
            self.opening = not reduces_position(req, pos)
        self.entry: float | None = req.limit_price or req.stop_price or view.last_price(sym)
        self._spec_done = False
        self._spec: SymbolSpec | None = None
        self._account: Account | None = None
        self._equity: Any = cache.equity_fn  # the function until first use, then the value
        self._gross: Any = cache.gross_fn

    def same_order(self, req: OrderRequest) -> bool:
        r = self.req
        return (
            r.symbol == req.symbol
            and r.side is req.side
            and r.qty == req.qty
            and r.type is req.type
            and r.limit_price == req.limit_price
            and r.stop_price == req.stop_price
            and r.reduce_only == req.reduce_only
            and r.strategy == req.strategy
        )

    def spec(self) -> SymbolSpec | None:
        if not self._spec_done:
            self._spec = self._cache.spec(self.req.symbol, self.view)
            self._spec_done = True
        return self._spec

    def contract_size(self) -> float:
        spec = self.spec()
        return 1.0 if spec is None else spec.contract_size

    def account(self) -> Account:
        if self._account is None:
            self._account = self.view.account()
        return self._account

    def equity(self) -> float:
        e = self._equity
        if callable(e):
            e = self._equity = self._account.equity if self._account is not None else e()
        return float(e)

    def gross(self) -> float:
        g = self._gross
        if callable(g):
            g = self._gross = g()
        return float(g)


class FactsCache:
    """Holds the current decision's :class:`OrderFacts` (one per gate; owned by the RiskManager), and
    the venue's symbol specs, which are static venue data: read once per symbol and dropped by
    :meth:`clear_specs` (the risk manager does so every minute live and whenever the rules are rebuilt).

    Net positions per symbol and the number of open positions change only with fills, so they are
    cached too and dropped by :meth:`positions_changed`, which the risk manager calls for every fill
    the kernel applies.
    """

    __slots__ = ("_nets", "_open_count", "cur", "equity_fn", "gross_fn", "specs")

    def __init__(self, equity_fn: Any, gross_fn: Any) -> None:
        self.cur: OrderFacts | None = None
        self.equity_fn = equity_fn
        self.gross_fn = gross_fn
        self.specs: dict[str, SymbolSpec | None] = {}
        self._nets: dict[str, float] = {}
        self._open_count: int | None = None

    def net_qty(self, symbol: str, view: GateView) -> float:
        q = self._nets.get(symbol)
        if q is None:
            q = self._nets[symbol] = view.position(symbol).qty
        return q

    def open_positions(self, view: GateView) -> int:
        n = self._open_count
        if n is None:
            n = self._open_count = view.broker_open_positions()
        return n

    def positions_changed(self) -> None:
        self._nets = {}
        self._open_count = None

    def spec(self, symbol: str, view: GateView) -> SymbolSpec | None:
        specs = self.specs
        if symbol in specs:
            return specs[symbol]
        spec = specs[symbol] = view.symbol_spec(symbol)
        return spec

    def clear_specs(self) -> None:
        self.specs = {}

    def fresh(self, req: OrderRequest, view: GateView) -> OrderFacts:
        f = self.cur = OrderFacts(req, view, self)
        return f

    def get(self, req: OrderRequest, view: GateView) -> OrderFacts:
        f = self.cur
        if f is not None and (f.req is req or f.same_order(req)):
            f.req = req
            return f
        return self.fresh(req, view)


@dataclass
class PrepareRule:
    """First rule of the gate: computes the decision's facts. Never denies."""

    facts: FactsCache
    name: str = "prepare"
    stage: str = "validation"

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        self.facts.fresh(req, view)
        return None


@dataclass
class ValidateRule:
    """Finite numbers, a known symbol, prices consistent with the order type, venue step sizes.
    (The gateway's basic rule, reading the symbol spec from the shared facts.)"""

    facts: FactsCache
    name: str = "validate"
    stage: str = "validation"

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        if not view.known_symbol(req.symbol):
            return deny(req, self.name, "unknown_symbol", f"unknown symbol {req.symbol!r}", symbol=req.symbol)
        for fname, v in (
            ("qty", req.qty),
            ("limit_price", req.limit_price),
            ("stop_price", req.stop_price),
            ("stop_loss", req.stop_loss),
            ("take_profit", req.take_profit),
        ):
            if v is not None and not (v > 0 and v < math.inf):  # also refuses NaN
                return deny(
                    req, self.name, "invalid_number", f"{fname} must be finite and > 0", field=fname, value=v
                )
        if req.type is OrderType.LIMIT and req.limit_price is None:
            return deny(req, self.name, "invalid_order", "a limit order needs limit_price")
        if req.type is OrderType.STOP and req.stop_price is None:
            return deny(req, self.name, "invalid_order", "a stop order needs stop_price")
        spec = self.facts.get(req, view).spec()
        if spec is not None:
            if spec.min_qty and req.qty < spec.min_qty - 1e-12:
                return deny(
                    req,
                    self.name,
                    "below_min_qty",
                    f"qty {req.qty} < venue minimum {spec.min_qty}",
                    qty=req.qty,
                    min_qty=spec.min_qty,
                )
            if spec.qty_step:
                steps = req.qty / spec.qty_step
                if abs(steps - round(steps)) > 1e-6:
                    return deny(
                        req,
                        self.name,
                        "qty_step",
                        f"qty {req.qty} is not a multiple of {spec.qty_step}",
                        qty=req.qty,
                        step=spec.qty_step,
                    )
        return None


def position_size(
    equity: float,
    entry: float,
    stop: float,
    risk_pct: float,
    *,
    contract_size: float = 1.0,
    kelly: float | None = None,
    qty_step: float = 0.0,
) -> float:
    """Quantity that loses at most ``risk_pct`` % of ``equity`` if the stop is hit.

    ``kelly`` (a fraction from :func:`kelly_fraction`, e.g. half-Kelly) caps the risked percentage:
    the smaller of ``risk_pct`` and ``kelly * 100`` is used. ``qty_step`` rounds down to the venue step.
    """
    for name, v in (("equity", equity), ("entry", entry), ("stop", stop), ("risk_pct", risk_pct)):
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    distance = abs(entry - stop) * contract_size
    if distance == 0:
        raise ValueError("stop must differ from entry")
    pct = risk_pct if kelly is None else min(risk_pct, max(kelly, 0.0) * 100.0)
    qty = equity * pct / 100.0 / distance
    if qty_step > 0:
        qty = math.floor(qty / qty_step + 1e-9) * qty_step
    return qty


def kelly_fraction(win_rate: float, payoff_ratio: float, *, scale: float = 1.0) -> float:
    """Kelly fraction ``W - (1 - W) / R`` times ``scale`` (0.5 = half-Kelly), never below 0."""
    if not 0.0 <= win_rate <= 1.0:
        raise ValueError(f"win_rate must be in [0, 1], got {win_rate!r}")
    if not math.isfinite(payoff_ratio) or payoff_ratio <= 0:
        raise ValueError(f"payoff_ratio must be finite and > 0, got {payoff_ratio!r}")
    return max(0.0, (win_rate - (1.0 - win_rate) / payoff_ratio) * scale)


# -- order stage -------------------------------------------------------------------------------


@dataclass
class StopLossRule:
    """Opening orders carry a stop-loss on the right side of the entry, at least the venue's minimum
    stop distance away; a take-profit, when given, is on the other side. With ``default`` set to
    ``"fixed"`` or ``"atr"`` a missing stop is attached instead of refused."""

    facts: FactsCache
    name: str = "stop_loss"
    stage: str = "order"
    required: bool = True
    default: str = "none"  # none | fixed | atr
    fixed_distance: float = 0.0
    atr_multiple: float = 2.0
    atr_period: int = 14

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        f = self.facts.cur
        if f is None or f.req is not req:
            f = self.facts.get(req, view)
        if not f.opening:
            return None
        entry = f.entry
        amended: Decision | None = None
        if req.stop_loss is None:
            if self.default == "none":
                if self.required:
                    return deny(
                        req, self.name, "stop_loss_missing", "an opening order must carry a stop_loss"
                    )
                return self._check_tp(req, entry)
            if entry is None:
                return deny(
                    req,
                    self.name,
                    "stop_loss_missing",
                    "no stop_loss given and no price to place the default stop from",
                )
            if self.default == "atr":
                atr = view.indicator_value(req.symbol, "atr", self.atr_period)
                if atr is None or not atr > 0:
                    return deny(
                        req,
                        self.name,
                        "stop_loss_missing",
                        f"no stop_loss given and ATR({self.atr_period}) is not available yet",
                    )
                distance = atr * self.atr_multiple
            else:
                distance = self.fixed_distance
            spec = f.spec()
            if spec is not None and spec.min_stop_distance > distance:
                distance = spec.min_stop_distance
            stop = entry - distance if req.side is Side.BUY else entry + distance
            if not stop > 0:
                return deny(
                    req,
                    self.name,
                    "stop_loss_missing",
                    f"the default stop ({self.default}, distance {distance}) would be at {stop}",
                    entry=entry,
                    distance=distance,
                )
            req = req.with_(stop_loss=stop)
            f.req = req
            amended = Decision(
                True,
                "default_stop",
                f"attached default stop_loss {stop:.8g}",
                req,
                self.name,
                {"stop_loss": stop, "distance": distance, "mode": self.default},
            )
        if entry is None:
            return amended
        sl = req.stop_loss
        assert sl is not None
        if req.side is Side.BUY:
            if sl >= entry:
                return deny(
                    req,
                    self.name,
                    "stop_loss_wrong_side",
                    f"buy stop_loss {sl} must be below entry {entry}",
                    stop_loss=sl,
                    entry=entry,
                )
        elif sl <= entry:
            return deny(
                req,
                self.name,
                "stop_loss_wrong_side",
                f"sell stop_loss {sl} must be above entry {entry}",
                stop_loss=sl,
                entry=entry,
            )
        spec = f.spec()
        if spec is not None and spec.min_stop_distance and abs(entry - sl) < spec.min_stop_distance - 1e-12:
            return deny(
                req,
                self.name,
                "stop_loss_too_close",
                f"stop_loss {sl} is {abs(entry - sl):.8g} from entry {entry}; the broker's minimum is "
                f"{spec.min_stop_distance}",
                stop_loss=sl,
                entry=entry,
                min_distance=spec.min_stop_distance,
            )
        return self._check_tp(req, entry) or amended

    def _check_tp(self, req: OrderRequest, entry: float | None) -> Decision | None:
        tp = req.take_profit
        if tp is None or entry is None:
            return None
        if req.side is Side.BUY and tp <= entry:
            return deny(
                req,
                self.name,
                "take_profit_wrong_side",
                f"buy take_profit {tp} must be above entry {entry}",
                take_profit=tp,
                entry=entry,
            )
        if req.side is Side.SELL and tp >= entry:
            return deny(
                req,
                self.name,
                "take_profit_wrong_side",
                f"sell take_profit {tp} must be below entry {entry}",
                take_profit=tp,
                entry=entry,
            )
        return None


@dataclass
class OrderSizeRule:
    """Maximum quantity and maximum notional (qty x price x contract size) of one opening order."""

    facts: FactsCache
    name: str = "order_size"
    stage: str = "order"
    max_qty: float = math.inf
    max_notional: float = math.inf

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        if req.qty <= self.max_qty and self.max_notional == math.inf:
            return None
        f = self.facts.cur
        if f is None or f.req is not req:
            f = self.facts.get(req, view)
        if not f.opening:
            return None
        if req.qty > self.max_qty:
            return deny(
                req,
                self.name,
                "max_order_qty",
                f"qty {req.qty} exceeds the maximum {self.max_qty}",
                qty=req.qty,
                limit=self.max_qty,
            )
        price = f.entry
        if price is None:
            return deny(
                req, self.name, "no_price", f"no price for {req.symbol} to value the order's notional"
            )
        notional = req.qty * price * f.contract_size()
        if notional > self.max_notional:
            return deny(
                req,
                self.name,
                "max_order_notional",
                f"notional {notional:.2f} exceeds the maximum {self.max_notional}",
                notional=notional,
                limit=self.max_notional,
            )
        return None


@dataclass
class PriceCollarRule:
    """A limit/stop price more than ``max_deviation`` (fraction) from the last price is refused; a
    market order is refused when the last quote or bar is older than ``stale_ms`` (reduce-only orders
    are exempt from the staleness check so that positions can always be flattened)."""

    facts: FactsCache
    name: str = "price_collar"
    stage: str = "order"
    max_deviation: float | None = None
    stale_ms: int | None = None

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        if req.type is OrderType.MARKET:
            if self.stale_ms is None or req.reduce_only:
                return None
            ts = view.last_quote_ms(req.symbol)
            if ts is None:
                return deny(
                    req, self.name, "no_price", f"no quote for {req.symbol} yet: market order refused"
                )
            age = self.facts.get(req, view).now - ts
            if age > self.stale_ms:
                return deny(
                    req,
                    self.name,
                    "stale_quote",
                    f"last quote for {req.symbol} is {age / 1000:.1f}s old (limit {self.stale_ms / 1000:g}s)",
                    age_ms=age,
                    limit_ms=self.stale_ms,
                )
            return None
        if self.max_deviation is None:
            return None
        last = view.last_price(req.symbol)
        if last is None:
            return deny(
                req, self.name, "no_price", f"no last price for {req.symbol} to check the order price"
            )
        price = req.limit_price if req.type is OrderType.LIMIT else req.stop_price
        assert price is not None
        dev = abs(price - last) / last
        if dev > self.max_deviation:
            return deny(
                req,
                self.name,
                "price_collar",
                f"{req.type.value} price {price} is {dev * 100:.2f}% from the last price {last} "
                f"(limit {self.max_deviation * 100:g}%)",
                price=price,
                last=last,
                deviation=dev,
                limit=self.max_deviation,
            )
        return None


def _rate_key(req: OrderRequest) -> str:
    return req.strategy or req.source or "manual"


def _fingerprint(req: OrderRequest, key: str) -> tuple[Any, ...]:
    return (key, req.symbol, req.side, req.qty, req.type, req.limit_price, req.stop_price)


@dataclass
class RateRule:
    """Orders per second and per minute, per strategy (or source for manual orders) and in total,
    and the duplicate guard (same strategy, symbol, side, qty, type and price within ``dup_window_ms``).

    Only approved orders count: :class:`RateCommitRule`, the very last rule of the gate, records them.
    """

    facts: FactsCache
    state: RateState
    name: str = "rate"
    stage: str = "order"
    per_second: int | None = None
    per_minute: int | None = None
    total_per_second: int | None = None
    total_per_minute: int | None = None
    dup_window_ms: int = 0

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        now = self.facts.get(req, view).now
        key = _rate_key(req)
        st = self.state
        if self.dup_window_ms:
            last = st.recent.get(_fingerprint(req, key))
            if last is not None and now - last < self.dup_window_ms:
                return deny(
                    req,
                    self.name,
                    "duplicate_order",
                    f"same order from {key} {now - last} ms ago (guard {self.dup_window_ms} ms)",
                    key=key,
                    since_ms=now - last,
                )
        ps, pm = self.per_second, self.per_minute
        if ps is not None or pm is not None:
            window = st.by_key.get(key)
            if window is not None:
                d = self._limit(req, key, window.counts(now), ps, pm)
                if d is not None:
                    return d
        ps, pm = self.total_per_second, self.total_per_minute
        if ps is not None or pm is not None:
            return self._limit(req, "total", st.total.counts(now), ps, pm)
        return None

    def _limit(
        self, req: OrderRequest, scope: str, counts: tuple[int, int], ps: int | None, pm: int | None
    ) -> Decision | None:
        sec, minute = counts
        if ps is not None and sec >= ps:
            return deny(
                req,
                self.name,
                "rate_per_second",
                f"{scope}: {sec} orders in the last second (max {ps})",
                scope=scope,
                count=sec,
                limit=ps,
            )
        if pm is not None and minute >= pm:
            return deny(
                req,
                self.name,
                "rate_per_minute",
                f"{scope}: {minute} orders in the last minute (max {pm})",
                scope=scope,
                count=minute,
                limit=pm,
            )
        return None


@dataclass
class CommitRule:
    """The gate's last rule; never denies. Records an order that passed everything: its time for the
    rate limits and duplicate guard, and (when position or exposure limits are on) its quantity in the
    ledger of working opening orders."""

    facts: FactsCache
    rate: RateRule | None = None
    ledger: PendingLedger | None = None
    name: str = "commit"
    stage: str = "loss"

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        f = self.facts.cur
        if f is None or f.req is not req:
            f = self.facts.get(req, view)
        r = self.rate
        if r is not None:
            key = _rate_key(req)
            r.state.record(key, _fingerprint(req, key) if r.dup_window_ms else None, f.now, r.dup_window_ms)
        if self.ledger is not None and not req.reduce_only:
            # every order that may add to a position once filled (an order that reduces now may open
            # later, after a stop-loss closed what it was meant to reduce)
            self.ledger.add(req, f.entry or 0.0)
        return None


# -- portfolio stage ---------------------------------------------------------------------------


@dataclass
class PositionLimitRule:
    """The account's net position per symbol may not exceed ``max_qty`` (or ``max_notional``) in size."""

    facts: FactsCache
    ledger: PendingLedger
    name: str = "position_limit"
    stage: str = "portfolio"
    max_qty: float = math.inf
    max_notional: float = math.inf

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        if req.reduce_only:
            return None  # the broker clamps it to the position: it can only shrink it
        f = self.facts.cur
        if f is None or f.req is not req:
            f = self.facts.get(req, view)
        net = f.net
        buy = req.side is Side.BUY
        # The worst case on this order's side: a position on the other side may be closed by its
        # protective legs before this order fills, and every working order on this side may fill too.
        # So a plain (not reduce-only) sell that "closes" a long is judged as the short it could become.
        pending = self.ledger.pending(req.symbol, buy)
        after = max(net, 0.0) + pending + req.qty if buy else min(net, 0.0) - pending - req.qty
        if abs(after) > self.max_qty + 1e-12:
            return deny(
                req,
                self.name,
                "max_position",
                f"position in {req.symbol} could reach {after:g} "
                f"(max {self.max_qty:g}) counting {pending:g} in working orders",
                position=net,
                pending=pending,
                after=after,
                limit=self.max_qty,
            )
        if self.max_notional < math.inf:
            price = f.entry
            if price is None:
                return deny(req, self.name, "no_price", f"no price for {req.symbol} to value the position")
            value = abs(after) * price * f.contract_size()
            if value > self.max_notional:
                return deny(
                    req,
                    self.name,
                    "max_position_notional",
                    f"position value in {req.symbol} would be {value:.2f} (max {self.max_notional:g})",
                    value=value,
                    limit=self.max_notional,
                )
        return None


@dataclass
class ExposureRule:
    """Gross exposure (sum of |position| x price over symbols) and leverage (gross / equity) after the order."""

    facts: FactsCache
    ledger: PendingLedger
    name: str = "exposure"
    stage: str = "portfolio"
    max_gross: float = math.inf
    max_leverage: float = math.inf

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        f = self.facts.cur
        if f is None or f.req is not req:
            f = self.facts.get(req, view)
        net = f.net
        after = net + req.signed_qty
        if abs(after) <= abs(net) + 1e-12:
            return None
        price = f.entry
        if price is None:
            return deny(req, self.name, "no_price", f"no price for {req.symbol} to value the exposure")
        # filled exposure, plus every working entry (at its price when approved), plus this order
        gross = f.gross() + self.ledger.notional + (abs(after) - abs(net)) * price * f.contract_size()
        if gross > self.max_gross:
            return deny(
                req,
                self.name,
                "max_gross_exposure",
                f"gross exposure would be {gross:.2f} (max {self.max_gross:g})",
                gross=gross,
                limit=self.max_gross,
            )
        if self.max_leverage < math.inf:
            equity = f.equity()
            lev = math.inf if equity <= 0 else gross / equity
            if lev > self.max_leverage:
                return deny(
                    req,
                    self.name,
                    "max_leverage",
                    f"leverage would be {lev:.2f}x (max {self.max_leverage:g}x)",
                    leverage=lev,
                    gross=gross,
                    equity=equity,
                    limit=self.max_leverage,
                )
        return None


@dataclass
class OpenPositionsRule:
    """At most ``max_open`` symbols with an open position, counted from the broker's own positions
    (manual trades and other bots included) as well as the kernel's."""

    manager: RiskManager
    name: str = "open_positions"
    stage: str = "portfolio"
    max_open: int = 1 << 30

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        m = self.manager
        f = m.facts.cur
        if f is None or f.req is not req:
            f = m.facts.get(req, view)
        if not f.opening:
            return None
        sym = req.symbol
        pending = m.ledger.symbols() if m.ledger else set()
        if abs(f.net) > 1e-12 or sym in m.broker_symbols or sym in pending:
            return None  # adds to a symbol that is already open (or being opened): no new position
        count = max(m.facts.open_positions(view), len(m.broker_symbols))
        count += sum(
            1 for s in pending if s not in m.broker_symbols and abs(m.facts.net_qty(s, view)) <= 1e-12
        )
        if count >= self.max_open:
            return deny(
                req,
                self.name,
                "max_open_positions",
                f"{count} positions are open (max {self.max_open}); {sym} would open another",
                open=count,
                limit=self.max_open,
            )
        return None


@dataclass
class RiskPerTradeRule:
    """An opening order may risk at most ``max_pct`` % of equity: qty x |entry - stop| x contract size."""

    facts: FactsCache
    name: str = "risk_per_trade"
    stage: str = "portfolio"
    max_pct: float = 1.0

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        f = self.facts.cur
        if f is None or f.req is not req:
            f = self.facts.get(req, view)
        if not f.opening:
            return None
        entry = f.entry
        if req.stop_loss is None or entry is None:
            return deny(
                req, self.name, "risk_unknown", "cannot size the risk without a stop_loss and a price"
            )
        risk = req.qty * abs(entry - req.stop_loss) * f.contract_size()
        equity = f.equity()
        allowed = equity * self.max_pct / 100.0
        if risk > allowed + 1e-9:
            return deny(
                req,
                self.name,
                "risk_per_trade",
                f"the order risks {risk:.2f} at its stop, more than "
                f"{self.max_pct:g}% of equity ({allowed:.2f})",
                risk=risk,
                allowed=allowed,
                equity=equity,
            )
        return None


@dataclass
class MarginRule:
    """Required margin (notional x the symbol's margin rate) within ``free_fraction`` of the broker's
    free margin, and the margin level (equity / margin used, %) not pushed below ``min_level``."""

    facts: FactsCache
    name: str = "margin"
    stage: str = "portfolio"
    free_fraction: float | None = None
    min_level: float | None = None

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        f = self.facts.cur
        if f is None or f.req is not req:
            f = self.facts.get(req, view)
        if not f.opening:
            return None
        price = f.entry
        if price is None:
            return deny(req, self.name, "no_price", f"no price for {req.symbol} to compute the margin")
        spec = f.spec()
        rate, cs = (spec.margin_rate, spec.contract_size) if spec is not None else (1.0, 1.0)
        required = req.qty * price * cs * rate
        acct = f.account()
        if self.free_fraction is not None and required > acct.free_margin * self.free_fraction:
            return deny(
                req,
                self.name,
                "margin_insufficient",
                f"required margin {required:.2f} exceeds {self.free_fraction * 100:g}% of free margin "
                f"{acct.free_margin:.2f}",
                required=required,
                free_margin=acct.free_margin,
            )
        if self.min_level is not None:
            used = acct.margin_used + required
            level = math.inf if used <= 0 else acct.equity / used * 100.0
            if level < self.min_level:
                return deny(
                    req,
                    self.name,
                    "margin_level",
                    f"margin level would fall to {level:.1f}% (minimum {self.min_level:g}%)",
                    level=level,
                    limit=self.min_level,
                )
        return None


# -- loss stage --------------------------------------------------------------------------------


@dataclass
class LossLimitRule:
    """No opening order while a loss limit holds; checks equity at the order itself, so a loss made
    between two bars trips the limit before the next entry rather than after it."""

    manager: RiskManager
    name: str = "loss_limit"
    stage: str = "loss"

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        m = self.manager
        f = m.facts.cur
        if f is None or f.req is not req:
            f = m.facts.get(req, view)
        if not f.opening:
            return None
        lock = m.check_loss_now(f.now, f.equity())
        if lock is None:
            return None
        return deny(
            req,
            self.name,
            "loss_limit",
            f"loss limit holds: {lock.reason}",
            metric=lock.metric,
            loss=lock.loss,
            limit=lock.limit,
            until=lock.until,
        )


@dataclass
class CooldownRule:
    """After a stop-loss hit, no new entry on that symbol for ``bars`` bars and/or ``ms`` milliseconds;
    a symbol (or everything) locked after repeated stop-losses stays closed to entries until the lock ends."""

    manager: RiskManager
    name: str = "cooldown"
    stage: str = "loss"
    bars: int = 0
    ms: int = 0

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        m = self.manager
        cd = m.cooldowns
        f = m.facts.cur
        if f is None or f.req is not req:
            f = m.facts.get(req, view)
        now = f.now
        st = cd.by_symbol.get(req.symbol)
        if (st is None and cd.global_until <= now) or not f.opening:
            return None
        if cd.global_until > now:
            return deny(
                req,
                self.name,
                "locked",
                f"all entries locked after repeated stop-losses for another "
                f"{(cd.global_until - now) / 60000:.1f} min",
                until=cd.global_until,
            )
        assert st is not None
        if st.locked_until > now:
            return deny(
                req,
                self.name,
                "symbol_locked",
                f"{req.symbol} locked after repeated stop-losses for "
                f"another {(st.locked_until - now) / 60000:.1f} min",
                until=st.locked_until,
            )
        if self.bars and st.last_bar >= 0:
            since = cd.bars.get(req.symbol, 0) - st.last_bar
            if since < self.bars:
                return deny(
                    req,
                    self.name,
                    "cooldown",
                    f"{req.symbol}: stop-loss hit {since} bars ago (cooldown {self.bars} bars)",
                    bars_since=since,
                    limit_bars=self.bars,
                )
        if self.ms and st.last_ts and now - st.last_ts < self.ms:
            return deny(
                req,
                self.name,
                "cooldown",
                f"{req.symbol}: stop-loss hit {(now - st.last_ts) / 60000:.1f} min "
                f"ago (cooldown {self.ms / 60000:g} min)",
                since_ms=now - st.last_ts,
                limit_ms=self.ms,
            )
        return None
