"""The ccxt broker against the Binance-spot emulator: real ccxt (async + pro) over real HTTP/websockets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import ccxt
import pytest

from stratkernel.core.broker import Broker
from stratkernel.core.errors import BrokerError, ConfigError
from stratkernel.core.model import Fill, Order, OrderRequest, OrderStatus, OrderType, Side
from stratkernel.core.plugins import load_plugins
from stratkernel.plugins.ccxt_plugin import CcxtBroker, venue_client_id
from stratkernel.plugins.ccxt_plugin.exchange import Backoff
from stratkernel.testing.exchange_emulator import ExchangeEmulator, ccxt_config

SYM = "BTC/USDT"


class Recorder:
    """BrokerEvents that remembers everything, as the kernel would receive it."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, OrderStatus, float]] = []
        self.fills: list[Fill] = []

    def on_order_update(self, order: Order) -> None:
        self.updates.append((order.id, order.status, order.filled_qty))

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def statuses(self, order_id: str) -> list[OrderStatus]:
        return [s for oid, s, _ in self.updates if oid == order_id]


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for an asynchronous outcome; fails the test if it never happens."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def order(
    oid: str,
    side: Side = Side.BUY,
    qty: float = 0.01,
    type: OrderType = OrderType.MARKET,
    limit: float | None = None,
    stop: float | None = None,
) -> Order:
    return Order(oid, OrderRequest(SYM, side, qty, type, limit_price=limit, stop_price=stop, strategy="s1"))


@pytest.fixture
async def emu() -> AsyncIterator[ExchangeEmulator]:
    e = ExchangeEmulator(api_key="test-key", secret="test-secret", balances={"USDT": 10_000.0, "BTC": 0.0})
    e.add_market(SYM, price=20_000.0, qty_step=0.0001, price_tick=0.01, min_notional=10.0)
    e.add_market("ETH/USDT", price=1_000.0, qty_step=0.001, price_tick=0.01, min_notional=10.0)
    await e.start()
    yield e
    await e.stop()


async def make_broker(emu: ExchangeEmulator, **extra: Any) -> tuple[CcxtBroker, Recorder]:
    rec = Recorder()
    opts = {
        "retry_base": 0.02,
        "retry_cap": 0.1,
        "poll_interval": 0.2,
        "ws_poll_interval": 5.0,
        "timeout_ms": 1500,
        "doubt_window": 0.05,
    }
    opts.update(extra)
    broker = CcxtBroker(ccxt_config(emu, **opts), rec)
    await broker.connect()
    return broker, rec


@pytest.fixture
async def broker(emu: ExchangeEmulator) -> AsyncIterator[tuple[CcxtBroker, Recorder]]:
    b, rec = await make_broker(emu)
    yield b, rec
    await b.close()


# -- plugin wiring -----------------------------------------------------------------------------------------
def test_plugin_registers_broker_data_source_and_uri() -> None:
    host = load_plugins()
    assert host.registry.has("broker", "ccxt")
    assert host.registry.has("data_source", "ccxt")
    assert host.hook.resolve_data_source(uri="ccxt:binance:BTC/USDT:5m") == (
        "ccxt",
        {"exchange": "binance", "symbols": ["BTC/USDT"], "timeframe": "5m"},
    )
    assert not [f for f in host.failures if f.plugin == "ccxt"]


def test_bad_config_is_named() -> None:
    with pytest.raises(ConfigError, match=r"ccxt\.exchange"):
        CcxtBroker({"exchange": "nosuchexchange"}, Recorder())
    with pytest.raises(ConfigError, match=r"ccxt\.pollinterval"):
        CcxtBroker({"exchange": "binance", "pollinterval": 1}, Recorder())
    with pytest.raises(ConfigError, match=r"ccxt\.max_retries"):
        CcxtBroker({"exchange": "binance", "max_retries": -1}, Recorder())


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATKERNEL_CCXT_API_KEY", "env-key")
    monkeypatch.setenv("STRATKERNEL_CCXT_SECRET", "env-secret")
    b = CcxtBroker({"exchange": "binance"}, Recorder())
    assert (b.cfg["api_key"], b.cfg["secret"]) == ("env-key", "env-secret")


def test_client_ids_fit_binance_and_are_stable() -> None:
    assert venue_client_id("ord-1_A") == "ord-1_A"
    long_id = "strategy/with spaces:" + "x" * 40
    mapped = venue_client_id(long_id)
    assert mapped == venue_client_id(long_id) and len(mapped) <= 36 and mapped.replace("-", "").isalnum()


def test_backoff_grows_is_capped_and_jittered() -> None:
    import random

    b = Backoff(0.5, 8.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(12)]
    for i, d in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2**i)
        assert ceiling / 2 <= d <= ceiling
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jitter: capped delays are not all identical
    b.reset()
    assert b.next_delay() <= 0.5


