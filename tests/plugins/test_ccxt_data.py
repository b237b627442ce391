"""The ccxt data source against the Binance-spot emulator: history cache, gaps, live stream, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratkernel.core.errors import BrokerConnectionError, ConfigError, ValidationError
from stratkernel.core.model import Bar, Quote
from stratkernel.plugins.ccxt_plugin import CcxtDataSource, Gap, parse_uri
from stratkernel.plugins.ccxt_plugin.data import _merge, _missing
from stratkernel.testing.exchange_emulator import ExchangeEmulator, ccxt_config

SYM = "BTC/USDT"
T0 = 1_700_000_040_000  # a minute boundary in Nov 2023
MIN = 60_000
KLINES = "GET /api/v3/klines"


@pytest.fixture
async def emu() -> AsyncIterator[ExchangeEmulator]:
    e = ExchangeEmulator(api_key="k", secret="s", balances={"USDT": 1000.0})
    e.add_market(SYM, price=100.0)
    await e.start()
    yield e
    await e.stop()


def source(emu: ExchangeEmulator, tmp_path: Path, **extra: Any) -> CcxtDataSource:
    opts: dict[str, Any] = {
        "symbols": [SYM],
        "timeframe": "1m",
        "cache_dir": str(tmp_path / "cache"),
        "page_limit": 100,
        "max_retries": 0,
        "reconnect_base": 0.05,
        "reconnect_cap": 0.2,
    }
    opts.update(extra)
    return CcxtDataSource(ccxt_config(emu, **opts))


def test_uri_resolution() -> None:
    assert parse_uri("ccxt:binance:ETH/BTC:1h") == (
        "ccxt",
        {"exchange": "binance", "symbols": ["ETH/BTC"], "timeframe": "1h"},
    )
    assert parse_uri("ccxt:binance:BTC/USDT") == (
        "ccxt",
        {"exchange": "binance", "symbols": ["BTC/USDT"], "timeframe": "1m"},
    )
    assert parse_uri("ccxt:binanceusdm:BTC/USDT:USDT:5m")[1]["symbols"] == ["BTC/USDT:USDT"]  # type: ignore[index]
    assert parse_uri("data/btc.csv") is None
    with pytest.raises(ConfigError, match="not an exchange"):
        parse_uri("ccxt:nowhere:BTC/USDT:1m")
    with pytest.raises(ConfigError, match="expected ccxt:EXCHANGE:SYMBOL"):
        parse_uri("ccxt:binance")


def test_bad_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeframe"):
        CcxtDataSource({"exchange": "binance", "timeframe": "1 minute", "cache_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="symbols"):
        CcxtDataSource({"exchange": "binance", "symbols": [3], "cache_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="page_limit"):
        CcxtDataSource({"exchange": "binance", "page_limit": 0, "cache_dir": str(tmp_path)})


def test_range_arithmetic() -> None:
    assert _merge([(0, 10), (11, 20), (40, 50), (5, 12)], 1) == [(0, 20), (40, 50)]
    assert _missing([(10, 20), (40, 50)], 0, 60, 1) == [(0, 9), (21, 39), (51, 60)]
    assert _missing([(0, 60)], 10, 20, 1) == []


async def test_history_downloads_pages_and_caches(emu: ExchangeEmulator, tmp_path: Path) -> None:
    rows = emu.generate_klines(SYM, "1m", T0, 350)
    src = source(emu, tmp_path)
    try:
        s = await src.history(SYM, T0, T0 + 349 * MIN)
        assert len(s) == 350 and s.ts[0] == T0 and s.ts[-1] == T0 + 349 * MIN
        assert np.allclose(s.close, [r[4] for r in rows])
        assert emu.stats.requests[KLINES] == 4  # 100 + 100 + 100 + 50
        assert src.gaps[SYM] == []
        again = await src.history(SYM, T0 + 10 * MIN, T0 + 20 * MIN)
        assert len(again) == 11 and emu.stats.requests[KLINES] == 4  # served from the cache
    finally:
        await src.close()
    # a new process (new source object, same cache dir) still has it
    src2 = source(emu, tmp_path)
    try:
        assert len(await src2.history(SYM, T0, T0 + 349 * MIN)) == 350
        assert emu.stats.requests[KLINES] == 4
    finally:
        await src2.close()


async def test_interrupted_download_resumes_without_duplicates(emu: ExchangeEmulator, tmp_path: Path) -> None:
    emu.generate_klines(SYM, "1m", T0, 500)
    emu.faults.only_paths = ("/api/v3/klines",)
    emu.faults.after = 2  # two pages arrive, then the venue fails
    emu.faults.server_errors = 1
    src = source(emu, tmp_path)
    try:
        with pytest.raises(BrokerConnectionError, match="fetch_ohlcv"):
            await src.history(SYM, T0, T0 + 499 * MIN)
        db = sqlite3.connect(tmp_path / "cache" / "ohlcv.sqlite")
        assert db.execute("SELECT COUNT(*) FROM bars").fetchone()[0] == 200  # what arrived was kept
        requests_before = emu.stats.requests[KLINES]
        s = await src.history(SYM, T0, T0 + 499 * MIN)
        assert len(s) == 500
        assert emu.stats.requests[KLINES] - requests_before == 3  # resumed at bar 200, not from the start
        # overlapping ranges never store a bar twice
        await src.history(SYM, T0 + 450 * MIN, T0 + 499 * MIN)
        count, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT ts) FROM bars").fetchone()
        assert count == distinct == 500
        db.close()
    finally:
        await src.close()


async def test_network_errors_are_retried(emu: ExchangeEmulator, tmp_path: Path) -> None:
    emu.generate_klines(SYM, "1m", T0, 50)
    emu.faults.only_paths = ("/api/v3/klines",)
    emu.faults.rate_limited = 1
    emu.faults.retry_after = 0
    emu.faults.server_errors = 1
    src = source(emu, tmp_path, max_retries=3)
    try:
        assert len(await src.history(SYM, T0, T0 + 49 * MIN)) == 50
        assert emu.stats.requests[KLINES] == 3
    finally:
        await src.close()


async def test_gaps_are_reported_not_filled(emu: ExchangeEmulator, tmp_path: Path) -> None:
    emu.generate_klines(SYM, "1m", T0, 120, skip={30, 31, 32, 90})
    src = source(emu, tmp_path)
    try:
        s = await src.history(SYM, T0, T0 + 119 * MIN)
        assert len(s) == 116
        assert src.gaps[SYM] == [
            Gap(SYM, T0 + 29 * MIN, T0 + 33 * MIN, 3),
            Gap(SYM, T0 + 89 * MIN, T0 + 91 * MIN, 1),
        ]
        # the gap is a fact about the venue: asking again does not re-download it
        n = emu.stats.requests[KLINES]
        await src.history(SYM, T0, T0 + 119 * MIN)
        assert emu.stats.requests[KLINES] == n
    finally:
        await src.close()


async def test_history_refuses_bad_requests(emu: ExchangeEmulator, tmp_path: Path) -> None:
    src = source(emu, tmp_path)
    try:
        with pytest.raises(ValidationError, match="start_ms"):
            await src.history(SYM, T0 + 10 * MIN, T0)
        with pytest.raises(ValidationError, match="no such market"):
            await src.history("DOGE/USDT", T0, T0 + MIN)
    finally:
        await src.close()


async def test_only_closed_bars_are_cached(emu: ExchangeEmulator, tmp_path: Path) -> None:
    now = emu.now()
    start = (now // MIN) * MIN - 5 * MIN
    emu.generate_klines(SYM, "1m", start, 6)  # the last one is the bar in progress
    src = source(emu, tmp_path)
    try:
        s = await src.history(SYM, start, now + MIN)
        assert s.ts[-1] < (now // MIN) * MIN  # the open bar was not returned (nor cached)
    finally:
        await src.close()


async def _collect(agen: AsyncIterator[Bar | Quote], pred: Any, out: list[Bar | Quote]) -> None:
    async for item in agen:
        out.append(item)
        if pred(out):
            return


async def test_stream_yields_closed_bars_and_quotes_and_survives_drops(
    emu: ExchangeEmulator, tmp_path: Path
) -> None:
    src = source(emu, tmp_path)
    got: list[Bar | Quote] = []
    agen = src.stream()
    bars = lambda: [x for x in got if isinstance(x, Bar)]  # noqa: E731
    task = asyncio.create_task(
        _collect(agen, lambda out: len([x for x in out if isinstance(x, Bar)]) >= 3, got)
    )
    try:

        async def wait_for(cond: Any) -> None:
            for _ in range(250):
                if cond():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("not reached")

        await wait_for(
            lambda: emu.subscribers("btcusdt@kline_1m") == 1 and emu.subscribers("btcusdt@ticker") == 1
        )
        await emu.set_price(SYM, 101.5, klines=False)
        await wait_for(lambda: any(isinstance(x, Quote) and x.last == 101.5 for x in got))
        await emu.push_kline(SYM, "1m", T0, 100, 102, 99, 101, 5)
        await emu.push_kline(SYM, "1m", T0 + MIN, 101, 103, 100, 102, 6)  # closes T0
        await wait_for(lambda: len(bars()) == 1)
        assert bars()[0] == Bar(T0, 100.0, 102.0, 99.0, 101.0, 5.0, SYM)

        dropped = await emu.drop_websockets()
        assert dropped >= 1
        await wait_for(lambda: emu.subscribers("btcusdt@kline_1m") == 1)  # reconnected by itself
        assert src.reconnects >= 1
        await emu.push_kline(SYM, "1m", T0 + MIN, 101, 104, 100, 103, 7)  # the bar in progress, updated
        await emu.push_kline(SYM, "1m", T0 + 2 * MIN, 103, 103, 102, 102, 1)
        await emu.push_kline(SYM, "1m", T0 + 3 * MIN, 102, 102, 101, 101, 1)
        await asyncio.wait_for(task, 5)
        assert [b.ts for b in bars()] == [T0, T0 + MIN, T0 + 2 * MIN]  # each once, in order
        assert bars()[1].high == 104.0 and bars()[1].close == 103.0  # the final version of the bar
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agen.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("stable_after", [60.0, 0.0])
async def test_a_flapping_stream_backs_off_instead_of_hammering(
    emu: ExchangeEmulator, tmp_path: Path, stable_after: float
) -> None:
    src = source(
        emu, tmp_path, quotes=False, reconnect_base=0.01, reconnect_cap=0.08, stable_after=stable_after
    )
    agen = src.stream()
    task = asyncio.create_task(_collect(agen, lambda out: False, []))
    try:
        for i in range(5):
            for _ in range(250):
                if emu.subscribers("btcusdt@kline_1m") == 1:
                    break
                await asyncio.sleep(0.02)
            await emu.push_kline(SYM, "1m", T0 + i * MIN, 100, 101, 99, 100, 1)  # one message gets through...
            await asyncio.sleep(0.05)
            await emu.drop_websockets()  # ...then the connection drops again
            for _ in range(250):
                if src.reconnects > i:
                    break
                await asyncio.sleep(0.02)
        delays = list(src.reconnect_delays)
        assert len(delays) >= 5
        if stable_after:
            # the connection never stayed up for stable_after: the waits grow to the cap
            assert delays[-1] >= 0.04 and max(delays) <= 0.08
        else:
            # with stable_after=0 every message resets the backoff: the waits stay at the base
            assert all(d <= 0.01 for d in delays)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agen.aclose()  # type: ignore[attr-defined]


def test_runtime_symbol_option_is_accepted(tmp_path: Path) -> None:
    src = CcxtDataSource({"exchange": "binance", "symbol": "ETH/USDT", "cache_dir": str(tmp_path)})
    assert src.symbols == ["ETH/USDT"]
