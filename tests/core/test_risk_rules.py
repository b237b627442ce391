"""Each risk rule, through a real kernel and the paper broker: a denial with its reason code, and the
case that passes next to it. Time is bar time (backtest-mode kernel fed bar by bar), so nothing here
depends on the wall clock."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from stratkernel import hookimpl
from stratkernel.core.config import KernelConfig, load_config
from stratkernel.core.errors import ConfigError
from stratkernel.core.events import Event
from stratkernel.core.kernel import Kernel
from stratkernel.core.model import Bar, Order, OrderRequest, OrderType, Position, Side, TradingState
from stratkernel.core.risk import RiskConfig
from stratkernel.core.risk_rules import kelly_fraction, position_size
from stratkernel.core.store import Store
from stratkernel.plugins.paper import PaperBroker, PercentFee
from stratkernel.testing import plugin_host

T0 = 1_700_000_000_000  # Tue 2023-11-14 22:13:20 UTC
MIN = 60_000


@dataclass(frozen=True)
class Seen:
    """What the kernel looked like when an order reached the broker."""

    request: OrderRequest
    state: TradingState
    net_qty: float
    strategy_qty: float
    last: float | None
    now: int
    equity: float


class SpecPaper(PaperBroker):
    """The real paper broker, with venue constraints (a SymbolSpec), positions the kernel did not open,
    and a record of every order that reached it."""

    name = "specpaper"

    def __init__(self, events: Any, *, spec: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(events, **kw)
        self.spec_kw = spec or {}
        self.external: list[Position] = []
        self.seen: list[Seen] = []

    def symbol_spec(self, symbol: str) -> Any:
        base = super().symbol_spec(symbol)
        return None if base is None else replace(base, **self.spec_kw)

    async def positions(self) -> list[Position]:
        return await super().positions() + list(self.external)

    async def submit(self, order: Order) -> None:
        k = self.events
        r = order.request
        self.seen.append(
            Seen(
                r,
                k.trading_state,
                k.portfolio.position(r.symbol).qty,
                k.portfolio.strategy_qty(r.strategy, r.symbol),
                k.last_price(r.symbol),
                k.now_ms(),
                k.portfolio.equity(),
            )
        )
        await super().submit(order)


class BrokerPlugin:
    @hookimpl
    def register_brokers(self, register: Any) -> None:
        def factory(options: dict[str, Any], events: Any) -> SpecPaper:
            return SpecPaper(
                events,
                cash=float(options.get("cash", 100_000.0)),
                spec=options.get("spec"),
                fees=PercentFee(float(options.get("fee_percent", 0.0))),
            )

        register("specpaper", factory, simulated=True, description="paper broker with a spec, for risk tests")


class RecordingNotifier:
    received: list[Event] = []

    def __init__(self, options: dict[str, Any]) -> None:
        self.name = "recording"

    async def notify(self, event: Event) -> None:
        RecordingNotifier.received.append(event)


class NotifierPlugin:
    @hookimpl
    def register_notifiers(self, register: Any) -> None:
        register("recording", RecordingNotifier, description="keeps notifications for a test")


async def make_kernel(
    *,
    spec: dict[str, Any] | None = None,
    symbols: tuple[str, ...] = ("X",),
    store: Store | None = None,
    mode: str = "backtest",
    fee_percent: float = 0.0,
    cash: float = 100_000.0,
    **risk: Any,
) -> Kernel:
    cfg = KernelConfig(
        strategies=[],
        symbols=list(symbols),
        initial_cash=cash,
        broker={"name": "specpaper", "options": {"spec": spec or {}, "fee_percent": fee_percent}},
        risk=RiskConfig(**risk),
    )
    kernel = Kernel(cfg, plugin_host(BrokerPlugin(), NotifierPlugin()), store=store, mode=mode)
    await kernel.setup()
    return kernel


async def feed(
    k: Kernel,
    minute: int,
    price: float,
    symbol: str = "X",
    *,
    low: float | None = None,
    high: float | None = None,
    open_: float | None = None,
) -> None:
    """One bar at T0 + minute, in bar time (the kernel's clock in a backtest)."""
    ts = T0 + minute * MIN
    o = price if open_ is None else open_
    lo = min(o, price) * 0.999 if low is None else low
    hi = max(o, price) * 1.001 if high is None else high
    k.port.time = ts
    await k.on_live_bar(Bar(ts, o, hi, lo, price, 10.0, symbol))


def rq(side: str = "buy", qty: float = 1.0, symbol: str = "X", **kw: Any) -> OrderRequest:
    kw.setdefault("source", "test")
    return OrderRequest(symbol, Side(side), qty, **kw)


def broker(k: Kernel) -> SpecPaper:
    assert k._broker is not None
    b = k._broker._get()
    assert isinstance(b, SpecPaper)
    return b


async def expect(k: Kernel, request: OrderRequest, code: str) -> None:
    n = len(broker(k).seen)
    d = await k.submit(request)
    assert d.code == code, (d.code, d.message, request)
    assert d.message
    if d.approved:
        assert len(broker(k).seen) == n + 1
    else:
        assert len(broker(k).seen) == n, "a denied order reached the broker"
        assert d.rule


# -- stop-loss / take-profit -------------------------------------------------------------------


async def test_stop_loss_rules_each_deny_with_their_code() -> None:
    k = await make_kernel(spec={"min_stop_distance": 2.0})
    await feed(k, 0, 100.0)
    await expect(k, rq(), "stop_loss_missing")
    await expect(k, rq(stop_loss=101.0), "stop_loss_wrong_side")
    await expect(k, rq("sell", stop_loss=99.0), "stop_loss_wrong_side")
    await expect(k, rq(stop_loss=99.0), "stop_loss_too_close")  # 1.0 < broker minimum 2.0
    await expect(k, rq(type=OrderType.LIMIT, limit_price=95.0, stop_loss=94.0), "stop_loss_too_close")
    await expect(k, rq(stop_loss=97.0, take_profit=99.0), "take_profit_wrong_side")
    await expect(k, rq("sell", stop_loss=103.0, take_profit=101.0), "take_profit_wrong_side")
    await expect(k, rq(stop_loss=97.0, take_profit=105.0), "ok")
    await expect(k, rq("sell", stop_loss=103.0, take_profit=95.0), "ok")


async def test_reducing_orders_need_no_stop() -> None:
    k = await make_kernel()
    await feed(k, 0, 100.0)
    await expect(k, rq(qty=2, stop_loss=95.0), "ok")
    await feed(k, 1, 100.0)
    await expect(k, rq("sell", qty=1), "ok")
    await expect(k, rq("sell", qty=5), "stop_loss_missing")  # would flip short: that opens


async def test_default_fixed_stop_is_attached_instead_of_refusing() -> None:
    k = await make_kernel(default_stop="fixed", default_stop_distance=3.0, spec={"min_stop_distance": 5.0})
    await feed(k, 0, 100.0)
    d = await k.submit(rq())
    assert d.approved and d.request.stop_loss == pytest.approx(95.0)  # widened to the broker minimum
    d = await k.submit(rq("sell", strategy="", source="other"))
    assert d.approved
    seen = broker(k).seen
    assert [s.request.stop_loss for s in seen] == [pytest.approx(95.0), pytest.approx(105.0)]


async def test_default_atr_stop_waits_for_the_atr_then_attaches_a_multiple() -> None:
    k = await make_kernel(default_stop="atr", default_stop_atr_period=3, default_stop_atr_multiple=2.0)
    await feed(k, 0, 100.0, low=99.0, high=101.0)
    await expect(k, rq(), "stop_loss_missing")  # ATR(3) still warming up
    for m in range(1, 5):
        await feed(k, m, 100.0, low=99.0, high=101.0)
    atr = k.indicator_value("X", "atr", 3)
    assert atr is not None and atr > 0
    d = await k.submit(rq())
    assert d.approved and d.code == "ok"
    assert d.request.stop_loss == pytest.approx(100.0 - 2 * atr)
    assert broker(k).seen[-1].request.stop_loss == pytest.approx(100.0 - 2 * atr)


# -- size, position, exposure ------------------------------------------------------------------


async def test_order_size_limits() -> None:
    k = await make_kernel(max_order_qty=5, max_order_notional=400)
    await feed(k, 0, 100.0)
    await expect(k, rq(qty=6, stop_loss=90.0), "max_order_qty")
    await expect(k, rq(qty=5, stop_loss=90.0), "max_order_notional")  # 500 > 400
    await expect(k, rq(qty=4, stop_loss=90.0), "ok")
    await feed(k, 1, 100.0)
    await expect(k, rq(qty=4, stop_loss=90.0), "ok")
    await feed(k, 2, 100.0)
    assert k.portfolio.position("X").qty == 8
    await expect(k, rq("sell", qty=8), "ok")  # a closing order is never blocked by size limits


async def test_position_limit_per_symbol_and_notional() -> None:
    k = await make_kernel(max_position_qty=3, max_position_notional=1000)
    await feed(k, 0, 100.0)
    await expect(k, rq(qty=2, stop_loss=90.0), "ok")
    await feed(k, 1, 100.0)
    await expect(k, rq(qty=2, stop_loss=90.0), "max_position")
    await expect(k, rq("sell", qty=6, stop_loss=110.0), "max_position")  # flips to -4
    await expect(k, rq(qty=1, stop_loss=90.0), "ok")
    await feed(k, 2, 400.0)
    await expect(k, rq("sell", qty=1), "ok")  # reducing always passes
    await feed(k, 3, 400.0)
    k2 = await make_kernel(max_position_notional=1000)
    await feed(k2, 0, 400.0)
    await expect(k2, rq(qty=3, stop_loss=390.0), "max_position_notional")


async def test_gross_exposure_and_leverage_across_symbols() -> None:
    k = await make_kernel(symbols=("X", "Y"), max_gross_exposure=2500, max_leverage=0.02, cash=100_000.0)
    await feed(k, 0, 100.0, "X")
    await feed(k, 0, 50.0, "Y")
    await expect(k, rq(qty=15, stop_loss=90.0), "ok")
    await feed(k, 1, 100.0, "X")
    await feed(k, 1, 50.0, "Y")
    assert k.portfolio.gross_exposure() == pytest.approx(1500, rel=1e-3)
    await expect(k, rq(qty=21, symbol="Y", stop_loss=45.0), "max_gross_exposure")  # 1500 + 1050
    await expect(k, rq(qty=12, symbol="Y", stop_loss=45.0), "max_leverage")  # 2100 / 100k > 0.02
    await expect(k, rq(qty=9, symbol="Y", stop_loss=45.0), "ok")


async def test_open_positions_counted_at_the_broker_including_manual_trades() -> None:
    k = await make_kernel(symbols=("X", "Y", "Z"), max_open_positions=2)
    for s in ("X", "Y", "Z"):
        await feed(k, 0, 100.0, s)
    await expect(k, rq(symbol="X", stop_loss=90.0), "ok")
    for s in ("X", "Y", "Z"):
        await feed(k, 1, 100.0, s)
    broker(k).external = [Position("MANUAL-EURUSD", 1000.0, 1.1)]  # opened by hand at the venue
    assert k.risk is not None
    await k.risk.refresh_broker_positions()
    await expect(k, rq(symbol="Y", stop_loss=90.0), "max_open_positions")
    await expect(k, rq(symbol="X", stop_loss=90.0), "ok")  # adds to an open symbol: not a new position
    broker(k).external = []
    await k.risk.tick()  # the live refresh path reads the broker again
    await k.risk.refresh_broker_positions()
    await expect(k, rq(symbol="Y", stop_loss=90.0), "ok")


# -- sizing and margin -------------------------------------------------------------------------


async def test_risk_per_trade_rule_and_the_sizing_helpers() -> None:
    k = await make_kernel(risk_per_trade_pct=1.0)  # 1% of 100k = 1000 at the stop
    await feed(k, 0, 100.0)
    assert k.risk is not None
    qty = k.risk.position_size(100.0, 95.0)
    assert qty == pytest.approx(200.0)
    await expect(k, rq(qty=201, stop_loss=95.0), "risk_per_trade")
    await expect(k, rq(qty=200, stop_loss=95.0), "ok")
    assert position_size(10_000, 50, 48, 2.0, qty_step=1.0) == 100.0
    assert position_size(10_000, 50, 48, 2.0, kelly=0.01) == pytest.approx(50.0)  # Kelly caps the 2% to 1%
    assert kelly_fraction(0.6, 1.0) == pytest.approx(0.2)
    assert kelly_fraction(0.6, 1.0, scale=0.5) == pytest.approx(0.1)
    assert kelly_fraction(0.3, 1.0) == 0.0
    with pytest.raises(ValueError, match="stop"):
        position_size(10_000, 50, 50, 1.0)
    with pytest.raises(ValueError, match="win_rate"):
        kelly_fraction(1.5, 2.0)


async def test_margin_free_fraction_and_margin_level() -> None:
    k = await make_kernel(margin_free_fraction=0.5, spec={"margin_rate": 0.1}, cash=10_000.0)
    await feed(k, 0, 100.0)
    await expect(k, rq(qty=501, stop_loss=90.0), "margin_insufficient")  # 5010 margin > 50% of 10k
    await expect(k, rq(qty=500, stop_loss=90.0), "ok")
    k2 = await make_kernel(margin_level_min_pct=200.0, cash=10_000.0)
    await feed(k2, 0, 100.0)
    await expect(k2, rq(qty=51, stop_loss=90.0), "margin_level")  # 10k / 5.1k = 196% < 200%
    await expect(k2, rq(qty=50, stop_loss=90.0), "ok")


# -- price collar and stale data ---------------------------------------------------------------


async def test_price_collar_and_stale_quotes() -> None:
    k = await make_kernel(price_collar_pct=5.0, stale_quote_s=120)
    await feed(k, 0, 100.0)
    await expect(k, rq(type=OrderType.LIMIT, limit_price=94.0, stop_loss=90.0), "price_collar")
    await expect(k, rq("sell", type=OrderType.STOP, stop_price=106.0, stop_loss=110.0), "price_collar")
    await expect(k, rq(type=OrderType.LIMIT, limit_price=96.0, stop_loss=90.0), "ok")
    await expect(k, rq(stop_loss=90.0), "ok")
    k.port.time = T0 + 3 * MIN  # three minutes without a bar
    await expect(k, rq(stop_loss=90.0), "stale_quote")
    await expect(k, rq("sell", qty=1, reduce_only=True), "ok")  # flattening stays possible on stale data
    await expect(k, rq(symbol="X", stop_loss=90.0, type=OrderType.LIMIT, limit_price=99.0), "ok")


# -- rate and duplicates -----------------------------------------------------------------------


async def test_rate_limits_per_strategy_and_total_count_only_approved_orders() -> None:
    k = await make_kernel(max_orders_per_second=2, max_orders_per_minute=3, max_total_orders_per_minute=5)
    await feed(k, 0, 100.0)
    a = {"strategy": "a", "stop_loss": 90.0}
    await expect(k, rq(**a), "ok")
    await expect(k, rq(stop_loss=200.0, strategy="a"), "stop_loss_wrong_side")  # denied: not counted
    await expect(k, rq(**a), "ok")
    await expect(k, rq(**a), "rate_per_second")
    k.port.time += 1500
    await expect(k, rq(**a), "ok")
    k.port.time += 1500
    await expect(k, rq(**a), "rate_per_minute")
    await expect(k, rq(strategy="b", stop_loss=90.0), "ok")
    await expect(k, rq(strategy="b", stop_loss=90.0), "ok")
    await expect(k, rq(strategy="c", stop_loss=90.0), "rate_per_minute")  # total: 5 in the minute
    k.port.time += 61_000
    await expect(k, rq(**a), "ok")


async def test_duplicate_order_guard() -> None:
    k = await make_kernel(duplicate_window_ms=5000)
    await feed(k, 0, 100.0)
    await expect(k, rq(stop_loss=90.0, strategy="a"), "ok")
    await expect(k, rq(stop_loss=90.0, strategy="a"), "duplicate_order")
    await expect(k, rq(qty=2, stop_loss=90.0, strategy="a"), "ok")  # a different qty is a different order
    await expect(k, rq(stop_loss=90.0, strategy="b"), "ok")
    k.port.time += 5000
    await expect(k, rq(stop_loss=90.0, strategy="a"), "ok")


# -- cooldowns ---------------------------------------------------------------------------------


async def stopped_out(k: Kernel, minute: int, symbol: str = "X") -> int:
    """Open a long with a stop at 95 and hit the stop; returns the minute after the stop bar."""
    await feed(k, minute, 100.0, symbol)
    d = await k.submit(rq(symbol=symbol, stop_loss=95.0, strategy="s"))
    assert d.approved, d
    await feed(k, minute + 1, 100.0, symbol)  # entry fills at the open
    await feed(k, minute + 2, 94.0, symbol, low=93.0)  # stop-loss leg triggers
    assert k.portfolio.position(symbol).qty == 0
    return minute + 3


async def test_cooldown_in_bars_after_a_stop_loss() -> None:
    k = await make_kernel(stop_cooldown_bars=3)
    m = await stopped_out(k, 0)
    await expect(k, rq(stop_loss=90.0, strategy="s"), "cooldown")  # same bar as the stop
    await feed(k, m, 100.0)
    await feed(k, m + 1, 100.0)
    await expect(k, rq(stop_loss=90.0, strategy="s"), "cooldown")
    await feed(k, m + 2, 100.0)
    await expect(k, rq(stop_loss=90.0, strategy="s"), "ok")


async def test_cooldown_in_minutes_only_for_that_symbol() -> None:
    k = await make_kernel(symbols=("X", "Y"), stop_cooldown_minutes=10)
    await feed(k, 0, 100.0, "Y")
    m = await stopped_out(k, 0)
    await expect(k, rq(stop_loss=90.0), "cooldown")
    await expect(k, rq(symbol="Y", stop_loss=90.0), "ok")
    await feed(k, m + 10, 100.0)
    await expect(k, rq(stop_loss=90.0), "ok")  # stop bar at minute 2, now minute 13


async def test_repeated_stop_losses_lock_the_symbol_then_everything() -> None:
    k = await make_kernel(
        symbols=("X", "Y"), stop_lock_count=2, stop_lock_window_minutes=30, stop_lock_minutes=60
    )
    events: list[Event] = []
    k.subscribe(events.append)
    await feed(k, 0, 100.0, "Y")
    m = await stopped_out(k, 0)
    await expect(k, rq(stop_loss=90.0), "ok")  # one stop-loss: no lock yet
    await feed(k, m, 100.0)
    await k.submit(rq("sell", qty=1))
    m = await stopped_out(k, m + 1)  # the second within 30 minutes
    await expect(k, rq(stop_loss=90.0), "symbol_locked")
    await expect(k, rq(symbol="Y", stop_loss=90.0), "ok")
    await feed(k, m + 61, 100.0)
    await expect(k, rq(stop_loss=90.0), "ok")
    assert [
        e.data["scope"] for e in events if e.type == "risk_warning" and e.data.get("event") == "locked"
    ] == ["X"]

    k2 = await make_kernel(symbols=("X", "Y"), stop_lock_count=1, stop_lock_scope="all", stop_lock_minutes=60)
    await feed(k2, 0, 100.0, "Y")
    await stopped_out(k2, 0)
    await expect(k2, rq(symbol="Y", stop_loss=90.0), "locked")


# -- loss limits -------------------------------------------------------------------------------


async def long_position(k: Kernel, qty: float, price: float = 100.0, minute: int = 0) -> None:
    await feed(k, minute, price)
    d = await k.submit(rq(qty=qty, stop_loss=price * 0.5, strategy="s"))
    assert d.approved, d
    await feed(k, minute + 1, price)


async def test_daily_loss_warns_at_80_and_90_then_halts_until_the_operator_resumes() -> None:
    k = await make_kernel(daily_loss_pct=2.0)
    events: list[Event] = []
    k.subscribe(events.append)
    await long_position(k, 100)  # 100 x 100 = 10k of a 100k account
    await feed(k, 2, 98.5)  # -150 = 0.15%: nothing
    await feed(k, 3, 96.0)  # -400
    await feed(k, 4, 83.5)  # -1650 = 1.65%: 80% warning
    await feed(k, 5, 82.0)  # -1800 = 1.8%: 90% warning
    warnings = [e.data for e in events if e.type == "risk_warning"]
    assert [(w["metric"], w["level"]) for w in warnings] == [("daily_loss", 0.8), ("daily_loss", 0.9)]
    assert k.trading_state is TradingState.ACTIVE
    await feed(k, 6, 79.0)  # -2100 = 2.1%: trips
    assert k.trading_state is TradingState.HALTED
    assert "daily_loss" in k.state_reason
    assert k.risk is not None and k.risk.halt_kind == "loss_limit"
    await expect(k, rq(stop_loss=70.0, strategy="s"), "halted")
    await feed(k, 7, 85.0)  # back within the limit: still halted (operator recovery)
    assert k.trading_state is TradingState.HALTED
    await k.set_trading_state(TradingState.ACTIVE, "operator checked the losses", source="test")
    await feed(k, 8, 85.0)
    assert k.risk.halt_kind == ""
    await expect(k, rq(stop_loss=70.0, strategy="s"), "ok")  # measured afresh from the resumed equity
    states = [e.data for e in events if e.type == "risk_state"]
    assert states[0]["to"] == "halted" and states[0]["halt_kind"] == "loss_limit"
    assert any(d.get("event") == "loss_recovered" and d["how"] == "operator resume" for d in states)


async def test_live_notifiers_hear_warnings_and_trips() -> None:
    RecordingNotifier.received.clear()
    k = await make_kernel(mode="live", daily_loss_pct=2.0, notifiers=["recording"])
    t = (int(time.time() * 1000) // MIN - 10) * MIN
    await k.on_live_bar(Bar(t, 100, 100.1, 99.9, 100, 1, "X"))
    assert (await k.submit(rq(qty=100, stop_loss=50.0, strategy="s"))).approved
    for i, px in enumerate((100.0, 82.0, 79.0), start=1):
        await k.on_live_bar(Bar(t + i * MIN, px, px + 0.1, px - 0.1, px, 1, "X"))
    assert k.trading_state is TradingState.HALTED
    for _ in range(5):
        await asyncio.sleep(0)  # deliveries run as tasks, never inside the kernel's event
    got = [(e.type, e.data.get("level"), e.data.get("to")) for e in RecordingNotifier.received]
    assert got == [("risk_warning", 0.8, None), ("risk_warning", 0.9, None), ("risk_state", None, "halted")]


async def test_loss_limit_trips_inside_the_gate_between_bars() -> None:
    """A loss made by fills between two bars is caught by the next opening order itself."""
    k = await make_kernel(daily_loss_pct=0.5, fee_percent=1.5)
    await long_position(k, 400)  # the fill (fee 1.5% of 40k = 600) lands after this bar's loss check
    assert k.trading_state is TradingState.ACTIVE
    await expect(k, rq(qty=1, stop_loss=50.0, strategy="s"), "loss_limit")
    assert k.trading_state is TradingState.HALTED and "daily_loss" in k.state_reason


async def test_weekly_loss_and_drawdown_and_reduce_action() -> None:
    k = await make_kernel(max_drawdown_pct=5.0, loss_action="reduce")
    await long_position(k, 500)  # 50k at 100
    await feed(k, 2, 110.0)  # equity peaks at 105k
    await feed(k, 3, 100.0)  # 100k: -4.76% from peak: warning only
    assert k.trading_state is TradingState.ACTIVE
    await feed(k, 4, 99.0)  # 99.5k: -5.2% from peak
    assert k.trading_state is TradingState.REDUCING and "drawdown" in k.state_reason
    await expect(k, rq(qty=1, stop_loss=50.0, strategy="s"), "reducing_only")
    await expect(k, rq("sell", qty=100, strategy="s"), "ok")

    w = await make_kernel(weekly_loss_pct=1.0)
    await long_position(w, 1000)
    await feed(w, 2, 98.9)  # -1.1% of 100k week baseline
    assert w.trading_state is TradingState.HALTED and "weekly_loss" in w.state_reason


async def test_recovery_after_hours_and_at_the_next_day_boundary_in_the_configured_timezone() -> None:
    k = await make_kernel(daily_loss_pct=1.0, loss_recovery="hours", loss_recovery_hours=2)
    await long_position(k, 100)
    await feed(k, 2, 88.0)
    assert k.trading_state is TradingState.HALTED
    await feed(k, 60, 88.0)
    assert k.trading_state is TradingState.HALTED
    await feed(k, 123, 88.0)
    assert k.trading_state is TradingState.ACTIVE and "recovery" in k.state_reason
    await expect(k, rq(stop_loss=50.0, strategy="s"), "ok")

    # T0 is 22:13 UTC = 17:13 in New York: the New York day ends at 05:00 UTC, ~6h47m later
    d = await make_kernel(daily_loss_pct=1.0, loss_recovery="next_day", timezone="America/New_York")
    await long_position(d, 100)
    await feed(d, 2, 88.0)
    assert d.trading_state is TradingState.HALTED
    assert d.risk is not None and d.risk.loss.lock is not None
    assert d.risk.loss.lock.until == 1_700_024_400_000  # 2023-11-15 05:00 UTC
    await feed(d, 400, 88.0)  # 04:53 UTC
    assert d.trading_state is TradingState.HALTED
    await feed(d, 410, 88.0)  # 05:03 UTC: a new New York day
    assert d.trading_state is TradingState.ACTIVE
    assert d.risk.loss.day_base == pytest.approx(d.portfolio.equity())


async def test_an_operator_halt_during_a_loss_lock_is_not_undone_by_recovery() -> None:
    k = await make_kernel(daily_loss_pct=1.0, loss_recovery="hours", loss_recovery_hours=1)
    await long_position(k, 100)
    await feed(k, 2, 88.0)
    await k.set_trading_state(TradingState.HALTED, "operator: investigating", source="test")
    await feed(k, 70, 88.0)
    assert k.trading_state is TradingState.HALTED and k.state_reason == "operator: investigating"
    assert k.risk is not None and k.risk.loss.lock is None


# -- preflight, kill switch --------------------------------------------------------------------


async def test_broker_preflight_refusal_halts_with_its_reason() -> None:
    k = await make_kernel()
    await feed(k, 0, 100.0)
    await k.preflight()
    assert k.trading_state is TradingState.ACTIVE
    broker(k).trading_allowed = False  # e.g. MT5's AutoTrading switch turned off
    await k.preflight()
    assert k.trading_state is TradingState.HALTED
    assert "preflight" in k.state_reason and "disabled" in k.state_reason
    await expect(k, rq(stop_loss=90.0), "halted")


async def test_kill_switch_flattens_then_halts() -> None:
    k = await make_kernel(halt_flattens=True)
    await long_position(k, 10)
    assert k.risk is not None
    await k.risk.kill_switch("panic", source="test")
    assert k.trading_state is TradingState.HALTED
    await feed(k, 3, 100.0)
    assert k.portfolio.position("X").qty == 0
    assert broker(k).seen[-1].request.reduce_only and broker(k).seen[-1].state is TradingState.REDUCING


# -- persistence, config -----------------------------------------------------------------------


async def test_risk_state_survives_a_restart_through_the_store(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    store = await Store.open(db)
    cfg: dict[str, Any] = {"daily_loss_pct": 0.5, "max_drawdown_pct": 10.0, "stop_cooldown_minutes": 600}
    k = await make_kernel(store=store, mode="live", **cfg)
    # live mode runs on the wall clock: bars from ten minutes ago, a cooldown of ten hours
    t = (int(time.time() * 1000) // MIN - 10) * MIN
    await k.on_live_bar(Bar(t, 100, 100.1, 99.9, 100, 1, "X"))
    assert (await k.submit(rq(qty=100, stop_loss=95.0, strategy="s"))).approved
    await k.on_live_bar(Bar(t + MIN, 100, 100.1, 99.9, 100, 1, "X"))
    await k.on_live_bar(Bar(t + 2 * MIN, 94, 94.5, 93.0, 94, 1, "X"))  # stop-loss hit: -0.6% trips the limit
    assert k.portfolio.position("X").qty == 0
    assert k.trading_state is TradingState.HALTED and "daily_loss" in k.state_reason
    before = k.risk_snapshot()
    assert before["cooldowns"]["symbols"]["X"]["last_ts"] == t + 2 * MIN
    assert before["loss"]["peak"] == pytest.approx(100_000, rel=1e-3)
    assert before["loss"]["lock"]["metric"] == "daily_loss"
    await store.close()  # the next kernel reads only what reached the file

    store2 = await Store.open(db)
    try:
        k2 = await make_kernel(store=store2, mode="live", **cfg)
        assert k2.trading_state is TradingState.HALTED and k2.state_reason == k.state_reason
        assert k2.risk is not None and k2.risk.halt_kind == "loss_limit"
        after = k2.risk_snapshot()
        assert after["loss"] == before["loss"]
        assert after["cooldowns"] == before["cooldowns"]
        assert (await k2.submit(rq(stop_loss=90.0, strategy="s"))).code == "halted"
        await k2.set_trading_state(TradingState.ACTIVE, "operator", source="test")
        assert (await k2.submit(rq(stop_loss=90.0, strategy="s"))).code == "cooldown"  # restored cooldown
        assert k2.risk.halt_kind == ""  # the operator's resume ended the loss lock
    finally:
        await store2.close()


def test_bad_risk_config_is_refused_by_field_name(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[risk]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"risk\.timezone"):
        load_config(p)
    p.write_text("[risk]\ndaily_loss_pct = -1\n")
    with pytest.raises(ConfigError, match=r"risk\.daily_loss_pct"):
        load_config(p)
    p.write_text("[risk]\nloss_recovery = 'whenever'\n")
    with pytest.raises(ConfigError, match=r"risk\.loss_recovery"):
        load_config(p)
    p.write_text("[risk]\nmax_leverage = 3\nstop_cooldown_bars = 5\n")
    assert load_config(p).risk.max_leverage == 3


async def test_unknown_notifier_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"risk\.notifiers"):
        await make_kernel(notifiers=["carrier-pigeon"])


async def test_admin_limit_change_rebuilds_the_gate() -> None:
    k = await make_kernel()
    await feed(k, 0, 100.0)
    await expect(k, rq(qty=10, stop_loss=90.0), "ok")
    k.config = k.config.model_copy(update={"risk": RiskConfig(max_order_qty=5, daily_loss_pct=3.0)})
    k.rebuild_rules()
    await expect(k, rq(qty=10, stop_loss=90.0), "max_order_qty")
    assert k.risk is not None and k.risk.needs_bars


async def test_the_cli_halt_command_is_the_kill_switch() -> None:
    from stratkernel.core.runtime import Runtime

    k = await make_kernel(halt_flattens=True)
    await long_position(k, 10)
    rt = Runtime(k.config)
    rt.kernel = k
    await rt.apply_command("halt", "operator kill switch", source="cli:test")
    assert k.trading_state is TradingState.HALTED and k.state_reason == "operator kill switch"
    assert broker(k).seen[-1].request.reduce_only and broker(k).seen[-1].request.qty == 10


# -- working orders count towards position and exposure limits ---------------------------------


async def test_working_entries_count_towards_the_position_limit_until_they_fill_or_cancel() -> None:
    k = await make_kernel(max_position_qty=5)
    await feed(k, 0, 100.0)
    await expect(k, rq(qty=3, stop_loss=90.0), "ok")
    await expect(k, rq(qty=3, stop_loss=90.0), "max_position")  # 3 working + 3 > 5, nothing filled yet
    d = await k.submit(rq(qty=3, stop_loss=90.0))
    assert d.details["pending"] == 3
    await expect(k, rq(qty=2, stop_loss=90.0), "ok")
    await feed(k, 1, 100.0)  # both fill: position 5, nothing working
    assert k.portfolio.position("X").qty == 5
    await expect(k, rq(qty=1, stop_loss=90.0), "max_position")
    await expect(k, rq("sell", qty=4), "ok")  # reducing
    await feed(k, 2, 100.0)
    # a working limit far from the market holds its room until it is cancelled
    lim = await k.submit(rq(qty=4, type=OrderType.LIMIT, limit_price=99.0, stop_loss=90.0, client_id="lim"))
    assert lim.approved
    await expect(k, rq(qty=1, stop_loss=90.0), "max_position")  # 1 held + 4 working + 1 > 5
    assert await k.cancel(lim.order_id)
    await feed(k, 3, 100.0, low=99.5)  # the next bar prunes the cancelled entry
    await expect(k, rq(qty=4, stop_loss=90.0), "ok")


async def test_working_entries_count_towards_gross_exposure_and_open_positions() -> None:
    k = await make_kernel(symbols=("X", "Y"), max_gross_exposure=500, max_open_positions=1)
    await feed(k, 0, 100.0, "X")
    await feed(k, 0, 100.0, "Y")
    await expect(k, rq(qty=3, stop_loss=90.0), "ok")
    await expect(k, rq(qty=3, stop_loss=90.0), "max_gross_exposure")  # 300 working + 300
    await expect(k, rq(qty=1, symbol="Y", stop_loss=90.0), "max_open_positions")  # X is being opened


async def test_working_entries_are_counted_again_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    store = await Store.open(db)
    k = await make_kernel(store=store, mode="live", max_position_qty=5)
    t = (int(time.time() * 1000) // MIN - 10) * MIN
    await k.on_live_bar(Bar(t, 100, 100.1, 99.9, 100, 1, "X"))
    d = await k.submit(rq(qty=4, type=OrderType.LIMIT, limit_price=90.0, stop_loss=80.0))
    assert d.approved
    await store.close()
    store2 = await Store.open(db)
    try:
        k2 = await make_kernel(store=store2, mode="live", max_position_qty=5)
        assert k2.risk is not None and len(k2.risk.ledger) == 1
        await k2.on_live_bar(Bar(t + MIN, 100, 100.1, 99.9, 100, 1, "X"))
        assert (await k2.submit(rq(qty=2, stop_loss=90.0))).code == "max_position"
        assert (await k2.submit(rq(qty=1, stop_loss=90.0))).approved
    finally:
        await store2.close()


async def test_loss_flatten_closes_every_position_on_the_next_live_tick() -> None:
    k = await make_kernel(mode="live", daily_loss_pct=1.0, loss_flatten=True)
    t = (int(time.time() * 1000) // MIN - 10) * MIN
    await k.on_live_bar(Bar(t, 100, 100.1, 99.9, 100, 1, "X"))
    assert (await k.submit(rq(qty=100, stop_loss=50.0, strategy="s"))).approved
    await k.on_live_bar(Bar(t + MIN, 100, 100.1, 99.9, 100, 1, "X"))
    await k.on_live_bar(Bar(t + 2 * MIN, 88, 88.1, 87.9, 88, 1, "X"))  # -1.2% of equity: trips
    assert k.trading_state is TradingState.HALTED
    async with k.lock:  # as the runtime's periodic task calls it
        await k.risk_tick()
    assert k.trading_state is TradingState.HALTED and "daily_loss" in k.state_reason
    close = broker(k).seen[-1]
    assert close.request.reduce_only and close.request.qty == 100 and close.state is TradingState.REDUCING
    await k.on_live_bar(Bar(t + 3 * MIN, 88, 88.1, 87.9, 88, 1, "X"))
    assert k.portfolio.position("X").qty == 0