# -- the emulator checks what Binance checks -----------------------------------------------------------
async def test_emulator_rejects_a_bad_signature_with_1022(emu: ExchangeEmulator) -> None:
    query = f"timestamp={int(time.time() * 1000)}&recvWindow=5000"
    good = hmac.new(b"test-secret", query.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"{emu.http_url}/api/v3/account?{query}&signature={good}", headers={"X-MBX-APIKEY": "test-key"}
        ) as r:
            assert r.status == 200 and "balances" in await r.json()
        async with s.get(
            f"{emu.http_url}/api/v3/account?{query}&signature={'0' * 64}",
            headers={"X-MBX-APIKEY": "test-key"},
        ) as r:
            assert (r.status, (await r.json())["code"]) == (400, -1022)
        async with s.get(
            f"{emu.http_url}/api/v3/account?{query}&signature={good}", headers={"X-MBX-APIKEY": "other"}
        ) as r:
            assert (r.status, (await r.json())["code"]) == (401, -2015)
        stale = f"timestamp={int(time.time() * 1000) - 60_000}&recvWindow=5000"
        sig = hmac.new(b"test-secret", stale.encode(), hashlib.sha256).hexdigest()
        async with s.get(
            f"{emu.http_url}/api/v3/account?{stale}&signature={sig}", headers={"X-MBX-APIKEY": "test-key"}
        ) as r:
            assert (await r.json())["code"] == -1021
        body = urllib.parse.urlencode(
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "MARKET",
                "quantity": "0.01",
                "timestamp": int(time.time() * 1000),
            }
        )
        async with s.post(
            f"{emu.http_url}/api/v3/order",
            data=body + "&signature=" + "1" * 64,
            headers={"X-MBX-APIKEY": "test-key", "Content-Type": "application/x-www-form-urlencoded"},
        ) as r:
            assert (await r.json())["code"] == -1022
    assert emu.stats.bad_signatures == 2
    assert emu.stats.order_posts == 0  # a badly signed order never reaches the matching engine


async def test_wrong_secret_fails_connect_with_auth(emu: ExchangeEmulator) -> None:
    b = CcxtBroker(ccxt_config(emu, secret="wrong"), Recorder())
    with pytest.raises(BrokerError, match="auth"):
        await b.connect()
    await b.close()


