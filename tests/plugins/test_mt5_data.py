"""The MT5 data source (history and live polling) and the plugin's registration."""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import Any

import numpy as np
import pytest

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.model import Bar, Quote
from stratkernel.core.plugins import load_plugins
from stratkernel.plugins import mt5_plugin
from stratkernel.plugins.mt5_plugin import (
    MT5Broker,
    MT5DataSource,
    make_broker,
    make_data_source,
    rates_to_series,
)
from stratkernel.testing.mt5_double import RATES_DTYPE, MetaTrader5Double

T0 = 1_704_153_600  # the double's start time, 2024-01-02 00:00 UTC


def minute_rates(n: int, *, start: int = T0 - 3600, real_volume: int = 0) -> np.ndarray:
    rates = np.zeros(n, dtype=RATES_DTYPE)
    rates["time"] = start + 60 * np.arange(n)
    rates["open"] = 1.1 + 0.0001 * np.arange(n)
    rates["close"] = rates["open"] + 0.00005
    rates["high"] = rates["close"] + 0.0001
    rates["low"] = rates["open"] - 0.0001
    rates["tick_volume"] = 7
    rates["spread"] = 2
    rates["real_volume"] = real_volume
    return rates


@pytest.fixture
def mt5() -> MetaTrader5Double:
    m = MetaTrader5Double()
    m.sim_add_symbol("EURUSD", bid=1.1, ask=1.1002)
    m.sim_load_rates("EURUSD", minute_rates(60))
    return m


def source(mt5: MetaTrader5Double, **options: Any) -> MT5DataSource:
    return make_data_source({"module": mt5, "symbols": ["EURUSD"], "poll_interval": 0.0, **options})


async def test_history_is_a_validated_bar_series(mt5: MetaTrader5Double) -> None:
    src = source(mt5)
    series = await src.history("EURUSD")
    assert isinstance(series, BarSeries) and series.symbol == "EURUSD"
    assert len(series) == 61  # 60 loaded bars + the bar of the current tick
    assert series.ts[0] == (T0 - 3600) * 1000 and (np.diff(series.ts) == 60_000).all()
    assert series.close[0] == pytest.approx(1.10005) and series.volume[0] == 7.0  # tick_volume (forex)
    assert "copy_rates_range" in mt5.calls
    await src.close()


async def test_history_range_and_timeframe(mt5: MetaTrader5Double) -> None:
    src = source(mt5, timeframe="M15")
    series = await src.history("EURUSD", (T0 - 1800) * 1000, (T0 - 1) * 1000)
    assert list(series.ts) == [(T0 - 1800) * 1000, (T0 - 900) * 1000]
    assert series.volume[0] == 15 * 7
    await src.close()


async def test_server_time_offset_gives_utc(mt5: MetaTrader5Double) -> None:
    src = source(mt5, server_time_offset_s=7200)  # a broker on UTC+2: bar times are 2h ahead of UTC
    series = await src.history("EURUSD", (T0 - 3600 - 7200) * 1000, (T0 - 7200 - 3000) * 1000)
    assert series.ts[0] == (T0 - 3600 - 7200) * 1000 and len(series) == 11
    await src.close()


async def test_the_kernels_primary_symbol_option_is_streamed(mt5: MetaTrader5Double) -> None:
    mt5.sim_add_symbol("GBPUSD", bid=1.25, ask=1.2502)
    src = make_data_source({"module": mt5, "symbols": ["EURUSD"], "symbol": "GBPUSD", "poll_interval": 0.0})
    assert src.symbols == ["EURUSD", "GBPUSD"]
    stream = src.stream()
    seen = {(await asyncio.wait_for(anext(stream), timeout=30)).symbol for _ in range(2)}
    assert seen == {"EURUSD", "GBPUSD"}
    await stream.aclose()
    await src.close()


async def test_unknown_symbol_is_refused_by_name(mt5: MetaTrader5Double) -> None:
    src = source(mt5)
    with pytest.raises(ValidationError, match="NOPE") as info:
        await src.history("NOPE")
    assert info.value.field == "symbol"
    await src.close()


