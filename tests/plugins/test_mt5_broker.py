"""The MT5 broker plugin against the stateful MetaTrader5 double (the real package is Windows-only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from stratkernel.core.errors import BrokerConnectionError, BrokerError, ConfigError
from stratkernel.core.model import Fill, Order, OrderRequest, OrderStatus, OrderType, Side
from stratkernel.plugins.mt5_plugin import (
    MT5Broker,
    comment_for,
    make_broker,
    strategy_number,
)
from stratkernel.testing.mt5_double import MetaTrader5Double

MAGIC_BASE = 20_240_000


class Recorder:
    """BrokerEvents that remembers what the broker reported."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.updates: list[tuple[str, OrderStatus, str]] = []

    def on_order_update(self, order: Order) -> None:
        self.updates.append((order.id, order.status, order.reason))

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def last_status(self, order_id: str) -> tuple[OrderStatus, str]:
        for oid, status, reason in reversed(self.updates):
            if oid == order_id:
                return status, reason
        raise AssertionError(f"no update for {order_id}")


def make_double(**kwargs: Any) -> MetaTrader5Double:
    mt5 = MetaTrader5Double(**kwargs)
    mt5.sim_add_symbol("EURUSD", bid=1.10000, ask=1.10020, trade_stops_level=10)
    mt5.sim_add_symbol(
        "US500", bid=5000.0, ask=5000.5, digits=1, point=0.1, trade_tick_size=0.1, trade_tick_value=0.1,
        trade_contract_size=1.0, volume_min=0.1, volume_step=0.1, volume_max=50.0, trade_calc_mode=2,
        margin_rate=0.05, filling_mode=0, currency_base="USD", currency_margin="USD",
    )  # fmt: skip
    return mt5


@pytest.fixture
def mt5() -> MetaTrader5Double:
    return make_double()


@pytest.fixture
def events() -> Recorder:
    return Recorder()


def config(mt5: MetaTrader5Double, **extra: Any) -> dict[str, Any]:
    return {
        "module": mt5, "login": 5001234, "password": "demo-password", "server": "Stratkernel-Demo",
        "symbols": ["EURUSD"], "poll_interval": 0.0, "reconnect_base_delay": 0.0, "magic_base": MAGIC_BASE,
        **extra,
    }  # fmt: skip


@pytest.fixture
async def broker(mt5: MetaTrader5Double, events: Recorder) -> AsyncIterator[MT5Broker]:
    b = make_broker(config(mt5), events)
    await b.connect()
    yield b
    await b.close()


def order(
    oid: str,
    side: Side = Side.BUY,
    qty: float = 0.1,
    *,
    symbol: str = "EURUSD",
    type: OrderType = OrderType.MARKET,
    strategy: str = "trend",
    **kw: Any,
) -> Order:
    return Order(oid, OrderRequest(symbol=symbol, side=side, qty=qty, type=type, strategy=strategy, **kw))


