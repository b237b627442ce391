"""Property tests of the risk gate: random strategies, order streams, state changes and price paths
through a real kernel and the real paper broker. The broker records what the kernel looked like at
the moment each order reached it; the properties say no recorded order broke an enabled rule.

The checks here are written from the rules' definitions (docs/risk.md), independently of the rule
code: e.g. the daily-loss check compares the equity at submission with the starting cash, the rate
check recounts every strategy's submissions in sliding windows.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratkernel import hookimpl
from stratkernel.core.config import KernelConfig
from stratkernel.core.events import Event
from stratkernel.core.gateway import reduces_position
from stratkernel.core.kernel import Kernel
from stratkernel.core.model import OrderRequest, OrderType, Position, Side, TradingState
from stratkernel.core.risk import RiskConfig
from stratkernel.core.strategy import Strategy
from stratkernel.testing import make_series, plugin_host

from .test_risk_rules import MIN, BrokerPlugin, NotifierPlugin, Seen, SpecPaper, feed

INITIAL = 100_000.0
MIN_STOP = 0.2
# make_series starts at 22:13 UTC; in Tokyo that is 07:13, so a 400-bar (minute) run stays in one day
TZ = "Asia/Tokyo"

action = st.tuples(
    st.sampled_from(["buy", "sell", "buy", "sell", "close"]),
    st.floats(0.5, 60.0),  # qty
    st.sampled_from(["right", "right", "right", "none", "wrong", "near"]),  # stop-loss placement
    st.floats(0.001, 0.05),  # stop distance as a fraction of the price
    st.sampled_from(["market", "market", "limit"]),
    st.floats(-0.04, 0.04),  # limit price offset (fraction)
)
plan = st.dictionaries(st.integers(0, 299), st.lists(action, min_size=1, max_size=3), max_size=80)

risk_configs = st.fixed_dictionaries(
    {},
    optional={
        "max_order_qty": st.floats(5.0, 50.0),
        "max_order_notional": st.floats(500.0, 5000.0),
        "max_position_qty": st.floats(10.0, 120.0),
        "price_collar_pct": st.floats(0.5, 3.0),
        "max_orders_per_minute": st.integers(1, 4),
        "max_orders_per_second": st.integers(1, 3),
        "daily_loss_pct": st.floats(0.02, 0.5),
        "stop_cooldown_bars": st.integers(1, 10),
    },
)


class RandomTrader(Strategy):
    """Places the orders its PLAN says, bar by bar: right and wrong stops, limits near and far."""

    name = "random_trader"
    PLAN: dict[int, list[tuple[Any, ...]]] = {}

    def on_bar(self, ctx: Any, bar: Any) -> None:
        for kind, qty, sl_mode, dist, otype, off in self.PLAN.get(ctx.bar_index, ()):
            if kind == "close":
                ctx.close()
                continue
            sign = 1.0 if kind == "buy" else -1.0
            limit = round(bar.close * (1 + off), 4) if otype == "limit" else None
            entry = limit if limit is not None else bar.close
            sl: float | None = None
            if sl_mode == "right":
                sl = entry * (1 - sign * dist)
            elif sl_mode == "wrong":
                sl = entry * (1 + sign * dist)
            elif sl_mode == "near":
                sl = entry - sign * MIN_STOP / 4
            fn = ctx.buy if kind == "buy" else ctx.sell
            fn(round(qty, 3), stop_loss=sl, type=otype, limit_price=limit)


def trader_plugin(plans: dict[str, dict[int, list[tuple[Any, ...]]]]) -> Any:
    classes = [type(f"Trader_{n}", (RandomTrader,), {"name": n, "PLAN": p}) for n, p in plans.items()]

    class Plugin:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            for c in classes:
                register(c)

    return Plugin()


def check_seen(seen: list[Seen], risk: dict[str, Any], events: list[Event]) -> None:
    """Every order that reached the broker obeyed every enabled rule at the moment it was sent."""
    by_key: dict[str, list[int]] = {}
    stop_fills = [e for e in events if e.type == "fill" and e.data["role"] == "stop_loss"]
    trips = [e.ts for e in events if e.type == "risk_state" and e.data.get("to") == "halted"]
    for s in seen:
        r = s.request
        assert s.state is not TradingState.HALTED, f"order passed while HALTED: {r}"
        pos = Position(r.symbol, s.strategy_qty) if r.strategy else Position(r.symbol, s.net_qty)
        opening = not r.reduce_only and not reduces_position(r, pos)
        if s.state is TradingState.REDUCING:
            assert not opening, f"opening order passed while REDUCING: {r}"
        key = r.strategy or r.source
        times = by_key.setdefault(key, [])
        if "max_orders_per_minute" in risk:
            assert sum(1 for t in times if t > s.now - 60_000) < risk["max_orders_per_minute"], (
                key,
                s.now,
                times,
            )
        if "max_orders_per_second" in risk:
            assert sum(1 for t in times if t > s.now - 1000) < risk["max_orders_per_second"], (
                key,
                s.now,
                times,
            )
        times.append(s.now)
        if r.type is OrderType.LIMIT and "price_collar_pct" in risk:
            assert s.last is not None and r.limit_price is not None
            assert abs(r.limit_price - s.last) / s.last <= risk["price_collar_pct"] / 100 + 1e-12, r
        if trips:
            assert s.now < trips[0], f"order passed after the loss limit tripped at {trips[0]}: {r}"
        if not opening:
            continue
        entry = r.limit_price if r.type is OrderType.LIMIT else s.last
        assert entry is not None
        assert r.stop_loss is not None, f"opening order without a stop-loss: {r}"
        if r.side is Side.BUY:
            assert r.stop_loss <= entry - MIN_STOP + 1e-9, (r, entry)
        else:
            assert r.stop_loss >= entry + MIN_STOP - 1e-9, (r, entry)
        if "max_order_qty" in risk:
            assert r.qty <= risk["max_order_qty"], r
        if "max_order_notional" in risk:
            assert r.qty * entry <= risk["max_order_notional"] + 1e-9, r
        if "max_position_qty" in risk:
            after = s.net_qty + r.signed_qty
            assert abs(after) <= max(risk["max_position_qty"], abs(s.net_qty)) + 1e-9, (r, s.net_qty)
        if "daily_loss_pct" in risk:
            assert (INITIAL - s.equity) / INITIAL < risk["daily_loss_pct"] / 100, (r, s.equity)
        if "stop_cooldown_bars" in risk:
            for f in stop_fills:
                if f.data["symbol"] == r.symbol and f.ts <= s.now:
                    assert s.now >= f.ts + risk["stop_cooldown_bars"] * MIN, (r, s.now, f.ts)


async def run_random_backtest(
    plans: dict[str, dict[int, list[tuple[Any, ...]]]], risk: dict[str, Any], seed: int, vol: float
) -> tuple[Kernel, list[Seen], list[Event]]:
    cfg = KernelConfig(
        strategies=[],
        symbols=["TEST"],
        initial_cash=INITIAL,
        broker={"name": "specpaper", "options": {"spec": {"min_stop_distance": MIN_STOP}}},
        risk=RiskConfig(timezone=TZ, **risk),
    )
    kernel = Kernel(cfg, plugin_host(BrokerPlugin(), NotifierPlugin(), trader_plugin(plans)), mode="backtest")
    await kernel.setup()
    for name in plans:
        kernel.add_strategy(name, name, symbol="TEST")
    events: list[Event] = []
    kernel.subscribe(events.append)
    await kernel.run_backtest(make_series(300, seed=seed, vol=vol))
    assert kernel._broker is not None
    b = kernel._broker._get()
    assert isinstance(b, SpecPaper)
    assert all(s.status != "failed" for s in kernel.slots.values()), [s.error for s in kernel.slots.values()]
    return kernel, b.seen, events


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(plan, min_size=1, max_size=2),
    risk=risk_configs,
    seed=st.integers(0, 10_000),
    vol=st.sampled_from([0.001, 0.004, 0.015]),
)
def test_no_order_that_breaks_an_enabled_rule_reaches_the_broker(
    plans: list[dict[int, list[Any]]], risk: dict[str, Any], seed: int, vol: float
) -> None:
    named = {f"t{i}": p for i, p in enumerate(plans)}
    kernel, seen, events = asyncio.run(run_random_backtest(named, risk, seed, vol))
    check_seen(seen, risk, events)
    # every refusal is a value with a known reason code, never an exception
    codes = {d.code for d in kernel.denials}
    assert codes <= {
        "stop_loss_missing",
        "stop_loss_wrong_side",
        "stop_loss_too_close",
        "max_order_qty",
        "max_order_notional",
        "max_position",
        "price_collar",
        "rate_per_minute",
        "rate_per_second",
        "halted",
        "loss_limit",
        "cooldown",
        "invalid_number",
        "reducing_only",
    }, codes
    assert len(seen) + len(kernel.denials) == kernel.stats["orders"] + kernel.stats["denied"]


@settings(max_examples=40, deadline=None)
@given(
    vol=st.sampled_from([0.003, 0.01, 0.03]),
    seed=st.integers(0, 10_000),
    limit=st.floats(0.05, 1.0),
    qty=st.floats(20.0, 400.0),
)
def test_after_a_loss_limit_trips_no_opening_order_passes_until_recovery(
    vol: float, seed: int, limit: float, qty: float
) -> None:
    """A strategy that keeps trying to buy every bar, a random price path, a daily loss limit."""
    plan_ = {i: [("buy", qty, "right", 0.2, "market", 0.0)] for i in range(0, 300, 3)}
    plan_.update({i: [("close", 1.0, "none", 0.0, "market", 0.0)] for i in range(1, 300, 7)})
    risk = {"daily_loss_pct": limit}
    kernel, seen, events = asyncio.run(run_random_backtest({"t": plan_}, risk, seed, vol))
    check_seen(seen, risk, events)
    trips = [e for e in events if e.type == "risk_state" and e.data.get("to") == "halted"]
    if trips:
        assert kernel.trading_state is TradingState.HALTED  # recovery is by operator: still halted
        assert trips[0].data["halt_kind"] == "loss_limit" and trips[0].data["metric"] == "daily_loss"
        assert all(s.now < trips[0].ts for s in seen)
        later = [d for d in kernel.denials if d.code in ("halted", "loss_limit")]
        assert later, "the strategy kept asking and was refused"


stream_step = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(["buy", "sell"]),
        st.floats(0.1, 20.0),
        st.sampled_from([None, 0.97, 1.03]),
        st.booleans(),
    ),
    st.tuples(st.just("state"), st.sampled_from(list(TradingState))),
    st.tuples(st.just("bar"), st.floats(-0.03, 0.03)),
)


@settings(max_examples=50, deadline=None)
@given(steps=st.lists(stream_step, min_size=1, max_size=60))
def test_random_order_streams_and_state_changes(steps: list[tuple[Any, ...]]) -> None:
    """Manual orders (the API/CLI path), operator state changes and bars, in any order: HALTED lets
    nothing new through, REDUCING only what shrinks a position."""

    async def go() -> list[Seen]:
        cfg = KernelConfig(
            strategies=[], symbols=["X"], initial_cash=INITIAL, broker={"name": "specpaper", "options": {}}
        )
        k = Kernel(cfg, plugin_host(BrokerPlugin(), NotifierPlugin()), mode="backtest")
        await k.setup()
        price, minute = 100.0, 0
        await feed(k, minute, price)
        for step in steps:
            if step[0] == "order":
                _, side, qty, sl, reduce = step
                stop = None if sl is None else price * (sl if side == "buy" else 2 - sl)
                d = await k.submit(
                    OrderRequest("X", Side(side), qty, stop_loss=stop, reduce_only=reduce, source="api")
                )
                assert d.approved or d.code in (
                    "halted",
                    "reducing_only",
                    "stop_loss_missing",
                    "stop_loss_wrong_side",
                ), d
            elif step[0] == "state":
                await k.set_trading_state(step[1], "property test", source="test")
            else:
                minute += 1
                price = max(1.0, price * (1 + step[1]))
                await feed(k, minute, price)
        b = k._broker._get()  # type: ignore[union-attr]
        assert isinstance(b, SpecPaper)
        return b.seen

    seen = asyncio.run(go())
    for s in seen:
        assert s.state is not TradingState.HALTED
        if s.state is TradingState.REDUCING:
            assert s.request.reduce_only or reduces_position(s.request, Position("X", s.net_qty))
        if not s.request.reduce_only and not reduces_position(s.request, Position("X", s.net_qty)):
            assert s.request.stop_loss is not None and math.isfinite(s.request.stop_loss)


entries_only = st.dictionaries(
    st.integers(0, 299),
    st.lists(
        st.tuples(
            st.sampled_from(["buy", "sell"]),
            st.floats(0.5, 30.0),
            st.just("right"),
            st.floats(0.002, 0.03),
            st.sampled_from(["market", "limit"]),
            st.floats(-0.01, 0.01),
        ),
        min_size=1,
        max_size=3,
    ),
    max_size=120,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    p=entries_only,
    limit=st.floats(5.0, 60.0),
    seed=st.integers(0, 10_000),
    vol=st.sampled_from([0.001, 0.005, 0.02]),
)
def test_the_position_never_exceeds_its_limit_even_with_many_working_orders(
    p: dict[int, list[Any]], limit: float, seed: int, vol: float
) -> None:
    """Several entries per bar, limits that work for many bars, stops that close positions: the actual
    position, replayed from every fill, never exceeds max_position_qty."""
    risk = {"max_position_qty": limit}
    kernel, seen, events = asyncio.run(run_random_backtest({"t": p}, risk, seed, vol))
    check_seen(seen, risk, events)
    net = 0.0
    for e in events:
        if e.type == "fill":
            net += e.data["qty"] if e.data["side"] == "buy" else -e.data["qty"]
            assert abs(net) <= limit + 1e-9, (net, limit, e.data)
    assert abs(net - kernel.portfolio.position("TEST").qty) < 1e-9
