"""The paper broker on known cases: fills, brackets, slippage, fees, and money that adds up."""

from __future__ import annotations

import pytest

from stratkernel.core.model import Bar, Fill, Order, OrderRequest, OrderStatus, OrderType, Quote, Side
from stratkernel.plugins.paper import (
    PaperBroker,
    PercentFee,
    PerLotFee,
    SpreadSlippage,
    VolumeParticipationSlippage,
)


class Events:
    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.updates: list[Order] = []

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def on_order_update(self, order: Order) -> None:
        self.updates.append(order)


def bar(ts: int, o: float, h: float, lo: float, c: float, v: float = 100.0) -> Bar:
    return Bar(ts, o, h, lo, c, v, "X")


def order(oid: str, side: Side, qty: float, **kw: object) -> Order:
    return Order(oid, OrderRequest("X", side, qty, strategy="s", **kw))  # type: ignore[arg-type]


@pytest.fixture
def ev() -> Events:
    return Events()


async def test_market_order_fills_at_next_bar_open_with_spread_slippage(ev: Events) -> None:
    b = PaperBroker(ev, cash=1000.0, slippage=SpreadSlippage(spread_bps=20.0))
    b.on_market(bar(1, 10, 11, 9, 10))
    await b.submit(order("o1", Side.BUY, 2))
    assert ev.fills == []  # nothing fills on the bar the decision was made on
    b.on_market(bar(2, 10.0, 10.5, 9.5, 10.2))
    (f,) = ev.fills
    assert f.price == pytest.approx(10.0 * (1 + 0.001))  # half of 20 bps above the open
    assert f.ts == 2 and f.qty == 2
    acct = await b.account()
    assert acct.cash == pytest.approx(1000 - 2 * f.price)
    assert acct.equity == pytest.approx(acct.cash + 2 * 10.2)


async def test_quote_slippage_uses_the_live_spread(ev: Events) -> None:
    b = PaperBroker(ev)
    b.on_market(Quote(5, 99.0, 101.0, 100.0, "X"))
    await b.submit(order("o1", Side.SELL, 1))
    (f,) = ev.fills
    assert f.price == 99.0  # a market sell hits the bid


async def test_limit_and_stop_orders_trigger_on_range_and_gaps(ev: Events) -> None:
    b = PaperBroker(ev)
    await b.submit(order("lim", Side.BUY, 1, type=OrderType.LIMIT, limit_price=9.0))
    await b.submit(order("stp", Side.BUY, 1, type=OrderType.STOP, stop_price=12.0))
    b.on_market(bar(1, 10, 11, 9.5, 10))
    assert ev.fills == []
    b.on_market(bar(2, 8.5, 9.2, 8.0, 9.0))  # gaps below the limit: fills at the better open
    assert [(f.order_id, f.price) for f in ev.fills] == [("lim", 8.5)]
    b.slippage = SpreadSlippage(0.0)
    b.on_market(bar(3, 12.5, 13, 12.2, 12.8))  # gaps above the stop: fills at the open
    assert ev.fills[-1].order_id == "stp" and ev.fills[-1].price == 12.5


async def test_bracket_stop_loss_cancels_take_profit_and_stop_wins_ties(ev: Events) -> None:
    b = PaperBroker(ev, slippage=SpreadSlippage(0.0))
    await b.submit(order("e", Side.BUY, 1, stop_loss=9.0, take_profit=12.0))
    b.on_market(bar(1, 10, 10.5, 9.8, 10.2))
    assert [f.role for f in ev.fills] == ["entry"]
    legs = {o.id: o for o in ev.updates if o.parent_id == "e"}
    assert set(legs) == {"e.sl", "e.tp"}
    b.on_market(bar(2, 10, 12.5, 8.5, 10))  # both touched in one bar: assume the stop first
    assert [f.role for f in ev.fills] == ["entry", "stop_loss"]
    assert ev.fills[-1].price == 9.0
    assert legs["e.tp"].status is OrderStatus.CANCELLED
    assert await b.positions() == []


async def test_take_profit_and_fees(ev: Events) -> None:
    b = PaperBroker(ev, cash=100.0, slippage=SpreadSlippage(0.0), fees=PercentFee(0.1))
    await b.submit(order("e", Side.BUY, 2, stop_loss=9.0, take_profit=11.0))
    b.on_market(bar(1, 10, 10.5, 9.8, 10.2))
    b.on_market(bar(2, 10.4, 11.5, 10.3, 11.2))
    assert [(f.role, f.price) for f in ev.fills] == [("entry", 10.0), ("take_profit", 11.0)]
    fees = 2 * 10 * 0.001 + 2 * 11 * 0.001
    assert sum(f.fee for f in ev.fills) == pytest.approx(fees)
    acct = await b.account()
    assert acct.cash == pytest.approx(100 + 2 * (11 - 10) - fees)
    assert acct.equity == pytest.approx(acct.cash)


async def test_reduce_only_never_flips_and_resubmit_is_idempotent(ev: Events) -> None:
    b = PaperBroker(ev, slippage=SpreadSlippage(0.0))
    await b.submit(order("e", Side.BUY, 1))
    await b.submit(order("e", Side.BUY, 1))  # retried submit with the same client id
    b.on_market(bar(1, 10, 10, 10, 10))
    assert len(ev.fills) == 1
    await b.submit(order("c", Side.SELL, 5, reduce_only=True))
    b.on_market(bar(2, 10, 10, 10, 10))
    assert ev.fills[-1].qty == 1
    assert await b.positions() == []


def test_fee_and_slippage_models_on_known_cases() -> None:
    assert PerLotFee(7.0, 100_000).fee(200_000, 1.1) == pytest.approx(14.0)
    vp = VolumeParticipationSlippage(SpreadSlippage(0.0), impact_bps_at_full_volume=100.0)
    b = bar(1, 100, 100, 100, 100, v=1000.0)
    assert vp.price(Side.BUY, 100.0, None, 500.0, b) == pytest.approx(100.5)  # half the volume: 50 bps
    assert vp.price(Side.SELL, 100.0, None, 1000.0, b) == pytest.approx(99.0)
