"""Paper broker realism on known cases: partial fills against bar volume, decision-to-fill latency,
brackets sized to what filled, option parsing, and the backtest run-ahead seeing partial orders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stratkernel.core.backtest import run_backtest
from stratkernel.core.config import KernelConfig
from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError
from stratkernel.core.model import Bar, Fill, Order, OrderRequest, OrderStatus, OrderType, Quote, Side
from stratkernel.plugins.paper import (
    FullFill,
    PaperBroker,
    SpreadSlippage,
    VolumeParticipationFill,
    _factory,
)


class Events:
    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.updates: list[tuple[str, OrderStatus, float]] = []

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def on_order_update(self, order: Order) -> None:
        self.updates.append((order.id, order.status, order.request.qty))


def bar(ts: int, o: float, h: float, lo: float, c: float, v: float = 100.0) -> Bar:
    return Bar(ts, o, h, lo, c, v, "X")


def order(oid: str, side: Side, qty: float, created: int = 0, **kw: object) -> Order:
    return Order(oid, OrderRequest("X", side, qty, strategy="s", **kw), created_ts=created)  # type: ignore[arg-type]


def limit_buy(oid: str, qty: float, price: float, created: int = 0, **kw: object) -> Order:
    return order(oid, Side.BUY, qty, created, type=OrderType.LIMIT, limit_price=price, **kw)


@pytest.fixture
def ev() -> Events:
    return Events()


async def test_limit_order_fills_at_most_participation_of_bar_volume(ev: Events) -> None:
    b = PaperBroker(ev, cash=10_000.0, fill_model=VolumeParticipationFill(0.1))
    b.on_market(bar(0, 10, 10, 10, 10))
    o = limit_buy("o1", 25.0, 9.5)
    await b.submit(o)
    b.on_market(bar(1, 10, 10.2, 9.4, 9.6, v=100.0))  # touches 9.5: 10% of 100 = 10 fill
    assert o.status is OrderStatus.PARTIALLY_FILLED and o.filled_qty == pytest.approx(10.0)
    assert ("o1", OrderStatus.PARTIALLY_FILLED, 25.0) in ev.updates
    b.on_market(bar(2, 9.8, 10.0, 9.6, 9.9, v=1000.0))  # does not reach 9.5: nothing
    assert len(ev.fills) == 1
    assert await b.open_orders() == [o]
    assert b.working_triggers("s") == [(Side.BUY, OrderType.LIMIT, 9.5)]  # still working for the run-ahead
    b.on_market(bar(3, 9.5, 9.6, 9.3, 9.4, v=50.0))  # 5 more
    b.on_market(bar(4, 9.4, 9.5, 9.2, 9.3, v=1000.0))  # capacity 100 > 10 left: completes
    assert [f.qty for f in ev.fills] == pytest.approx([10.0, 5.0, 10.0])
    assert [f.ts for f in ev.fills] == [1, 3, 4]
    assert [f.price for f in ev.fills] == pytest.approx([9.5, 9.5, 9.4])  # limit, limit, gap-through open
    assert len({f.id for f in ev.fills}) == 3
    assert o.status is OrderStatus.FILLED and o.filled_qty == pytest.approx(25.0)
    assert o.avg_fill_price == pytest.approx((10 * 9.5 + 5 * 9.5 + 10 * 9.4) / 25)
    assert await b.open_orders() == [] and b.working_triggers("s") == []
    (pos,) = await b.positions()
    assert pos.qty == pytest.approx(25.0)
    acct = await b.account()
    assert acct.cash == pytest.approx(10_000.0 - (10 * 9.5 + 5 * 9.5 + 10 * 9.4))


async def test_orders_share_a_bars_volume_in_submission_order(ev: Events) -> None:
    b = PaperBroker(ev, fill_model=VolumeParticipationFill(0.2))
    b.on_market(bar(0, 10, 10, 10, 10))
    first, second = limit_buy("a", 15.0, 9.5), limit_buy("b", 15.0, 9.5)
    await b.submit(first)
    await b.submit(second)
    b.on_market(bar(1, 10, 10, 9.0, 9.2, v=100.0))  # capacity 20 for the bar
    assert (first.filled_qty, second.filled_qty) == pytest.approx((15.0, 5.0))
    b.on_market(bar(2, 9.2, 9.4, 9.0, 9.1, v=100.0))
    assert second.filled_qty == pytest.approx(15.0)


async def test_zero_volume_bar_fills_no_limit_order_and_market_orders_are_not_capped(ev: Events) -> None:
    b = PaperBroker(ev, fill_model=VolumeParticipationFill(0.1), slippage=SpreadSlippage(0.0))
    b.on_market(bar(0, 10, 10, 10, 10))
    lim = limit_buy("l", 1.0, 11.0)
    mkt = order("m", Side.BUY, 50.0)
    await b.submit(lim)
    await b.submit(mkt)
    b.on_market(bar(1, 10, 10, 10, 10, v=0.0))
    assert lim.filled_qty == 0.0 and lim.status is OrderStatus.ACCEPTED
    assert mkt.status is OrderStatus.FILLED and mkt.filled_qty == 50.0


async def test_partial_fill_respects_qty_step(ev: Events) -> None:
    b = PaperBroker(ev, fill_model=VolumeParticipationFill(0.1), qty_step=1.0)
    b.on_market(bar(0, 10, 10, 10, 10))
    o = limit_buy("o", 3.0, 10.0)
    await b.submit(o)
    b.on_market(bar(1, 10, 10, 9, 9.5, v=17.0))  # 1.7 -> 1 whole step
    b.on_market(bar(2, 10, 10, 9, 9.5, v=5.0))  # 0.5 -> less than a step: nothing
    assert [f.qty for f in ev.fills] == [1.0]


async def test_brackets_grow_with_each_partial_fill_and_protect_only_what_filled(ev: Events) -> None:
    b = PaperBroker(ev, fill_model=VolumeParticipationFill(0.1))
    b.on_market(bar(0, 10, 10, 10, 10))
    o = limit_buy("e", 30.0, 10.0, stop_loss=8.0, take_profit=13.0)
    await b.submit(o)
    b.on_market(bar(1, 10, 10.5, 9.8, 10.2, v=100.0))  # 10 filled: legs open for 10
    legs = {x.role: x for x in await b.open_orders() if x.role != "entry"}
    assert {r: x.request.qty for r, x in legs.items()} == {"stop_loss": 10.0, "take_profit": 10.0}
    assert legs["stop_loss"].id == "e.sl" and legs["take_profit"].id == "e.tp"
    b.on_market(bar(2, 10, 10.5, 9.9, 10.1, v=100.0))  # 10 more: the same legs grow to 20
    assert {x.role: x.request.qty for x in await b.open_orders() if x.role != "entry"} == {
        "stop_loss": 20.0,
        "take_profit": 20.0,
    }
    # the price runs away from the entry limit and hits the stop: the stop closes the 20 held
    b.on_market(bar(3, 9.0, 9.0, 7.5, 7.8, v=0.0))  # no volume: the entry cannot fill, the stop can
    sl_fill = ev.fills[-1]
    assert sl_fill.role == "stop_loss" and sl_fill.qty == pytest.approx(20.0)
    assert legs["take_profit"].status is OrderStatus.CANCELLED
    assert await b.positions() == []
    # the entry (10 left) is still working; if it fills again, new legs protect the new position
    assert o.status is OrderStatus.PARTIALLY_FILLED
    b.on_market(bar(4, 9.0, 10.0, 8.8, 9.5, v=1000.0))
    assert o.status is OrderStatus.FILLED
    new_legs = {x.role: x for x in await b.open_orders()}
    assert {r: (x.id, x.request.qty) for r, x in new_legs.items()} == {
        "stop_loss": ("e.sl2", 10.0),
        "take_profit": ("e.tp2", 10.0),
    }


async def test_take_profit_partial_fill_keeps_the_stop(ev: Events) -> None:
    b = PaperBroker(ev, fill_model=VolumeParticipationFill(0.1))
    b.on_market(bar(0, 10, 10, 10, 10))
    await b.submit(order("e", Side.BUY, 10.0, take_profit=12.0, stop_loss=8.0))  # market entry: full
    b.on_market(bar(1, 10, 10, 10, 10, v=1000.0))
    b.on_market(bar(2, 11, 12.5, 11, 12, v=40.0))  # take-profit limit: 4 of 10
    tp = next(x for x in await b.open_orders() if x.role == "take_profit")
    sl = next(x for x in await b.open_orders() if x.role == "stop_loss")
    assert tp.status is OrderStatus.PARTIALLY_FILLED and tp.filled_qty == pytest.approx(4.0)
    assert sl.status.is_open
    (pos,) = await b.positions()
    assert pos.qty == pytest.approx(6.0)
    b.on_market(bar(3, 9, 9, 7, 7.5, v=40.0))  # stop: closes the 6 left, the take-profit is cancelled
    assert ev.fills[-1].role == "stop_loss" and ev.fills[-1].qty == pytest.approx(6.0)
    assert await b.positions() == [] and await b.open_orders() == []


async def test_latency_delays_eligibility_to_the_first_bar_at_or_after_decision_plus_latency(
    ev: Events,
) -> None:
    b = PaperBroker(ev, latency_ms=150, slippage=SpreadSlippage(0.0))
    b.on_market(bar(0, 10, 10, 10, 10))
    o = order("m", Side.BUY, 1.0, created=0)
    await b.submit(o)
    b.on_market(bar(60, 11, 11, 11, 11))  # 60 < 150: not yet
    b.on_market(bar(120, 12, 12, 12, 12))  # 120 < 150: not yet
    assert ev.fills == []
    b.on_market(bar(180, 13, 13, 13, 13))  # first bar with ts >= 150
    (f,) = ev.fills
    assert (f.ts, f.price) == (180, 13.0)


async def test_zero_latency_keeps_the_next_bar_rule(ev: Events) -> None:
    b = PaperBroker(ev, latency_ms=0, slippage=SpreadSlippage(0.0))
    b.on_market(bar(0, 10, 10, 10, 10))
    await b.submit(order("m", Side.BUY, 1.0, created=0))
    b.on_market(bar(60, 11, 11, 11, 11))
    assert [f.ts for f in ev.fills] == [60]


async def test_latency_applies_to_limit_orders_and_quotes_but_not_to_resting_legs(ev: Events) -> None:
    b = PaperBroker(ev, latency_ms=100, slippage=SpreadSlippage(0.0))
    b.on_market(Quote(1000, 9.9, 10.1, 10.0, "X"))
    m = order("m", Side.BUY, 1.0, created=1000, stop_loss=9.0)
    await b.submit(m)
    assert ev.fills == []  # the live quote is older than decision + latency
    b.on_market(Quote(1050, 9.9, 10.1, 10.0, "X"))
    assert ev.fills == []
    b.on_market(Quote(1100, 9.9, 10.1, 10.0, "X"))
    assert [f.ts for f in ev.fills] == [1100]
    lim = limit_buy("l", 1.0, 9.5, created=2000)
    await b.submit(lim)
    b.on_market(bar(2050, 9.4, 9.4, 9.4, 9.4))  # crosses the limit, but 2050 < 2100
    assert lim.status is OrderStatus.ACCEPTED
    # the stop leg of "m" rests at the venue since 1100: this bar (before l's latency passed) may hit it
    b.on_market(bar(2060, 8.9, 8.9, 8.5, 8.6))
    assert ev.fills[-1].role == "stop_loss" and ev.fills[-1].ts == 2060
    b.on_market(bar(2100, 9.4, 9.4, 9.3, 9.3))
    assert lim.status is OrderStatus.FILLED and ev.fills[-1].ts == 2100


async def test_default_fill_model_fills_whole() -> None:
    assert FullFill().bar_capacity(bar(0, 1, 1, 1, 1, v=0.0)) == float("inf")
    assert VolumeParticipationFill(0.25).bar_capacity(bar(0, 1, 1, 1, 1, v=8.0)) == 2.0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"partial_fills": "yes"}, "broker.options.partial_fills"),
        ({"partial_fills": True, "participation": 0.0}, "broker.options.participation"),
        ({"participation": 1.5}, "broker.options.participation"),
        ({"participation": True}, "broker.options.participation"),
        ({"partial_fills": False, "participation": 0.2}, "broker.options.participation"),
        ({"latency_ms": -1}, "broker.options.latency_ms"),
        ({"latency_ms": 1.5}, "broker.options.latency_ms"),
        ({"latency_ms": "100"}, "broker.options.latency_ms"),
    ],
)
def test_factory_refuses_bad_options_by_name(options: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _factory(options, Events())
    assert field in str(exc.value)


def test_factory_builds_the_models() -> None:
    b = _factory({"partial_fills": True, "latency_ms": 250}, Events())
    assert b.fill_model == VolumeParticipationFill(0.1) and b.latency_ms == 250
    assert _factory({"participation": 0.05}, Events()).fill_model == VolumeParticipationFill(0.05)
    assert _factory({}, Events()).fill_model == FullFill()


LIMIT_SCRIPT = """
PARAMS = {"qty": {"default": 30.0, "min": 0.1, "max": 1000.0}}