def test_exchange_volume_and_bad_rows() -> None:
    series = rates_to_series("SBER", minute_rates(3, real_volume=1500))
    assert list(series.volume) == [1500.0] * 3
    bad = minute_rates(3)
    bad["high"][1] = bad["low"][1] - 0.01
    with pytest.raises(ValidationError, match=r"bar\[1\]\.high"):
        rates_to_series("EURUSD", bad)
    with pytest.raises(ValidationError, match="not an MT5 rates array"):
        rates_to_series("EURUSD", np.zeros(2, dtype=[("time", "<i8")]))


async def test_stream_yields_quotes_and_completed_bars(mt5: MetaTrader5Double) -> None:
    src = source(mt5)
    stream = src.stream()

    async def next_item() -> Bar | Quote:
        return await asyncio.wait_for(anext(stream), timeout=30)  # a guard against a hang, not a timing check

    first = await next_item()
    assert isinstance(first, Quote) and (first.bid, first.ask, first.symbol) == (1.1, 1.1002, "EURUSD")
    mt5.sim_set_price("EURUSD", 1.1010)
    second = await next_item()
    assert isinstance(second, Quote) and second.bid == 1.1010 and second.ts > first.ts
    mt5.sim_set_price("EURUSD", 1.1020, advance_ms=60_000)  # a new minute: the previous bar is complete
    items = [await next_item(), await next_item()]
    bar = next(i for i in items if isinstance(i, Bar))
    assert bar.ts == T0 * 1000 and (bar.open, bar.high, bar.close) == (1.1, 1.1010, 1.1010)
    assert any(isinstance(i, Quote) and i.bid == 1.1020 for i in items)
    await stream.aclose()
    await src.close()


async def test_broker_and_data_source_share_one_terminal_session(mt5: MetaTrader5Double) -> None:
    class Events:
        def on_order_update(self, order: Any) -> None: ...
        def on_fill(self, fill: Any) -> None: ...

    broker = make_broker({"module": mt5, "poll_interval": 0.0}, Events())
    await broker.connect()
    src = source(mt5)
    await src.history("EURUSD")
    await src.close()  # the broker still uses the terminal: no shutdown yet
    assert "shutdown" not in mt5.calls
    assert (await broker.account()).cash == 10_000.0
    await broker.close()
    assert mt5.calls[-1] == "shutdown" and mt5.calls.count("initialize") == 1


async def test_a_broker_with_a_login_logs_in_a_terminal_the_data_source_attached_to(
    mt5: MetaTrader5Double,
) -> None:
    class Events:
        def on_order_update(self, order: Any) -> None: ...
        def on_fill(self, fill: Any) -> None: ...

    src = source(mt5)  # attaches without credentials
    await src.history("EURUSD")
    creds = {"login": 5001234, "password": "demo-password", "server": "Stratkernel-Demo"}
    broker = make_broker({"module": mt5, "poll_interval": 0.0, **creds}, Events())
    await broker.connect()
    assert "login" in mt5.calls
    other = make_broker({"module": mt5, "poll_interval": 0.0, **creds, "login": 777}, Events())
    with pytest.raises(ConfigError, match="one MetaTrader 5 terminal trades one account"):
        await other.connect()
    await other.close()
    await broker.close()
    await src.close()


def test_plugin_registers_broker_and_data_source() -> None:
    (ep,) = [e for e in importlib.metadata.entry_points(group="stratkernel") if e.name == "mt5"]
    assert ep.value == "stratkernel.plugins.mt5_plugin"
    host = load_plugins(entry_points=False, extra=[("mt5", mt5_plugin)])
    assert host.failures == []
    broker_reg = host.registry.get("broker", "mt5")
    source_reg = host.registry.get("data_source", "mt5")
    assert "MetaTrader 5" in broker_reg.description
    m = MetaTrader5Double()
    assert isinstance(broker_reg.obj({"module": m, "poll_interval": 0.0}, None), MT5Broker)
    assert isinstance(source_reg.obj({"module": m}), MT5DataSource)