# -- connecting, account, preflight, symbols -------------------------------------------------------------
async def test_connect_logs_in_and_loads_symbol_spec(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    assert "initialize" in mt5.calls
    spec = broker.symbol_spec("EURUSD")
    assert spec is not None
    assert (spec.qty_step, spec.min_qty, spec.max_qty) == (0.01, 0.01, 100.0)
    assert spec.price_tick == 0.00001
    assert spec.min_stop_distance == pytest.approx(10 * 0.00001)
    assert spec.contract_size == 100_000.0
    assert spec.margin_rate == pytest.approx(0.01)  # leverage 1:100
    cfd = broker.symbol_spec("US500")  # loaded on demand
    assert cfd is not None and cfd.margin_rate == pytest.approx(0.05, rel=1e-3) and cfd.max_qty == 50.0
    assert broker.symbol_spec("NOPE") is None


async def test_wrong_password_is_a_clear_broker_error(mt5: MetaTrader5Double, events: Recorder) -> None:
    b = make_broker(config(mt5, password="wrong"), events)
    with pytest.raises(BrokerError, match=r"refused login 5001234.*Authorization failed"):
        await b.connect()
    await b.close()


async def test_password_comes_from_the_environment(
    mt5: MetaTrader5Double, events: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATKERNEL_MT5_PASSWORD", "demo-password")
    cfg = config(mt5)
    del cfg["password"]
    b = make_broker(cfg, events)
    await b.connect()
    assert (await b.account()).cash == 10_000.0
    await b.close()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"login": "5001234"}, "login"),
        ({"deviation": -1}, "deviation"),
        ({"symbols": "EURUSD"}, "symbols"),
        ({"reconect_attempts": 3}, "reconect_attempts"),
        ({"timeframe": "M7"}, "timeframe"),
    ],
)
def test_bad_config_names_the_field(mt5: MetaTrader5Double, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_broker({**config(mt5), **options}, Recorder())
    assert info.value.field == field


def test_missing_password_is_refused(mt5: MetaTrader5Double, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRATKERNEL_MT5_PASSWORD", raising=False)
    cfg = config(mt5)
    del cfg["password"]
    with pytest.raises(ConfigError, match="STRATKERNEL_MT5_PASSWORD"):
        make_broker(cfg, Recorder())


def test_without_the_package_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "MetaTrader5", None)  # import fails as on Linux
    with pytest.raises(ConfigError, match=r"Windows.*stratkernel\[mt5\]"):
        make_broker({"poll_interval": 0.0}, Recorder())


async def test_account_maps_balance_equity_margin(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    await broker.submit(order("a1", qty=1.0))
    mt5.sim_set_price("EURUSD", 1.10120)  # +0.0010 on 1 lot = +100 USD
    acct = await broker.account()
    info = mt5.account_info()
    assert acct.cash == 10_000.0
    assert acct.equity == pytest.approx(10_100.0)
    assert acct.margin_used == info.margin and acct.free_margin == info.margin_free
    assert acct.margin_level == pytest.approx(info.margin_level, rel=1e-3)
    assert (acct.currency, acct.leverage) == ("USD", 100.0)


async def test_preflight_follows_the_autotrading_switch(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    assert (await broker.preflight()).trading_allowed
    mt5.sim_set_autotrading(False)
    pf = await broker.preflight()
    assert not pf.trading_allowed and "AutoTrading" in pf.reason
    mt5.sim_set_autotrading(True)
    mt5.sim_set_account_trading(trade_allowed=False)
    pf = await broker.preflight()
    assert not pf.trading_allowed and "may not trade" in pf.reason
    mt5.sim_set_account_trading(trade_expert=False)
    assert "automated trading" in (await broker.preflight()).reason
    mt5.sim_set_account_trading()
    mt5.sim_set_tradeapi_disabled(True)
    assert "Python API" in (await broker.preflight()).reason
    mt5.sim_set_tradeapi_disabled(False)
    mt5.sim_set_trade_server_connected(False)
    assert "trade server" in (await broker.preflight()).reason


# -- market orders --------------------------------------------------------------------------------------
async def test_market_order_fills_with_deal_ticket_magic_and_comment(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("ord-1", stop_loss=1.0950, take_profit=1.1100))
    # order_check always comes before order_send
    sends = [i for i, c in enumerate(mt5.calls) if c == "order_send"]
    assert len(sends) == 1 and mt5.calls[sends[0] - 1] == "order_check"
    assert len(events.fills) == 1
    fill = events.fills[0]
    deal = mt5.history_deals_get(ticket=int(fill.id.removeprefix("mt5-deal-")))[0]
    assert fill.id == f"mt5-deal-{deal.ticket}"
    assert (fill.order_id, fill.side, fill.qty, fill.price) == ("ord-1", Side.BUY, 0.1, 1.10020)
    assert deal.magic == MAGIC_BASE + strategy_number("trend")
    assert deal.comment == "sk:ord-1"
    assert events.last_status("ord-1")[0] is OrderStatus.FILLED
    (pos,) = mt5.positions_get()
    assert (pos.sl, pos.tp, pos.volume) == (1.0950, 1.1100, 0.1)


async def test_same_order_id_twice_sends_once(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    o = order("dup-1")
    await broker.submit(o)
    await broker.submit(o)
    assert mt5.calls.count("order_send") == 1
    assert len(mt5.positions_get()) == 1 and len(events.fills) == 1


async def test_resubmit_after_restart_adopts_the_existing_order(
    mt5: MetaTrader5Double, events: Recorder
) -> None:
    first = make_broker(config(mt5), events)
    await first.connect()
    await first.submit(order("restart-1", type=OrderType.LIMIT, limit_price=1.0900))
    await first.close()
    second_events = Recorder()
    second = make_broker(config(mt5), second_events)  # a new process after a crash
    await second.connect()
    await second.submit(order("restart-1", type=OrderType.LIMIT, limit_price=1.0900))
    assert len(mt5.orders_get()) == 1
    status, _ = second_events.last_status("restart-1")
    assert status is OrderStatus.ACCEPTED
    await second.close()


async def test_resubmit_after_restart_of_a_filled_order_replays_its_fill(
    mt5: MetaTrader5Double, events: Recorder
) -> None:
    first = make_broker(config(mt5), events)
    await first.connect()
    await first.submit(order("restart-2"))
    await first.close()
    (original,) = events.fills
    second_events = Recorder()
    second = make_broker(config(mt5), second_events)
    await second.connect()
    await second.submit(order("restart-2"))
    assert mt5.positions_total() == 1 and mt5.calls.count("order_send") == 1
    assert [f.id for f in second_events.fills] == [original.id]  # same id: the kernel counts it once
    assert second_events.last_status("restart-2")[0] is OrderStatus.FILLED
    await second.close()


async def test_partial_fill_of_a_market_order_cancels_the_rest(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_update_symbol("EURUSD", filling_mode=2, liquidity=0.15)  # IOC only; 0.15 lots available
    await broker.submit(order("part", qty=0.2))
    (fill,) = events.fills
    assert fill.qty == 0.15
    status, reason = events.last_status("part")
    assert status is OrderStatus.CANCELLED and "partially filled: 0.15 of 0.2" in reason
    assert mt5.positions_get()[0].volume == 0.15


async def test_fill_or_kill_without_liquidity_is_rejected(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_update_symbol("EURUSD", liquidity=0.15)  # FOK offered and chosen first
    await broker.submit(order("fok", qty=0.2))
    status, reason = events.last_status("fok")
    assert status is OrderStatus.REJECTED and reason.startswith("rejected:") and "10006" in reason
    assert events.fills == []


async def test_comments_fit_31_chars_and_map_back(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    long_id = "0123456789abcdef0123456789abcdef-strategy-x"
    assert len(comment_for(long_id)) <= 31 and comment_for(long_id) == comment_for(long_id)
    assert comment_for("short") == "sk:short"
    await broker.submit(order(long_id, type=OrderType.LIMIT, limit_price=1.0900))
    (working,) = await broker.open_orders()
    assert working.id == long_id
    assert len(mt5.orders_get()[0].comment) <= 31


async def test_volume_is_rounded_to_step_and_validated(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("v1", qty=0.1 + 0.2))  # 0.30000000000000004: floating noise only
    assert mt5.positions_get()[0].volume == 0.3
    await broker.submit(order("v2", qty=0.015))
    status, reason = events.last_status("v2")
    assert status is OrderStatus.REJECTED and reason.startswith("invalid_volume") and "volume_step" in reason
    await broker.submit(order("v3", qty=0.001))
    assert "volume_min" in events.last_status("v3")[1]
    await broker.submit(order("v4", qty=500.0))
    assert "volume_max" in events.last_status("v4")[1]
    assert mt5.calls.count("order_send") == 1  # refused before reaching the terminal


async def test_stops_closer_than_stops_level_are_refused_before_sending(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("s1", stop_loss=1.09995))  # 0.5 points below bid; level is 10 points
    status, reason = events.last_status("s1")
    assert status is OrderStatus.REJECTED and reason.startswith("invalid_stops")
    assert "trade_stops_level" in reason
    await broker.submit(order("s2", side=Side.SELL, stop_loss=1.0990))  # wrong side for a sell
    assert "must be above" in events.last_status("s2")[1]
    assert "order_send" not in mt5.calls


async def test_filling_mode_is_chosen_from_symbol_flags(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    await broker.submit(order("f1"))
    assert (
        mt5.history_orders_get(ticket=mt5.positions_get()[0].ticket)[0].type_filling == mt5.ORDER_FILLING_FOK
    )
    mt5.sim_update_symbol("EURUSD", filling_mode=2)
    await broker.submit(order("f2"))
    last = max(o.ticket for o in mt5.history_orders_get(0, 2**32))
    assert mt5.history_orders_get(ticket=last)[0].type_filling == mt5.ORDER_FILLING_IOC
    await broker.submit(order("f3", symbol="US500", qty=0.1, strategy="idx"))  # no flags, market execution
    last = max(o.ticket for o in mt5.history_orders_get(0, 2**32))
    assert mt5.history_orders_get(ticket=last)[0].type_filling == mt5.ORDER_FILLING_RETURN


async def test_no_usable_filling_mode_is_refused(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_update_symbol("US500", trade_exemode=mt5.SYMBOL_TRADE_EXECUTION_INSTANT)
    await broker.submit(order("nf", symbol="US500"))
    status, reason = events.last_status("nf")
    assert status is OrderStatus.REJECTED and reason.startswith("invalid_filling")


# -- retcodes --------------------------------------------------------------------------------------------
async def test_autotrading_off_is_rejected_with_10027(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_set_autotrading(False)
    await broker.submit(order("at"))
    status, reason = events.last_status("at")
    assert status is OrderStatus.REJECTED
    assert reason.startswith("autotrading_disabled:") and "10027" in reason and "AutoTrading button" in reason
    assert mt5.positions_get() == ()


@pytest.mark.parametrize(
    ("setup", "code", "retcode"),
    [
        (lambda m: m.sim_update_symbol("EURUSD", session_open=False), "market_closed", 10018),
        (lambda m: m.sim_set_balance(10.0), "insufficient_funds", 10019),
        (lambda m: m.sim_update_symbol("EURUSD", trade_mode=0), "trading_disabled", 10017),
        (lambda m: m.sim_update_symbol("EURUSD", trade_mode=2), "short_only", 10043),
        (lambda m: m.sim_update_symbol("EURUSD", trade_mode=3), "close_only", 10044),
        (lambda m: m.sim_set_trade_server_connected(False), "no_connection", 10031),
        (lambda m: m.sim_set_account_trading(trade_expert=False), "autotrading_disabled_by_server", 10026),
        (lambda m: m.sim_queue_retcode(10006), "rejected", 10006),
        (lambda m: m.sim_queue_retcode(10013), "invalid_request", 10013),
        (lambda m: m.sim_queue_retcode(10014), "invalid_volume", 10014),
        (lambda m: m.sim_queue_retcode(10015), "invalid_price", 10015),
        (lambda m: m.sim_queue_retcode(10016), "invalid_stops", 10016),
    ],
)
async def test_each_failure_retcode_maps_to_a_clear_rejection(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder, setup: Any, code: str, retcode: int
) -> None:
    setup(mt5)
    await broker.submit(order("r1", qty=1.0))
    status, reason = events.last_status("r1")
    assert status is OrderStatus.REJECTED
    assert reason.startswith(f"{code}:") and f"retcode {retcode}" in reason
    assert events.fills == [] and mt5.positions_get() == ()


async def test_symbol_changes_during_the_session_are_respected(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_update_symbol("EURUSD", trade_stops_level=500)  # the broker widens stops before news
    await broker.submit(order("ss", stop_loss=1.0990))
    status, reason = events.last_status("ss")
    assert status is OrderStatus.REJECTED and "at least 500 points" in reason
    assert "order_send" not in mt5.calls


async def test_requote_is_retried_with_a_fresh_price(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_queue_retcode(10004, count=2)
    await broker.submit(order("rq"))
    assert mt5.calls.count("order_send") == 3
    assert events.last_status("rq")[0] is OrderStatus.FILLED and len(events.fills) == 1


async def test_requotes_beyond_the_retry_budget_reject(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_queue_retcode(10004, count=10)
    await broker.submit(order("rq2"))
    status, reason = events.last_status("rq2")
    assert status is OrderStatus.REJECTED and reason.startswith("requote:") and "4 attempts" in reason
    assert mt5.calls.count("order_send") == 4


async def test_malformed_request_returns_none_and_is_reported(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_set_tradeapi_disabled(True)
    await broker.submit(order("api"))
    status, reason = events.last_status("api")
    assert status is OrderStatus.REJECTED and "Python API disabled" in reason


# -- pending orders, cancel, poll -----------------------------------------------------------------------
async def test_limit_order_is_placed_then_fills_on_poll(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("lim", type=OrderType.LIMIT, limit_price=1.0950, stop_loss=1.0900))
    assert events.last_status("lim")[0] is OrderStatus.ACCEPTED
    (working,) = await broker.open_orders()
    assert (working.id, working.request.type, working.request.limit_price) == ("lim", OrderType.LIMIT, 1.0950)
    assert working.request.strategy == "trend"
    mt5.sim_set_price("EURUSD", 1.0940)
    await broker.poll()
    assert events.last_status("lim")[0] is OrderStatus.FILLED
    (fill,) = events.fills
    # the market gapped through the limit: the double fills at the (better) ask, as a server may
    deal = mt5.history_deals_get(ticket=int(fill.id.removeprefix("mt5-deal-")))[0]
    assert (fill.order_id, fill.qty, fill.price) == ("lim", 0.1, deal.price)
    assert fill.price <= 1.0950
    assert await broker.open_orders() == []
    await broker.poll()
    assert len(events.fills) == 1  # a fill is reported once


async def test_stop_order_triggers(broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder) -> None:
    await broker.submit(order("stp", side=Side.SELL, type=OrderType.STOP, stop_price=1.0900))
    mt5.sim_set_price("EURUSD", 1.0890)
    await broker.poll()
    assert events.fills[0].side is Side.SELL and events.last_status("stp")[0] is OrderStatus.FILLED
    assert mt5.positions_get()[0].type == mt5.POSITION_TYPE_SELL


async def test_pending_price_on_the_wrong_side_is_invalid_price(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("bad", type=OrderType.LIMIT, limit_price=1.2000))  # buy limit above ask
    status, reason = events.last_status("bad")
    assert status is OrderStatus.REJECTED and reason.startswith("invalid_price") and "10015" in reason


async def test_cancel_removes_the_pending_order(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("c1", type=OrderType.LIMIT, limit_price=1.0900))
    await broker.cancel("c1")
    assert events.last_status("c1")[0] is OrderStatus.CANCELLED
    assert mt5.orders_get() == ()
    with pytest.raises(BrokerError, match="not working"):
        await broker.cancel("c1")


async def test_cancellation_at_the_terminal_and_expiry_are_reported(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("gone", type=OrderType.LIMIT, limit_price=1.0900))
    await broker.submit(order("late", type=OrderType.LIMIT, limit_price=1.0900))
    ticket = mt5.orders_get()[0].ticket
    mt5.sim_manual_cancel(ticket)  # the person at the terminal deletes the order by hand
    mt5.sim_manual_trade("EURUSD", mt5.ORDER_TYPE_BUY, 0.01)  # and trades by hand
    await broker.poll()
    status, reason = events.last_status("gone")
    assert status is OrderStatus.CANCELLED and "terminal" in reason
    assert events.fills == []  # the manual trade is not the kernel's fill
    assert events.last_status("late")[0] is OrderStatus.ACCEPTED


async def test_stop_loss_hit_is_reported_as_a_stop_loss_fill(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    await broker.submit(order("sl-entry", qty=0.5, stop_loss=1.0950))
    mt5.sim_set_price("EURUSD", 1.0940)
    await broker.poll()
    entry, exit_ = events.fills
    assert exit_.role == "stop_loss" and exit_.order_id == "sl-entry"
    assert (exit_.side, exit_.qty, exit_.price) == (Side.SELL, 0.5, 1.0940)
    assert mt5.positions_get() == ()
    assert entry.id != exit_.id


# -- positions --------------------------------------------------------------------------------------------
async def test_positions_include_manual_ones(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    await broker.submit(order("p1", qty=0.2))
    mt5.sim_manual_trade("US500", mt5.ORDER_TYPE_SELL, 1.0)
    positions = {p.symbol: p for p in await broker.positions()}
    assert positions["EURUSD"].qty == 0.2 and positions["EURUSD"].strategy == "trend"
    assert positions["EURUSD"].avg_price == pytest.approx(1.10020)
    assert positions["US500"].qty == -1.0 and positions["US500"].strategy == "manual"


async def test_netting_close_and_reverse(broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder) -> None:
    await broker.submit(order("n1", qty=0.3))
    await broker.submit(order("n2", side=Side.SELL, qty=0.1, reduce_only=True))
    assert [p.qty for p in await broker.positions()] == [0.2]
    await broker.submit(order("n3", side=Side.SELL, qty=0.5))
    (pos,) = await broker.positions()
    assert pos.qty == pytest.approx(-0.3) and pos.avg_price == pytest.approx(1.10000)


async def test_hedging_reduce_only_closes_positions_by_ticket(events: Recorder) -> None:
    mt5 = make_double(hedging=True)
    b = make_broker(config(mt5), events)
    await b.connect()
    mt5.sim_manual_trade("EURUSD", mt5.ORDER_TYPE_BUY, 0.1)  # manual long, opened first
    await b.submit(order("h1", qty=0.2))
    await b.submit(order("h2", qty=0.1, side=Side.SELL))  # hedging: a second, opposite position
    assert mt5.positions_total() == 3
    await b.submit(order("h3", side=Side.SELL, qty=0.25, reduce_only=True))
    left = mt5.positions_get()
    # the strategy's own long (0.2) closed first, then 0.05 of the manual one
    assert sorted((p.magic, p.type, p.volume) for p in left) == [
        (0, mt5.POSITION_TYPE_BUY, 0.05),
        (MAGIC_BASE + strategy_number("trend"), mt5.POSITION_TYPE_SELL, 0.1),
    ]
    assert events.last_status("h3")[0] is OrderStatus.FILLED
    assert [f.qty for f in events.fills if f.order_id == "h3"] == [0.2, 0.05]
    await b.close()


# -- the terminal going away ------------------------------------------------------------------------------
async def test_reconnects_when_the_terminal_restarts(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    mt5.sim_kill_terminal()
    mt5.sim_fail_initializations(2)  # still starting up for two attempts
    acct = await broker.account()
    assert acct.cash == 10_000.0
    assert mt5.calls.count("initialize") == 1 + 3


async def test_gives_up_after_the_reconnect_budget(broker: MT5Broker, mt5: MetaTrader5Double) -> None:
    mt5.sim_kill_terminal(restartable=False)
    with pytest.raises(BrokerConnectionError, match="after 5 reconnect attempts"):
        await broker.account()
    pf = await broker.preflight()
    assert not pf.trading_allowed and "unreachable" in pf.reason


async def test_order_send_lost_in_a_crash_is_not_sent_twice(
    broker: MT5Broker, mt5: MetaTrader5Double, events: Recorder
) -> None:
    mt5.sim_drop_connection_after("order_send")  # executed, but the answer never arrives
    await broker.submit(order("crash-1"))
    assert len(mt5.positions_get()) == 1
    assert mt5.calls.count("order_send") == 1
    assert events.last_status("crash-1")[0] is OrderStatus.FILLED and len(events.fills) == 1


async def test_poll_runs_in_the_background(mt5: MetaTrader5Double, events: Recorder) -> None:
    b = make_broker(config(mt5, poll_interval=0.001), events)
    await b.connect()
    await b.submit(order("bg", type=OrderType.LIMIT, limit_price=1.0950))
    mt5.sim_set_price("EURUSD", 1.0940)
    import asyncio

    for _ in range(2000):  # wait for the background task, without asserting on how long it takes
        if events.fills:
            break
        await asyncio.sleep(0.001)
    assert events.fills and events.fills[0].order_id == "bg"
    await b.close()


def test_strategy_numbers_are_stable_and_in_range() -> None:
    assert strategy_number("") == 0
    assert strategy_number("trend") == strategy_number("trend")
    assert 1 <= strategy_number("mean-reversion") < 100_000
    assert strategy_number("trend") != strategy_number("mean-reversion")