def on_bar(ctx, bar):
    if ctx.bar_index == 0:
        ctx.buy(ctx.params["qty"], type="limit", limit_price=bar.close, stop_loss=bar.close * 0.9)
"""


def _series(n: int = 40) -> BarSeries:
    ts = np.arange(n, dtype=np.int64) * 60_000
    close = np.full(n, 100.0)
    return BarSeries.from_arrays("SYNTH-USD", ts, close, close + 0.5, close - 0.5, close, np.full(n, 50.0))


def test_backtest_with_partial_fills_and_latency_through_the_kernel(tmp_path: Path) -> None:
    path = tmp_path / "limit_once.py"
    path.write_text(LIMIT_SCRIPT)
    cfg = KernelConfig(
        strategies=[],
        data_dir=str(tmp_path),
        broker={
            "name": "paper",
            "options": {"partial_fills": True, "participation": 0.2, "latency_ms": 120_000},
        },
    )
    res = run_backtest(str(path), _series(), config=cfg)
    assert res.failure is None
    # decision at bar 0 (ts 0); eligible from ts >= 120000 = bar 2; 20% of 50 = 10 per bar -> bars 2, 3, 4
    assert [(f.ts, f.qty) for f in res.fills] == [(120_000, 10.0), (180_000, 10.0), (240_000, 10.0)]
    assert len({f.id for f in res.fills}) == 3
    cfg0 = KernelConfig(strategies=[], data_dir=str(tmp_path), broker={"name": "paper", "options": {}})
    res0 = run_backtest(str(path), _series(), config=cfg0)
    assert [(f.ts, f.qty) for f in res0.fills] == [(60_000, 30.0)]


CLOSE_WHEN_FULL = """
def on_bar(ctx, bar):
    if ctx.bar_index == 0:
        ctx.buy(30.0, type="limit", limit_price=bar.close, stop_loss=bar.close * 0.9)
    elif ctx.position.qty >= 30.0 and not ctx.state.get("closed"):
        ctx.state["closed"] = ctx.bar_index
        ctx.close()
"""


def test_sandboxed_script_sees_each_partial_fill_before_deciding(tmp_path: Path) -> None:
    path = tmp_path / "close_when_full.py"
    path.write_text(CLOSE_WHEN_FULL)
    cfg = KernelConfig(
        strategies=[],
        data_dir=str(tmp_path),
        broker={"name": "paper", "options": {"participation": 0.2, "latency_ms": 120_000}},
    )
    res = run_backtest(str(path), _series(), config=cfg)
    assert res.failure is None
    # entry parts at bars 2, 3, 4; the script sees 30 held at bar 4 and closes; latency: fills at bar 6
    assert [(f.ts, f.side, f.qty, f.role) for f in res.fills] == [
        (120_000, Side.BUY, 10.0, "entry"),
        (180_000, Side.BUY, 10.0, "entry"),
        (240_000, Side.BUY, 10.0, "entry"),
        (360_000, Side.SELL, 30.0, "close"),
    ]