# -- broker behaviour ------------------------------------------------------------------------------------
async def test_connect_loads_markets_once_and_specs(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, _ = broker
    assert isinstance(b, Broker)
    spec = b.symbol_spec(SYM)
    assert spec is not None
    assert (spec.qty_step, spec.min_qty, spec.price_tick, spec.min_notional) == (0.0001, 0.0001, 0.01, 10.0)
    assert b.symbol_spec("NOPE/USDT") is None
    assert emu.stats.requests.get("GET /api/v3/exchangeInfo") == 1
    assert (await b.preflight()).trading_allowed


async def test_market_buy_fills_with_venue_trade_ids(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, rec = broker
    o = order("m1", qty=0.05)
    await b.submit(o)
    assert o.status is OrderStatus.FILLED and o.filled_qty == pytest.approx(0.05)
    assert o.avg_fill_price == pytest.approx(20_000.0)
    assert [f.id for f in rec.fills] == [f"binance:{SYM}:{emu.trades[0].trade_id}"]
    assert rec.fills[0].order_id == "m1" and rec.fills[0].strategy == "s1"
    assert emu.balance("BTC")[0] == pytest.approx(0.05)
    acct = await b.account()
    assert acct.cash == pytest.approx(9_000.0) and acct.equity == pytest.approx(10_000.0)
    assert acct.currency == "USDT"
    pos = await b.positions()
    assert [(p.symbol, p.qty, p.avg_price) for p in pos] == [
        (SYM, pytest.approx(0.05), pytest.approx(20_000.0))
    ]


async def test_limit_order_fills_by_websocket_with_partial_fills(emu: ExchangeEmulator) -> None:
    # The poller is set to 60 s, so within the test only the websocket can deliver the updates.
    b, rec = await make_broker(emu, poll_interval=60.0, ws_poll_interval=60.0)
    try:
        await _ws_partial_fills(emu, b, rec)
    finally:
        await b.close()


async def _ws_partial_fills(emu: ExchangeEmulator, b: CcxtBroker, rec: Recorder) -> None:
    await until(lambda: emu.user_subscribers == 1)
    o = order("l1", qty=0.1, type=OrderType.LIMIT, limit=19_000.0)
    await b.submit(o)
    assert o.status is OrderStatus.ACCEPTED and o.broker_order_id
    assert emu.balance("USDT") == (pytest.approx(8_100.0), pytest.approx(1_900.0))
    await emu.set_price(SYM, 18_990.0, liquidity=0.04)
    await until(lambda: o.status is OrderStatus.PARTIALLY_FILLED)
    assert o.filled_qty == pytest.approx(0.04) and len(rec.fills) == 1
    await emu.set_price(SYM, 18_980.0)
    await until(lambda: o.status is OrderStatus.FILLED)
    assert sum(f.qty for f in rec.fills) == pytest.approx(0.1)
    assert len({f.id for f in rec.fills}) == 2 and all(f.price == 19_000.0 for f in rec.fills)
    assert rec.statuses("l1") == [OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]


async def test_polling_tracks_orders_without_websocket(emu: ExchangeEmulator) -> None:
    b, rec = await make_broker(emu, use_websocket=False)
    try:
        o = order("p1", qty=0.1, type=OrderType.LIMIT, limit=19_000.0)
        await b.submit(o)
        await emu.set_price(SYM, 18_000.0)
        await until(lambda: o.status is OrderStatus.FILLED)
        assert len(rec.fills) == 1 and emu.user_subscribers == 0
    finally:
        await b.close()


async def test_stop_order_is_native_and_triggers(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, rec = broker
    await b.submit(order("buy", qty=0.1))
    stop = order("sl", side=Side.SELL, qty=0.1, type=OrderType.STOP, stop=19_500.0)
    await b.submit(stop)
    venue = emu.order_by_client_id("sl")
    assert venue is not None and venue.type == "STOP_LOSS" and venue.stop_price == 19_500.0
    await emu.set_price(SYM, 19_800.0)
    assert stop.status is OrderStatus.ACCEPTED
    await emu.set_price(SYM, 19_400.0)
    await until(lambda: stop.status is OrderStatus.FILLED)
    assert rec.fills[-1].price == 19_400.0 and rec.fills[-1].side is Side.SELL


async def test_cancel(emu: ExchangeEmulator) -> None:
    b, rec = await make_broker(emu, use_websocket=False, poll_interval=3600.0)
    try:
        await _cancel(emu, b, rec)
    finally:
        await b.close()


async def _cancel(emu: ExchangeEmulator, b: CcxtBroker, rec: Recorder) -> None:
    o = order("c1", qty=0.1, type=OrderType.LIMIT, limit=15_000.0)
    await b.submit(o)
    assert [x.id for x in await b.open_orders()] == ["c1"]
    await b.cancel("c1")
    assert o.status is OrderStatus.CANCELLED
    assert emu.balance("USDT") == (pytest.approx(10_000.0), pytest.approx(0.0))
    n = len(rec.updates)
    await b.cancel("c1")  # nothing to do: no error raised into the kernel, no new update, reason kept
    assert b.last_cancel_error == "already cancelled" and len(rec.updates) == n
    await b.cancel("unknown")
    assert b.last_cancel_error == "not an order this broker tracks"
    assert await b.open_orders() == []
    # filled at the venue before the cancel arrives: the fill is reported, not an error
    o2 = order("c2", qty=0.1, type=OrderType.LIMIT, limit=15_000.0)
    await b.submit(o2)
    venue = emu.order_by_client_id("c2")
    assert venue is not None
    await emu.set_price(SYM, 14_999.0)  # fills at the venue; this broker has no websocket and polls hourly
    assert o2.status is OrderStatus.ACCEPTED
    await b.cancel("c2")
    assert o2.status is OrderStatus.FILLED and b.last_cancel_error == "already filled"
    assert rec.fills[-1].order_id == "c2"


async def test_precision_and_min_notional_checked_before_sending(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, _rec = broker
    cases = [
        (order("x1", qty=0.00015), "not a multiple of the step"),
        (order("x2", qty=0.0001), "notional .* below the minimum 10"),
        (order("x3", qty=0.01, type=OrderType.LIMIT, limit=19_000.005), "not a multiple of the tick"),
        (Order("x4", OrderRequest("DOGE/USDT", Side.BUY, 1.0)), "no market"),
    ]
    for o, msg in cases:
        await b.submit(o)  # refusals are reported as REJECTED updates, never raised into the kernel
        assert o.status is OrderStatus.REJECTED
        assert re.search(msg, o.reason), o.reason
        assert o.reason.split(":")[0] in ("invalid_order", "unknown_symbol")
    assert emu.stats.order_posts == 0
    assert [s for _, s, _ in _rec.updates] == [OrderStatus.REJECTED] * 4


async def test_exchange_refusals_map_to_reason_codes(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, _rec = broker
    o = order("big", qty=1.0)
    await b.submit(o)
    assert o.status is OrderStatus.REJECTED and o.reason.startswith("insufficient_funds: ")
    assert emu.stats.order_posts == 1  # refused once, not retried
    emu.can_trade = False
    o2 = order("blocked", qty=0.01)
    await b.submit(o2)
    assert o2.status is OrderStatus.REJECTED and o2.reason.startswith("invalid_order: ")
    pf = await b.preflight()
    assert not pf.trading_allowed and "canTrade" in pf.reason


async def test_preflight_reports_maintenance_and_unreachable(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, _ = broker
    emu.system_status = 1
    pf = await b.preflight()
    assert not pf.trading_allowed and "maintenance" in pf.reason
    emu.system_status = 0
    emu.faults.server_errors = 1
    pf = await b.preflight()
    assert not pf.trading_allowed and "unreachable" in pf.reason


# -- faults ---------------------------------------------------------------------------------------------
async def test_lost_order_response_does_not_double_the_order(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, rec = broker
    emu.faults.lose_order_responses = 1
    o = order("lost1", qty=0.05)  # a market order: filled at once, so Binance would NOT flag a resend
    await b.submit(o)
    assert emu.stats.order_posts == 1
    assert len(emu.orders) == 1 and o.status is OrderStatus.FILLED
    assert len(rec.fills) == 1 and emu.balance("BTC")[0] == pytest.approx(0.05)


async def test_duplicate_client_id_is_looked_up_not_repeated(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, _rec = broker
    o = order("dup1", qty=0.1, type=OrderType.LIMIT, limit=19_000.0)
    await b.submit(o)
    # A second broker (a restarted kernel that lost its memory) submits the same order id again.
    b2, _rec2 = await make_broker(emu)
    try:
        again = order("dup1", qty=0.1, type=OrderType.LIMIT, limit=19_000.0)
        await b2.submit(again)
        assert emu.stats.order_posts == 2 and len(emu.orders) == 1  # venue said -2010 Duplicate order sent.
        assert again.status is OrderStatus.ACCEPTED and again.broker_order_id == o.broker_order_id
        await b.submit(o)  # the same broker resubmitting: not even sent
        assert emu.stats.order_posts == 2
    finally:
        await b2.close()


@pytest.mark.parametrize("fault", ["timeouts", "server_errors", "rate_limited"])
async def test_network_faults_are_retried(emu: ExchangeEmulator, fault: str) -> None:
    b, rec = await make_broker(emu, use_websocket=False, timeout_ms=400, doubt_window=30.0)
    try:
        emu.faults.timeout_delay = 0.8
        emu.faults.retry_after = 1
        emu.faults.only_paths = ("/api/v3/order",)
        setattr(emu.faults, fault, 2)
        waits: list[float] = []

        async def record(delay: float) -> None:
            waits.append(delay)

        b.sleep = record
        o = order(f"f-{fault}", qty=0.01)
        await b.submit(o)
        assert o.status is OrderStatus.FILLED and len(emu.orders) == 1 and len(rec.fills) == 1
        if fault == "rate_limited":
            # a 429 means "not processed": no lookup, just wait the Retry-After: 1 and send again
            assert len(waits) == 2 and all(w >= 1.0 for w in waits)
            assert emu.stats.requests.get("GET /api/v3/order", 0) == 0
        else:
            # the POST is in doubt: backoff, a lookup that fails too (backoff), a lookup that finds
            # nothing, the wait until the doubt window has passed, a last lookup, then the resend
            assert len(waits) == 3 and all(w <= 0.1 for w in waits[:2])  # backoff capped at retry_cap
            assert 20.0 < waits[2] <= 30.0  # the rest of the 30 s doubt window (the recorder returns at once)
            assert emu.stats.requests["GET /api/v3/order"] == 3
    finally:
        await b.close()


async def test_unreachable_venue_leaves_order_pending_then_resolves(emu: ExchangeEmulator) -> None:
    b, rec = await make_broker(emu, use_websocket=False, max_retries=1, poll_interval=0.1)
    try:
        emu.faults.only_paths = ("/api/v3/order",)  # the POST and the lookups by client id fail
        emu.faults.server_errors = 10
        o = order("down1", qty=0.01)
        await b.submit(o)
        assert o.status is OrderStatus.PENDING and o.reason.startswith("venue_unreachable")
        assert len(emu.orders) == 0 and rec.statuses("down1") == [OrderStatus.PENDING]
        emu.faults.server_errors = 0
        # the poller asks the venue by client id: it never arrived, so it is REJECTED, never resent
        await until(lambda: o.status is OrderStatus.REJECTED)
        assert "never arrived" in o.reason and emu.stats.order_posts == 0
    finally:
        await b.close()


async def test_dropped_websocket_reconnects_and_poller_covers_the_gap(emu: ExchangeEmulator) -> None:
    b, rec = await make_broker(emu, ws_poll_interval=30.0)
    try:
        await until(lambda: emu.user_subscribers == 1)
        o = order("ws1", qty=0.1, type=OrderType.LIMIT, limit=19_000.0)
        await b.submit(o)
        await emu.drop_websockets()
        await emu.set_price(SYM, 18_000.0)  # fills while nobody listens
        await until(lambda: o.status is OrderStatus.FILLED)
        assert b.ws_errors >= 1 and len(rec.fills) == 1
        await until(lambda: emu.user_subscribers == 1)  # the stream came back on its own
        o2 = order("ws2", qty=0.1, type=OrderType.LIMIT, limit=17_000.0)
        await b.submit(o2)
        await emu.set_price(SYM, 16_000.0)
        await until(lambda: o2.status is OrderStatus.FILLED)
    finally:
        await b.close()


# -- restart ---------------------------------------------------------------------------------------------
async def test_reconcile_after_restart_picks_up_what_happened(emu: ExchangeEmulator) -> None:
    b, _rec = await make_broker(emu)
    filled = order("r-filled", qty=0.1, type=OrderType.LIMIT, limit=19_000.0)
    cancelled = order("r-cancel", qty=0.1, type=OrderType.LIMIT, limit=15_000.0)
    working = order("r-open", qty=0.1, type=OrderType.LIMIT, limit=14_000.0)
    for o in (filled, cancelled, working):
        await b.submit(o)
    await b.close()  # the kernel goes down
    await emu.set_price(SYM, 18_500.0)
    venue = emu.order_by_client_id("r-cancel")
    assert venue is not None
    async with aiohttp.ClientSession() as s:  # cancelled by hand on the website meanwhile
        q = f"symbol=BTCUSDT&origClientOrderId=r-cancel&timestamp={int(time.time() * 1000)}"
        sig = hmac.new(b"test-secret", q.encode(), hashlib.sha256).hexdigest()
        async with s.delete(
            f"{emu.http_url}/api/v3/order?{q}&signature={sig}", headers={"X-MBX-APIKEY": "test-key"}
        ) as r:
            assert r.status == 200
    never_sent = order("r-never", qty=0.01)  # PENDING in the store, the crash came before the POST

    b2, rec2 = await make_broker(emu)
    try:
        restored = [
            order(o.id, qty=0.1, type=OrderType.LIMIT, limit=o.request.limit_price)
            for o in (filled, cancelled, working)
        ]
        for r_, o in zip(restored, (filled, cancelled, working), strict=True):
            r_.status = OrderStatus.ACCEPTED
            r_.broker_order_id = o.broker_order_id
        posts = emu.stats.order_posts
        await b2.reconcile([*restored, never_sent])
        assert [r_.status for r_ in restored] == [
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.ACCEPTED,
        ]
        assert never_sent.status is OrderStatus.REJECTED
        assert emu.stats.order_posts == posts  # nothing was sent again
        assert [f.order_id for f in rec2.fills] == ["r-filled"]
        assert rec2.fills[0].id == f"binance:{SYM}:{emu.trades[-1].trade_id}"
        await b2.reconcile(restored)  # again: nothing new happened, nothing new is reported
        assert len(rec2.fills) == 1 and emu.stats.order_posts == posts
        assert [o.id for o in await b2.open_orders()] == ["r-open"]
    finally:
        await b2.close()


async def test_open_orders_includes_orders_placed_elsewhere(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, _ = broker
    ex = ccxt.async_support.binance(
        {
            "apiKey": "test-key",
            "secret": "test-secret",
            "enableRateLimit": False,
            "options": ccxt_config(emu)["options"],
        }
    )
    ex.urls["api"] = ccxt_config(emu)["urls"]
    try:
        await ex.create_order("ETH/USDT", "limit", "buy", 0.5, 900.0, {"clientOrderId": "manual-1"})
    finally:
        await ex.close()
    [o] = await b.open_orders()
    assert (o.id, o.symbol, o.request.qty, o.request.limit_price, o.request.source) == (
        "manual-1",
        "ETH/USDT",
        0.5,
        900.0,
        "venue",
    )


# -- brackets (stop-loss / take-profit) -----------------------------------------------------------------
def bracket_entry(
    oid: str, qty: float = 0.1, sl: float | None = 19_000.0, tp: float | None = 21_000.0
) -> Order:
    return Order(oid, OrderRequest(SYM, Side.BUY, qty, stop_loss=sl, take_profit=tp, strategy="s1"))


async def test_bracket_is_an_oco_at_the_venue_and_the_stop_cancels_the_target(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, rec = broker
    await b.submit(bracket_entry("e1"))
    sl, tp = (
        emu.order_by_client_id(venue_client_id("e1.sl")),
        emu.order_by_client_id(venue_client_id("e1.tp")),
    )
    assert sl is not None and tp is not None
    assert (sl.type, sl.stop_price, tp.type, tp.price) == ("STOP_LOSS", 19_000.0, "LIMIT_MAKER", 21_000.0)
    assert sl.list_id == tp.list_id >= 0 and sl.qty == tp.qty == 0.1
    assert emu.balance("BTC") == (pytest.approx(0.0), pytest.approx(0.1))  # locked once, by the list
    leg_sl, leg_tp = b.order("e1.sl"), b.order("e1.tp")
    assert leg_sl is not None and leg_tp is not None
    assert (leg_sl.parent_id, leg_sl.role, leg_tp.role) == ("e1", "stop_loss", "take_profit")
    assert leg_sl.status is leg_tp.status is OrderStatus.ACCEPTED
    await emu.set_price(SYM, 18_900.0)
    await until(lambda: leg_sl.status is OrderStatus.FILLED and leg_tp.status is OrderStatus.CANCELLED)
    assert "one-cancels-other" in leg_tp.reason
    assert [(f.role, f.side, f.price) for f in rec.fills] == [
        ("entry", Side.BUY, 20_000.0),
        ("stop_loss", Side.SELL, 18_900.0),
    ]
    assert emu.balance("BTC") == (pytest.approx(0.0), pytest.approx(0.0))


async def test_bracket_target_fill_cancels_the_stop(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, rec = broker
    await b.submit(bracket_entry("e2"))
    await emu.set_price(SYM, 21_050.0)
    leg_sl, leg_tp = b.order("e2.sl"), b.order("e2.tp")
    assert leg_sl is not None and leg_tp is not None
    await until(lambda: leg_tp.status is OrderStatus.FILLED and leg_sl.status is OrderStatus.CANCELLED)
    assert rec.fills[-1].role == "take_profit" and rec.fills[-1].price == 21_000.0
    assert emu.balance("USDT")[0] == pytest.approx(10_000.0 - 2_000.0 + 2_100.0)


async def test_stop_only_bracket_and_fees_in_base_asset(emu: ExchangeEmulator) -> None:
    emu.fee_rate = 0.001  # Binance charges a buy's fee in the coin bought
    b, rec = await make_broker(emu)
    try:
        await b.submit(bracket_entry("e3", tp=None))
        sl = emu.order_by_client_id(venue_client_id("e3.sl"))
        assert sl is not None and sl.type == "STOP_LOSS" and sl.list_id == -1
        assert sl.qty == pytest.approx(0.0999)  # what is actually held: 0.1 minus the 0.0001 fee
        assert emu.order_by_client_id(venue_client_id("e3.tp")) is None
        assert rec.fills[0].fee == pytest.approx(0.0001 * 20_000.0)  # reported in the quote currency
    finally:
        await b.close()


async def test_close_releases_the_protective_legs_first(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, rec = broker
    await b.submit(bracket_entry("e4"))
    close = Order("c4", OrderRequest(SYM, Side.SELL, 0.1, reduce_only=True, strategy="s1"), role="close")
    await b.submit(close)
    assert close.status is OrderStatus.FILLED
    leg_sl, leg_tp = b.order("e4.sl"), b.order("e4.tp")
    assert leg_sl is not None and leg_tp is not None
    await until(lambda: leg_sl.status is OrderStatus.CANCELLED and leg_tp.status is OrderStatus.CANCELLED)
    assert emu.balance("BTC") == (pytest.approx(0.0), pytest.approx(0.0))
    assert [f.role for f in rec.fills] == ["entry", "close"]


async def test_restart_does_not_place_a_bracket_twice(emu: ExchangeEmulator) -> None:
    b, _ = await make_broker(emu)
    entry = bracket_entry("e5")
    await b.submit(entry)
    await b.close()
    posts = emu.stats.order_posts
    b2, rec2 = await make_broker(emu)
    try:
        restored = bracket_entry("e5")
        restored.status, restored.broker_order_id = OrderStatus.ACCEPTED, entry.broker_order_id
        await b2.reconcile([restored])
        assert restored.status is OrderStatus.FILLED
        assert emu.stats.order_posts == posts  # the OCO from before the restart was found and adopted
        leg = b2.order("e5.sl")
        assert leg is not None and leg.status is OrderStatus.ACCEPTED
        # the entry's venue trade is reported again (same id: the kernel ignores it); no leg executed
        assert [(f.role, f.id) for f in rec2.fills] == [("entry", f"binance:{SYM}:{emu.trades[0].trade_id}")]
    finally:
        await b2.close()


async def test_emulator_legacy_listen_key_stream(emu: ExchangeEmulator) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{emu.http_url}/api/v3/userDataStream", headers={"X-MBX-APIKEY": "nope"}) as r:
            assert (await r.json())["code"] == -2015
        async with s.post(f"{emu.http_url}/api/v3/userDataStream", headers={"X-MBX-APIKEY": "test-key"}) as r:
            key = (await r.json())["listenKey"]
        async with s.ws_connect(f"{emu.ws_url}/ws/{key}") as ws:
            await until(lambda: len(emu._listen_key_sockets) == 1)
            ex = ccxt.async_support.binance(
                {
                    "apiKey": "test-key",
                    "secret": "test-secret",
                    "enableRateLimit": False,
                    "options": ccxt_config(emu)["options"],
                }
            )
            ex.urls["api"] = ccxt_config(emu)["urls"]
            try:
                await ex.create_order(SYM, "market", "buy", 0.01, None, {"clientOrderId": "lk-1"})
            finally:
                await ex.close()
            events = [await ws.receive_json(timeout=5), await ws.receive_json(timeout=5)]
        assert [(e["e"], e["c"], e["x"], e["X"]) for e in events] == [
            ("executionReport", "lk-1", "NEW", "NEW"),
            ("executionReport", "lk-1", "TRADE", "FILLED"),
        ]
        async with s.delete(
            f"{emu.http_url}/api/v3/userDataStream?listenKey={key}", headers={"X-MBX-APIKEY": "test-key"}
        ) as r:
            assert r.status == 200
        async with s.put(
            f"{emu.http_url}/api/v3/userDataStream?listenKey={key}", headers={"X-MBX-APIKEY": "test-key"}
        ) as r:
            assert (await r.json())["code"] == -1125


# -- inside the real kernel --------------------------------------------------------------------------------
async def test_kernel_trades_through_the_ccxt_broker(emu: ExchangeEmulator, tmp_path: Any) -> None:
    from stratkernel.core.config import KernelConfig
    from stratkernel.core.kernel import Kernel
    from stratkernel.core.model import Quote

    options = ccxt_config(emu, retry_base=0.02, retry_cap=0.1, poll_interval=0.2)
    config = KernelConfig(
        symbols=[SYM],
        currency="USDT",
        initial_cash=10_000.0,
        data_dir=str(tmp_path),
        broker={"name": "ccxt", "options": options},
    )
    kernel = Kernel(config, load_plugins(), mode="live")
    await kernel.setup()
    try:
        await kernel.on_live_quote(Quote(emu.now(), 19_999.0, 20_001.0, 20_000.0, SYM))
        decision = await kernel.submit(
            OrderRequest(SYM, Side.BUY, 0.1, stop_loss=19_000.0, take_profit=21_000.0, source="api")
        )
        assert decision.approved, decision
        entry = kernel.orders[decision.order_id]
        assert entry.status is OrderStatus.FILLED and entry.broker_order_id
        assert kernel.portfolio.position(SYM).qty == pytest.approx(0.1)
        legs = [o for o in kernel.orders.values() if o.parent_id == decision.order_id]
        assert sorted(o.role for o in legs) == ["stop_loss", "take_profit"]
        assert all(o.status is OrderStatus.ACCEPTED for o in legs)
        await emu.set_price(SYM, 18_500.0)
        await until(lambda: all(not o.status.is_open for o in legs))
        await kernel.drain()
        assert kernel.portfolio.position(SYM).qty == pytest.approx(0.0)
        refused = await kernel.submit(OrderRequest(SYM, Side.BUY, 5.0, stop_loss=19_000.0, source="api"))
        assert refused.approved  # the gate has no cash rule configured; the venue refuses it
        assert kernel.orders[refused.order_id].status is OrderStatus.REJECTED
        assert kernel.orders[refused.order_id].reason.startswith("insufficient_funds")
    finally:
        await kernel.shutdown()


async def test_fills_that_cannot_be_read_yet_are_not_lost(emu: ExchangeEmulator) -> None:
    b, rec = await make_broker(emu, use_websocket=False, max_retries=0, poll_interval=0.1)
    try:
        emu.faults.only_paths = ("/api/v3/myTrades",)
        emu.faults.server_errors = 1_000_000
        o = order("t1", qty=0.01)
        await b.submit(o)
        # filled at the venue, but the trade list is unreadable: the order stays open on our side
        assert o.status is OrderStatus.ACCEPTED and rec.fills == []
        emu.faults.server_errors = 0
        await until(lambda: o.status is OrderStatus.FILLED)
        assert [f.qty for f in rec.fills] == [0.01]
    finally:
        await b.close()


async def test_sync_ccxt_works_against_the_emulator_too(emu: ExchangeEmulator) -> None:
    def run() -> tuple[float, str, str]:
        ex = ccxt.binance(
            {
                "apiKey": "test-key",
                "secret": "test-secret",
                "enableRateLimit": False,
                "options": ccxt_config(emu)["options"],
            }
        )
        ex.urls["api"] = ccxt_config(emu)["urls"]
        ex.load_markets()
        usdt = ex.fetch_balance()["USDT"]["free"]
        placed = ex.create_order(SYM, "limit", "buy", 0.01, 19_000.0, {"clientOrderId": "sync-1"})
        found = ex.fetch_order(None, SYM, {"origClientOrderId": "sync-1"})
        return usdt, placed["status"], found["clientOrderId"]

    # the emulator serves on this thread's event loop, so the blocking client runs in a worker thread
    assert await asyncio.to_thread(run) == (10_000.0, "open", "sync-1")


async def test_refused_websocket_login_falls_back_to_polling(emu: ExchangeEmulator) -> None:
    emu.faults.reject_ws_auth = True
    b, rec = await make_broker(emu, poll_interval=0.1)
    try:
        o = order("nows", qty=0.1, type=OrderType.LIMIT, limit=19_000.0)
        await b.submit(o)
        await until(lambda: b.ws_errors >= 1)
        assert emu.user_subscribers == 0
        await emu.set_price(SYM, 18_000.0)
        await until(lambda: o.status is OrderStatus.FILLED)
        assert len(rec.fills) == 1
    finally:
        await b.close()


async def test_partial_fills_of_a_working_entry_are_protected_as_they_come(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, rec = broker
    entry = Order(
        "e6",
        OrderRequest(
            SYM,
            Side.BUY,
            0.1,
            OrderType.LIMIT,
            limit_price=19_000.0,
            stop_loss=18_000.0,
            take_profit=21_000.0,
            strategy="s1",
        ),
    )
    await b.submit(entry)
    await emu.set_price(SYM, 18_990.0, liquidity=0.04)
    await until(
        lambda: (
            b.order("e6.p400.sl") is not None
            and b.order("e6.p400.tp") is not None
            and b.order("e6.p400.tp").status is OrderStatus.ACCEPTED
        )
    )  # type: ignore[union-attr]
    interim = emu.order_by_client_id(venue_client_id("e6.p400.sl"))
    assert interim is not None and interim.qty == 0.04 and interim.list_id >= 0
    assert emu.balance("BTC") == (pytest.approx(0.0), pytest.approx(0.04))  # the 0.04 held are protected
    await emu.set_price(SYM, 18_980.0)  # the rest of the entry fills
    await until(lambda: b.order("e6.sl") is not None and b.order("e6.sl").status is OrderStatus.ACCEPTED)  # type: ignore[union-attr]
    p_sl, p_tp = b.order("e6.p400.sl"), b.order("e6.p400.tp")
    assert p_sl is not None and p_tp is not None
    await until(lambda: p_sl.status is OrderStatus.CANCELLED and p_tp.status is OrderStatus.CANCELLED)
    final = emu.order_by_client_id(venue_client_id("e6.sl"))
    assert final is not None and final.qty == pytest.approx(0.1)
    assert emu.balance("BTC") == (pytest.approx(0.0), pytest.approx(0.1))
    open_legs = [o for o in emu.orders.values() if o.is_open]
    assert sorted(o.client_id for o in open_legs) == sorted(
        [venue_client_id("e6.sl"), venue_client_id("e6.tp")]
    )
    await emu.set_price(SYM, 17_500.0)
    final_sl = b.order("e6.sl")
    assert final_sl is not None
    await until(lambda: final_sl.status is OrderStatus.FILLED)
    assert sum(f.qty for f in rec.fills if f.role == "stop_loss") == pytest.approx(0.1)


async def test_entry_cancelled_after_a_partial_fill_keeps_its_legs(
    emu: ExchangeEmulator, broker: tuple[CcxtBroker, Recorder]
) -> None:
    b, _ = broker
    entry = Order(
        "e7",
        OrderRequest(
            SYM, Side.BUY, 0.1, OrderType.LIMIT, limit_price=19_000.0, stop_loss=18_000.0, strategy="s1"
        ),
    )
    await b.submit(entry)
    await emu.set_price(SYM, 18_990.0, liquidity=0.03)
    await until(
        lambda: b.order("e7.p300.sl") is not None and b.order("e7.p300.sl").status is OrderStatus.ACCEPTED
    )  # type: ignore[union-attr]
    posts = emu.stats.order_posts
    await b.cancel("e7")
    assert entry.status is OrderStatus.CANCELLED and entry.filled_qty == pytest.approx(0.03)
    leg = b.order("e7.p300.sl")
    assert leg is not None and leg.status is OrderStatus.ACCEPTED  # already covers the 0.03 held
    assert emu.stats.order_posts == posts and b.order("e7.sl") is None


async def test_revoked_key_mid_session_is_visible_and_nothing_is_doubled(emu: ExchangeEmulator) -> None:
    b, rec = await make_broker(emu, use_websocket=False, max_retries=2, poll_interval=0.1)
    try:
        emu.api_key = "rotated-key"  # the key stops working while the kernel runs
        o = order("auth1", qty=0.01)
        await b.submit(o)
        # ccxt 4.5 treats Binance -2015 after a successful login as a temporary ban (a network-class
        # error), so the order is in doubt, not refused: it stays PENDING and says why
        assert o.status is OrderStatus.PENDING and "Invalid API-key" in o.reason
        assert emu.stats.order_posts == 0
        pf = await b.preflight()
        assert not pf.trading_allowed and "Invalid API-key" in pf.reason
        emu.api_key = "test-key"  # the key works again: the poller settles the order, nothing resent
        await until(lambda: o.status is OrderStatus.REJECTED)
        assert "never arrived" in o.reason and emu.stats.order_posts == 0 and rec.fills == []
    finally:
        await b.close()


async def test_a_timed_out_order_that_executes_late_is_not_doubled(emu: ExchangeEmulator) -> None:
    # The venue executes the POST 0.6 s after the client gave up at 0.3 s (Binance: "status UNKNOWN").
    b, rec = await make_broker(emu, use_websocket=False, timeout_ms=300, doubt_window=1.2)
    try:
        emu.faults.only_paths = ("/api/v3/order",)
        emu.faults.timeouts = 1
        emu.faults.timeout_delay = 0.6
        emu.faults.execute_after_timeout = True
        o = order("late1", qty=0.01)
        await b.submit(o)
        # the first lookup (at ~0.35 s) found nothing; the broker waited out the doubt window instead of
        # resending, and then found the late execution
        await until(lambda: emu.stats.late_requests == 1)
        assert emu.stats.order_posts == 1 and len(emu.orders) == 1
        assert o.status is OrderStatus.FILLED and len(rec.fills) == 1
    finally:
        await b.close()


async def test_poller_does_not_write_off_an_order_that_may_still_execute(emu: ExchangeEmulator) -> None:
    b, rec = await make_broker(
        emu, use_websocket=False, timeout_ms=300, max_retries=0, doubt_window=1.5, poll_interval=0.05
    )
    try:
        emu.faults.only_paths = ("/api/v3/order",)
        emu.faults.timeouts = 1
        emu.faults.timeout_delay = 0.6
        emu.faults.execute_after_timeout = True
        o = order("late2", qty=0.01)
        await b.submit(o)  # gives up at once (max_retries=0): PENDING, in doubt
        assert o.status is OrderStatus.PENDING
        await until(lambda: emu.stats.late_requests == 1)
        await until(lambda: o.status is OrderStatus.FILLED)  # found by the poller, never written off
        assert rec.statuses("late2")[-1] is OrderStatus.FILLED and OrderStatus.REJECTED not in rec.statuses(
            "late2"
        )
        assert len(rec.fills) == 1 and emu.stats.order_posts == 1
    finally:
        await b.close()


async def test_preflight_on_a_testnet_without_a_status_endpoint(emu: ExchangeEmulator) -> None:
    # With sandbox on, ccxt's Binance has no testnet URL for the status endpoint; the urls override
    # still points the rest at the emulator. Preflight must not halt trading over the missing endpoint.
    urls = {k: v for k, v in ccxt_config(emu)["urls"].items() if not k.startswith("sapi")}
    b, _ = await make_broker(emu, sandbox=True, urls=urls)
    try:
        assert "sapi" not in b.exchange.urls["api"]
        assert (await b.preflight()).trading_allowed
        assert "GET /sapi/v1/system/status" not in emu.stats.requests
    finally:
        await b.close()
