"""The MetaTrader5 double behaves like a terminal: state, retcodes, errors, history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from stratkernel.testing.mt5_double import RATES_DTYPE, TICKS_DTYPE, MetaTrader5Double


@pytest.fixture
def mt5() -> MetaTrader5Double:
    m = MetaTrader5Double()
    m.sim_add_symbol("EURUSD", bid=1.10000, ask=1.10020, trade_stops_level=10)
    assert m.initialize(login=5001234, password="demo-password", server="Stratkernel-Demo")
    return m


def deal(m: MetaTrader5Double, type: int, volume: float, **kw: Any) -> Any:
    request = {"action": m.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": volume, "type": type,
               "type_filling": m.ORDER_FILLING_FOK, "magic": 42, **kw}  # fmt: skip
    return m.order_send(request)


def pending(m: MetaTrader5Double, type: int, price: float, volume: float = 0.1, **kw: Any) -> Any:
    request = {"action": m.TRADE_ACTION_PENDING, "symbol": "EURUSD", "volume": volume, "type": type,
               "price": price, "type_filling": m.ORDER_FILLING_RETURN, "magic": 42, **kw}  # fmt: skip
    return m.order_send(request)


# -- connection and errors ----------------------------------------------------------------------------
def test_calls_before_initialize_fail_with_no_ipc() -> None:
    m = MetaTrader5Double()
    assert m.account_info() is None
    assert m.last_error() == (-10004, "No IPC connection")
    assert m.positions_total() == 0 and m.last_error()[0] == -10004


def test_login_checks_credentials(mt5: MetaTrader5Double) -> None:
    assert not mt5.login(5001234, password="nope")
    assert mt5.last_error() == (-6, "Terminal: Authorization failed")
    assert mt5.login(5001234, password="demo-password", server="Stratkernel-Demo")
    assert mt5.last_error() == (1, "Success")
    assert not mt5.login("5001234")  # type: ignore[arg-type]
    assert mt5.last_error() == (-2, 'Invalid "login" argument')


def test_killed_terminal_gives_ipc_errors_until_reinitialized(mt5: MetaTrader5Double) -> None:
    mt5.sim_kill_terminal(restartable=False)
    assert mt5.terminal_info() is None and mt5.last_error()[0] == -10001
    assert not mt5.initialize() and mt5.last_error()[0] == -10003
    mt5.sim_kill_terminal(restartable=True)
    mt5.sim_fail_initializations(1)
    assert not mt5.initialize() and mt5.last_error()[0] == -10005
    assert mt5.initialize() and mt5.terminal_info() is not None


def test_shutdown_closes_ipc(mt5: MetaTrader5Double) -> None:
    mt5.shutdown()
    assert mt5.version() is None and mt5.last_error()[0] == -10004


def test_version_and_infos(mt5: MetaTrader5Double) -> None:
    version = mt5.version()
    assert version is not None and version[0] == 500
    ti = mt5.terminal_info()
    assert ti.trade_allowed and ti.connected and ti._asdict()["name"] == "MetaTrader 5"
    ai = mt5.account_info()
    assert (ai.login, ai.balance, ai.margin_mode) == (
        5001234,
        10_000.0,
        mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
    )


def test_malformed_requests_return_none_with_the_argument_named(mt5: MetaTrader5Double) -> None:
    assert deal(mt5, 0, 1) is None  # volume must be a float
    assert mt5.last_error() == (-2, 'Invalid "volume" argument')
    assert deal(mt5, 0, 0.1, comment="x" * 32) is None
    assert mt5.last_error() == (-2, 'Invalid "comment" argument')
    assert mt5.order_send("buy") is None and mt5.last_error()[0] == -2  # type: ignore[arg-type]


# -- market orders, positions, netting ---------------------------------------------------------------
def test_open_add_reduce_reverse_close_in_netting(mt5: MetaTrader5Double) -> None:
    r = deal(mt5, mt5.ORDER_TYPE_BUY, 0.1, comment="open")
    assert r.retcode == mt5.TRADE_RETCODE_DONE and r.price == 1.10020 and r.deal and r.order
    assert r.request.comment == "open" and r.request.magic == 42
    mt5.sim_set_price("EURUSD", 1.10100)
    deal(mt5, mt5.ORDER_TYPE_BUY, 0.1)  # add at 1.10120
    (p,) = mt5.positions_get(symbol="EURUSD")
    assert p.volume == 0.2 and p.price_open == pytest.approx((1.10020 + 1.10120) / 2)
    r = deal(mt5, mt5.ORDER_TYPE_SELL, 0.05)  # reduce at bid 1.10100
    out = mt5.history_deals_get(ticket=r.deal)[0]
    assert out.entry == mt5.DEAL_ENTRY_OUT and out.profit == pytest.approx(
        (1.10100 - 1.10070) * 5000, abs=0.01
    )
    r = deal(mt5, mt5.ORDER_TYPE_SELL, 0.25)  # reverse: close 0.15, open 0.1 short
    assert mt5.history_deals_get(ticket=r.deal)[0].entry == mt5.DEAL_ENTRY_INOUT
    (p,) = mt5.positions_get()
    assert p.type == mt5.POSITION_TYPE_SELL and p.volume == pytest.approx(0.1)
    deal(mt5, mt5.ORDER_TYPE_BUY, 0.1)
    assert mt5.positions_get() == () and mt5.positions_total() == 0
    realized = sum(d.profit for d in mt5.history_deals_get(0, 2**32))
    assert mt5.account_info().balance == pytest.approx(10_000.0 + realized, abs=0.01)


def test_hedging_keeps_separate_positions_and_closes_by_ticket() -> None:
    m = MetaTrader5Double(hedging=True)
    m.sim_add_symbol("EURUSD", bid=1.1, ask=1.1002)
    m.initialize()
    a = deal(m, m.ORDER_TYPE_BUY, 0.1)
    deal(m, m.ORDER_TYPE_SELL, 0.2)
    assert m.positions_total() == 2
    r = deal(m, m.ORDER_TYPE_SELL, 0.05, position=a.order)
    assert r.retcode == m.TRADE_RETCODE_DONE
    assert sorted(p.volume for p in m.positions_get()) == [0.05, 0.2]
    assert deal(m, m.ORDER_TYPE_SELL, 0.5, position=a.order).retcode == m.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    assert deal(m, m.ORDER_TYPE_SELL, 0.05, position=999).retcode == m.TRADE_RETCODE_POSITION_CLOSED
    short = next(p for p in m.positions_get() if p.type == m.POSITION_TYPE_SELL)
    long_ = next(p for p in m.positions_get() if p.type == m.POSITION_TYPE_BUY)
    r = m.order_send(
        {"action": m.TRADE_ACTION_CLOSE_BY, "position": long_.ticket, "position_by": short.ticket}
    )
    assert r.retcode == m.TRADE_RETCODE_DONE
    (left,) = m.positions_get()
    assert left.type == m.POSITION_TYPE_SELL and left.volume == pytest.approx(0.15)


def test_modify_sl_tp_of_a_position(mt5: MetaTrader5Double) -> None:
    r = deal(mt5, mt5.ORDER_TYPE_BUY, 0.1)
    ok = mt5.order_send({"action": mt5.TRADE_ACTION_SLTP, "position": r.order, "sl": 1.0950, "tp": 1.1100})
    assert ok.retcode == mt5.TRADE_RETCODE_DONE
    assert mt5.positions_get(ticket=r.order)[0].sl == 1.0950
    again = mt5.order_send({"action": mt5.TRADE_ACTION_SLTP, "position": r.order, "sl": 1.0950, "tp": 1.1100})
    assert again.retcode == mt5.TRADE_RETCODE_NO_CHANGES
    close = mt5.order_send({"action": mt5.TRADE_ACTION_SLTP, "position": r.order, "sl": 1.09995, "tp": 0.0})
    assert close.retcode == mt5.TRADE_RETCODE_INVALID_STOPS  # inside the 10-point stops level


def test_take_profit_closes_the_position(mt5: MetaTrader5Double) -> None:
    r = deal(mt5, mt5.ORDER_TYPE_SELL, 0.1, tp=1.0950)
    mt5.sim_set_price("EURUSD", 1.0940, 1.0945)
    assert mt5.positions_get() == ()
    closing = [d for d in mt5.history_deals_get(position=r.order) if d.entry == mt5.DEAL_ENTRY_OUT]
    assert closing[0].reason == mt5.DEAL_REASON_TP and closing[0].comment == "[tp 1.09500]"
    assert closing[0].profit == pytest.approx((1.1000 - 1.0945) * 10_000, abs=0.01)


# -- pending orders ---------------------------------------------------------------------------------------
def test_pending_orders_trigger_on_price(mt5: MetaTrader5Double) -> None:
    lim = pending(mt5, mt5.ORDER_TYPE_BUY_LIMIT, 1.0950, sl=1.0900)
    stp = pending(mt5, mt5.ORDER_TYPE_SELL_STOP, 1.0800)
    assert lim.retcode == stp.retcode == mt5.TRADE_RETCODE_DONE and mt5.orders_total() == 2
    mt5.sim_set_price("EURUSD", 1.0960, 1.0962)
    assert mt5.orders_total() == 2
    mt5.sim_set_price("EURUSD", 1.0948, 1.0950)
    assert mt5.orders_total() == 1
    (p,) = mt5.positions_get()
    assert (p.type, p.price_open, p.sl, p.identifier) == (mt5.POSITION_TYPE_BUY, 1.0950, 1.0900, lim.order)
    hist = mt5.history_orders_get(ticket=lim.order)[0]
    assert hist.state == mt5.ORDER_STATE_FILLED and hist.position_id == lim.order


def test_stop_limit_becomes_a_limit_when_triggered(mt5: MetaTrader5Double) -> None:
    r = pending(mt5, mt5.ORDER_TYPE_BUY_STOP_LIMIT, 1.1050, stoplimit=1.1030)
    assert r.retcode == mt5.TRADE_RETCODE_DONE
    mt5.sim_set_price("EURUSD", 1.1050, 1.1052)
    (o,) = mt5.orders_get()
    assert (o.type, o.price_open) == (mt5.ORDER_TYPE_BUY_LIMIT, 1.1030)
    mt5.sim_set_price("EURUSD", 1.1028, 1.1030)
    assert mt5.orders_total() == 0 and mt5.positions_get()[0].price_open == 1.1030


def test_modify_and_remove_pending(mt5: MetaTrader5Double) -> None:
    r = pending(mt5, mt5.ORDER_TYPE_BUY_LIMIT, 1.0950)
    ok = mt5.order_send({"action": mt5.TRADE_ACTION_MODIFY, "order": r.order, "price": 1.0900, "sl": 1.0850})
    assert ok.retcode == mt5.TRADE_RETCODE_DONE and mt5.orders_get(ticket=r.order)[0].price_open == 1.0900
    gone = mt5.order_send({"action": mt5.TRADE_ACTION_REMOVE, "order": r.order})
    assert gone.retcode == mt5.TRADE_RETCODE_DONE and mt5.orders_total() == 0
    assert mt5.history_orders_get(ticket=r.order)[0].state == mt5.ORDER_STATE_CANCELED
    again = mt5.order_send({"action": mt5.TRADE_ACTION_REMOVE, "order": r.order})
    assert again.retcode == mt5.TRADE_RETCODE_INVALID_ORDER


def test_pending_expiration(mt5: MetaTrader5Double) -> None:
    expires = mt5.sim_now // 1000 + 60
    r = pending(mt5, mt5.ORDER_TYPE_BUY_LIMIT, 1.0950, type_time=mt5.ORDER_TIME_SPECIFIED, expiration=expires)
    assert r.retcode == mt5.TRADE_RETCODE_DONE
    mt5.sim_advance(61)
    assert mt5.orders_total() == 0
    assert mt5.history_orders_get(ticket=r.order)[0].state == mt5.ORDER_STATE_EXPIRED
    past = pending(mt5, mt5.ORDER_TYPE_BUY_LIMIT, 1.0950, type_time=mt5.ORDER_TIME_SPECIFIED, expiration=1)
    assert past.retcode == mt5.TRADE_RETCODE_INVALID_EXPIRATION


@pytest.mark.parametrize(
    ("type", "price", "retcode"),
    [
        (2, 1.1010, 10015),  # buy limit above ask
        (3, 1.0990, 10015),  # sell limit below bid
        (4, 1.1002, 10015),  # buy stop inside the stops level
        (5, 1.1010, 10015),  # sell stop above bid
        (9, 1.0950, 10013),  # no such pending type
    ],
)
def test_pending_price_rules(mt5: MetaTrader5Double, type: int, price: float, retcode: int) -> None:
    assert pending(mt5, type, price).retcode == retcode


# -- retcodes, checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setup", "kw", "retcode"),
    [
        (lambda m: m.sim_set_autotrading(False), {}, 10027),
        (lambda m: m.sim_set_account_trading(trade_expert=False), {}, 10026),
        (lambda m: m.sim_set_account_trading(trade_allowed=False), {}, 10017),
        (lambda m: m.sim_update_symbol("EURUSD", session_open=False), {}, 10018),
        (lambda m: m.sim_set_balance(1.0), {"volume": 1.0}, 10019),
        (lambda m: None, {"volume": 0.015}, 10014),
        (lambda m: None, {"volume": 101.0}, 10014),
        (lambda m: None, {"sl": 1.1001}, 10016),
        (lambda m: None, {"type_filling": 2}, 10009),  # RETURN is fine in market execution
        (lambda m: m.sim_update_symbol("EURUSD", filling_mode=2), {}, 10030),  # FOK not offered
        (lambda m: m.sim_update_symbol("EURUSD", trade_mode=1), {"type": 1}, 10042),
        (lambda m: m.sim_update_symbol("EURUSD", volume_limit=0.05), {}, 10034),
        (lambda m: m.sim_set_trade_server_connected(False), {}, 10031),
        (lambda m: m.sim_update_symbol("EURUSD", trade_exemode=1), {"price": 1.0990, "deviation": 5}, 10004),
        (lambda m: m.sim_update_symbol("EURUSD", trade_exemode=1), {"price": 1.10019, "deviation": 5}, 10009),
        (lambda m: m.sim_queue_retcode(10006), {}, 10006),
    ],
)
def test_order_send_retcodes(mt5: MetaTrader5Double, setup: Any, kw: dict[str, Any], retcode: int) -> None:
    setup(mt5)
    request = {"type": mt5.ORDER_TYPE_BUY, "volume": 0.1, **kw}
    r = deal(mt5, request.pop("type"), request.pop("volume"), **request)
    assert r.retcode == retcode
    if retcode != mt5.TRADE_RETCODE_DONE:
        assert r.deal == 0 and r.order == 0 and mt5.positions_total() == 0
        assert r.comment  # the server's explanation


def test_tradeapi_disabled_returns_none(mt5: MetaTrader5Double) -> None:
    mt5.sim_set_tradeapi_disabled(True)
    assert deal(mt5, 0, 0.1) is None
    assert mt5.last_error() == (-8, "Auto-Trading using Python API disabled in Terminal")


def test_order_check_reports_margin_after_and_does_not_trade(mt5: MetaTrader5Double) -> None:
    request = {
        "action": mt5.TRADE_ACTION_DEAL,
        "symbol": "EURUSD",
        "volume": 1.0,
        "type": 0,
        "type_filling": 0,
    }
    check = mt5.order_check(request)
    assert check.retcode == 0 and check.comment == "Done"
    assert check.margin == pytest.approx(1.1002 * 100_000 / 100, abs=0.01)
    assert check.margin_free == pytest.approx(10_000 - check.margin, abs=0.01)
    assert mt5.positions_total() == 0
    mt5.sim_set_balance(100.0)
    assert mt5.order_check(request).retcode == mt5.TRADE_RETCODE_NO_MONEY
    assert mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "EURUSD", 1.0, 1.1) == pytest.approx(1100.0)
    assert mt5.order_calc_profit(mt5.ORDER_TYPE_SELL, "EURUSD", 1.0, 1.1, 1.09) == pytest.approx(1000.0)


def test_manual_trades_have_magic_zero_and_client_reason(mt5: MetaTrader5Double) -> None:
    mt5.sim_set_autotrading(False)  # the AutoTrading button does not stop a person
    ticket = mt5.sim_manual_trade("EURUSD", mt5.ORDER_TYPE_SELL, 0.3, comment="by hand")
    (p,) = mt5.positions_get()
    assert (p.ticket, p.magic, p.reason, p.comment) == (ticket, 0, mt5.POSITION_REASON_CLIENT, "by hand")


# -- symbols and market data ----------------------------------------------------------------------------
def test_symbols_and_groups(mt5: MetaTrader5Double) -> None:
    mt5.sim_add_symbol("GBPUSD", bid=1.25, ask=1.2502)
    mt5.sim_add_symbol("XAUUSD", bid=2000.0, ask=2000.3, digits=2, point=0.01)
    assert mt5.symbols_total() == 3
    assert [s.name for s in mt5.symbols_get(group="*USD*,!XAU*")] == ["EURUSD", "GBPUSD"]
    info = mt5.symbol_info("XAUUSD")
    assert (info.digits, info.point, info.spread) == (2, 0.01, 30)
    assert mt5.symbol_info("NOPE") is None and mt5.last_error()[0] == -4
    tick = mt5.symbol_info_tick("EURUSD")
    assert (tick.bid, tick.ask, tick.time_msc) == (1.1, 1.1002, mt5.sim_now)
    deal(mt5, 0, 0.1)
    assert not mt5.symbol_select("EURUSD", False)  # cannot hide a symbol with an open position
    assert mt5.symbol_select("GBPUSD", False) and not mt5.symbol_info("GBPUSD").select


def test_rates_are_built_from_ticks_and_aggregated(mt5: MetaTrader5Double) -> None:
    start = mt5.sim_now // 1000
    for i in range(180):  # 3 minutes of 1-second ticks
        mt5.sim_set_price("EURUSD", 1.1000 + 0.0001 * (i % 7))
    m1 = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, start, start + 600)
    assert m1.dtype == RATES_DTYPE and len(m1) == 4
    assert (m1["time"] % 60 == 0).all() and (m1["high"] >= m1["low"]).all()
    m5 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M5, 0, 10)
    assert len(m5) == 1 and m5["tick_volume"][0] == m1["tick_volume"].sum()
    assert m5["high"][0] == m1["high"].max() and m5["close"][0] == m1["close"][-1]
    last_two = mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, datetime.fromtimestamp(start + 179, UTC), 2)
    assert list(last_two["time"]) == list(m1["time"][1:3])
    ticks = mt5.copy_ticks_range("EURUSD", start, start + 10, mt5.COPY_TICKS_ALL)
    assert ticks.dtype == TICKS_DTYPE and len(ticks) == 11
    assert mt5.copy_rates_range("EURUSD", 12345, start, start + 60) is None
    assert mt5.last_error() == (-2, 'Invalid "timeframe" argument')


def test_loaded_history_feeds_weekly_and_monthly_bars(mt5: MetaTrader5Double) -> None:
    days = 40
    t0 = 1_704_067_200  # 2024-01-01 00:00 UTC (a Monday)
    rates = np.zeros(days, dtype=RATES_DTYPE)
    rates["time"] = t0 + np.arange(days) * 86_400
    rates["open"] = rates["close"] = 1.1
    rates["high"], rates["low"] = 1.2, 1.0
    rates["tick_volume"] = 1
    mt5.sim_load_rates("EURUSD", rates)
    mn = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_MN1, t0, t0 + days * 86_400)
    assert [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d") for t in mn["time"]] == [
        "2024-01-01",
        "2024-02-01",
    ]
    w1 = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_W1, t0 - 86_400, t0 + days * 86_400)
    assert all(datetime.fromtimestamp(t, UTC).weekday() == 6 for t in w1["time"])  # weeks start on Sunday
    assert w1["tick_volume"][0] == 6  # Mon..Sat of the first week
