"""The ccxt data source: OHLCV history with a local SQLite cache, and live bars/quotes via ccxt.pro.

History (:meth:`CcxtDataSource.history`):

* Downloaded bars go to ``<cache_dir>/ohlcv.sqlite`` (one row per exchange, symbol, timeframe and bar
  open time, so a bar is never stored twice). The cache also records which time *ranges* were
  downloaded, so a later request only fetches what is missing, and a download interrupted half way
  resumes after the last page it stored (every page is committed as it arrives).
* Only closed bars are cached (a bar whose period has not ended yet would change).
* Gaps (missing bars inside a downloaded range: the venue had no trades or was down) are reported, not
  invented: :attr:`CcxtDataSource.gaps` and a warning in the log.

Live (:meth:`CcxtDataSource.stream`): ``watch_ohlcv`` for bars (a bar is yielded once it is closed, i.e.
when the venue starts the next one) and ``watch_ticker`` for quotes. A dropped connection is
re-established with capped exponential backoff and jitter; :attr:`CcxtDataSource.reconnects` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt
import numpy as np

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import BrokerConnectionError, ConfigError, ValidationError
from stratkernel.core.model import Bar, Quote, to_ms

from .exchange import Backoff, exchange_config, make_exchange, with_retries

log = logging.getLogger("stratkernel.plugins.ccxt.data")

TIMEFRAME_RE = re.compile(r"^\d+[smhdwMy]$")
_DATA_KEYS = {
    "symbols",
    "symbol",
    "timeframe",
    "stable_after",
    "cache_dir",
    "page_limit",
    "max_retries",
    "quotes",
    "bars",
    "reconnect_base",
    "reconnect_cap",
    "ticker_params",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bars (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL, ts INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS coverage (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
    start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Gap:
    """Bars missing between two cached bars: ``after_ts`` and ``before_ts`` exist, ``missing`` between."""

    symbol: str
    after_ts: int
    before_ts: int
    missing: int


def timeframe_ms(timeframe: str) -> int:
    if not TIMEFRAME_RE.match(timeframe):
        raise ConfigError("ccxt.timeframe", f"{timeframe!r} is not a timeframe like 1m, 15m, 1h, 1d")
    return int(ccxt.Exchange.parse_timeframe(timeframe) * 1000)


def _merge(ranges: list[tuple[int, int]], step: int) -> list[tuple[int, int]]:
    """Merge inclusive [start, end] ranges of bar open times that overlap or touch (end + step)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + step:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _missing(ranges: list[tuple[int, int]], start: int, end: int, step: int) -> list[tuple[int, int]]:
    """The parts of [start, end] not covered by ``ranges`` (all inclusive bar open times)."""
    out = []
    cursor = start
    for a, b in ranges:
        if b < cursor:
            continue
        if a > end:
            break
        if a > cursor:
            out.append((cursor, min(a - step, end)))
        cursor = max(cursor, b + step)
        if cursor > end:
            break
    if cursor <= end:
        out.append((cursor, end))
    return out


class OhlcvCache:
    """The SQLite cache of downloaded bars and of the ranges already downloaded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def coverage(self, exchange: str, symbol: str, timeframe: str) -> list[tuple[int, int]]:
        with contextlib.closing(self._connect()) as db:
            rows = db.execute(
                "SELECT start_ts, end_ts FROM coverage WHERE exchange=? AND symbol=? AND timeframe=? ORDER BY start_ts",
                (exchange, symbol, timeframe),
            ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def store(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        step: int,
        rows: list[tuple[Any, ...]],
        covered: tuple[int, int],
    ) -> None:
        """Insert bars (ignoring ones already cached) and extend the coverage, in one transaction."""
        with contextlib.closing(self._connect()) as db, db:
            db.executemany(
                "INSERT OR IGNORE INTO bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(exchange, symbol, timeframe, *r) for r in rows],
            )
            key = (exchange, symbol, timeframe)
            ranges = db.execute(
                "SELECT start_ts, end_ts FROM coverage WHERE exchange=? AND symbol=? AND timeframe=?", key
            ).fetchall()
            merged = _merge([(int(a), int(b)) for a, b in ranges] + [covered], step)
            db.execute("DELETE FROM coverage WHERE exchange=? AND symbol=? AND timeframe=?", key)
            db.executemany("INSERT INTO coverage VALUES (?, ?, ?, ?, ?)", [(*key, a, b) for a, b in merged])

    def load(self, exchange: str, symbol: str, timeframe: str, start: int, end: int) -> np.ndarray:
        with contextlib.closing(self._connect()) as db:
            rows = db.execute(
                "SELECT ts, open, high, low, close, volume FROM bars WHERE exchange=? AND symbol=? AND timeframe=? "
                "AND ts BETWEEN ? AND ? ORDER BY ts",
                (exchange, symbol, timeframe, start, end),
            ).fetchall()
        return np.array(rows, dtype=np.float64).reshape(-1, 6)


class CcxtDataSource:
    """A :class:`~stratkernel.core.data.DataSource` over ccxt. Options: see docs/ccxt.md."""

    name = "ccxt"

    def __init__(self, options: dict[str, Any]) -> None:
        self.cfg = exchange_config(options, extra_keys=_DATA_KEYS)
        self.exchange_name: str = self.cfg["exchange"]
        symbols = self.cfg.get("symbols", [])
        if isinstance(symbols, str):
            symbols = [symbols]
        if not symbols and self.cfg.get("symbol"):  # the runtime passes the kernel's first symbol this way
            symbols = [self.cfg["symbol"]]
        if not isinstance(symbols, list) or not all(isinstance(s, str) and s for s in symbols):
            raise ConfigError("ccxt.symbols", f'must be a list of symbols like ["BTC/USDT"], got {symbols!r}')
        self.symbols: list[str] = symbols
        self.timeframe = str(self.cfg.get("timeframe", "1m"))
        self.step = timeframe_ms(self.timeframe)
        limit = self.cfg.get("page_limit", 1000)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 5000:
            raise ConfigError("ccxt.page_limit", f"must be an integer in [1, 5000], got {limit!r}")
        self.page_limit = limit
        self.max_retries = int(self.cfg.get("max_retries", 5))
        self.cache = OhlcvCache(
            Path(self.cfg.get("cache_dir", ".stratkernel/cache/ccxt")).expanduser() / "ohlcv.sqlite"
        )
        self.want_quotes = bool(self.cfg.get("quotes", True))
        self.want_bars = bool(self.cfg.get("bars", True))
        self.reconnect_base = float(self.cfg.get("reconnect_base", 0.5))
        self.reconnect_cap = float(self.cfg.get("reconnect_cap", 30.0))
        # The reconnect backoff starts over only after the stream stayed up this long: a connection that
        # drops right after each message would otherwise be retried at the base delay forever.
        self.stable_after = float(self.cfg.get("stable_after", 60.0))
        self.sleep: Any = asyncio.sleep  # every reconnect wait goes through here (tests record the delays)
        default_ticker = {"name": "ticker"} if self.exchange_name.startswith("binance") else {}
        self.ticker_params: dict[str, Any] = dict(self.cfg.get("ticker_params", default_ticker))
        self.gaps: dict[str, list[Gap]] = {}
        self.reconnects = 0
        self.reconnect_delays: deque[float] = deque(maxlen=100)  # the last waits chosen (operators, tests)
        self.pages_fetched = 0
        self.refused_rows = 0
        self._exchange: Any = None

    async def _rest(self) -> Any:
        if self._exchange is None:
            self._exchange = make_exchange(self.cfg, pro=False)
        if not self._exchange.markets:
            await with_retries(
                self._exchange,
                "load markets",
                lambda: self._exchange.load_markets(),
                retries=self.max_retries,
                backoff=Backoff(0.25, 10.0),
            )
        return self._exchange

    async def close(self) -> None:
        """Release the HTTP session (history() does this itself after each download)."""
        if self._exchange is not None:
            await self._exchange.close()
            self._exchange = None

    # -- history -----------------------------------------------------------------------------------------
    async def history(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> BarSeries:
        """Bars of ``symbol`` with open time in [start, end] (default: the last ``page_limit`` bars).

        Fetches only what the cache lacks; raises BrokerConnectionError if the venue stays unreachable
        (what was downloaded until then stays cached, and the next call resumes from there).
        """
        step = self.step
        now = int(time.time() * 1000)
        last_closed = (now // step) * step - step  # open time of the newest bar that has closed
        end = last_closed if end_ms is None else min(to_ms(end_ms, "end_ms"), last_closed)
        start = end - (self.page_limit - 1) * step if start_ms is None else to_ms(start_ms, "start_ms")
        start = -(-start // step) * step  # first bar open time at or after start
        end = (end // step) * step
        if start > end:
            raise ValidationError(
                "start_ms", start_ms, f"is after end_ms ({end_ms}) or after the last closed bar"
            )
        coverage = self.cache.coverage(self.exchange_name, symbol, self.timeframe)
        todo = _missing(coverage, start, end, step)
        if todo:
            try:
                ex = await self._rest()
                if symbol not in ex.markets:
                    raise ValidationError("symbol", symbol, f"{self.exchange_name} has no such market")
                for a, b in todo:
                    await self._download(ex, symbol, a, b)
            finally:
                # Callers such as the backtest runner never close a data source; don't leak the session.
                await self.close()
        data = await asyncio.to_thread(
            self.cache.load, self.exchange_name, symbol, self.timeframe, start, end
        )
        series = BarSeries.from_arrays(
            symbol, data[:, 0].astype(np.int64), data[:, 1], data[:, 2], data[:, 3], data[:, 4], data[:, 5]
        )
        self.gaps[symbol] = self._find_gaps(symbol, series.ts)
        for g in self.gaps[symbol]:
            log.warning(
                "%s %s %s: %d bar(s) missing between %d and %d",
                self.exchange_name,
                symbol,
                self.timeframe,
                g.missing,
                g.after_ts,
                g.before_ts,
            )
        return series

    def _find_gaps(self, symbol: str, ts: np.ndarray) -> list[Gap]:
        if ts.shape[0] < 2:
            return []
        diffs = np.diff(ts)
        idx = np.nonzero(diffs > self.step)[0]
        return [Gap(symbol, int(ts[i]), int(ts[i + 1]), int(diffs[i] // self.step) - 1) for i in idx]

    async def _download(self, ex: Any, symbol: str, start: int, end: int) -> None:
        cursor = start

        def fetch(since: int) -> Any:
            return lambda: ex.fetch_ohlcv(
                symbol, self.timeframe, since, self.page_limit, {"until": end + self.step - 1}
            )

        while cursor <= end:
            page: list[list[Any]] = await with_retries(
                ex,
                f"fetch_ohlcv {symbol} since {cursor}",
                fetch(cursor),
                retries=self.max_retries,
                backoff=Backoff(0.25, 10.0),
            )
            self.pages_fetched += 1
            rows = []
            for r in page:
                if not (cursor <= int(r[0]) <= end):
                    continue
                try:
                    bar = Bar.parse(int(r[0]), r[1], r[2], r[3], r[4], r[5] if r[5] is not None else 0.0)
                except ValidationError as exc:
                    self.refused_rows += 1
                    log.warning("%s %s: refused bar %s: %s", self.exchange_name, symbol, r, exc)
                    continue
                rows.append(bar[:6])
            last_seen = max((int(r[0]) for r in page if cursor <= int(r[0]) <= end), default=None)
            # A short page means the venue has nothing more up to ``end``: the whole rest is covered.
            covered_to = end if last_seen is None or len(page) < self.page_limit else last_seen
            await asyncio.to_thread(
                self.cache.store,
                self.exchange_name,
                symbol,
                self.timeframe,
                self.step,
                rows,
                (cursor, covered_to),
            )
            if covered_to >= end:
                return
            cursor = covered_to + self.step

    # -- live ----------------------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[Bar | Quote]:
        """Closed bars and quotes of every configured symbol, reconnecting with backoff on drops."""
        if not self.symbols:
            raise ConfigError("ccxt.symbols", "stream() needs at least one symbol")
        ex = make_exchange(self.cfg, pro=True)
        if not ex.has.get("watchOHLCV") and not ex.has.get("watchTicker"):
            await ex.close()
            raise ConfigError("ccxt.exchange", f"{self.exchange_name} has no websocket feeds in ccxt.pro")
        queue: asyncio.Queue[Bar | Quote | BaseException] = asyncio.Queue(maxsize=10_000)
        tasks: list[asyncio.Task[None]] = []
        try:
            await with_retries(
                ex,
                "load markets",
                lambda: ex.load_markets(),
                retries=self.max_retries,
                backoff=Backoff(0.25, 10.0),
            )
            for symbol in self.symbols:
                if symbol not in ex.markets:
                    raise ValidationError("symbol", symbol, f"{self.exchange_name} has no such market")
                if self.want_bars and ex.has.get("watchOHLCV"):
                    tasks.append(asyncio.create_task(self._bars(ex, symbol, queue)))
                if self.want_quotes and ex.has.get("watchTicker"):
                    tasks.append(asyncio.create_task(self._quotes(ex, symbol, queue)))
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await ex.close()

    async def _watch(self, what: str, call: Any, handle: Any, queue: asyncio.Queue[Any]) -> None:
        """Run ``call`` forever, passing results to ``handle``; back off and reconnect on failures."""
        backoff = Backoff(self.reconnect_base, self.reconnect_cap)
        last_failure = -math.inf
        while True:
            try:
                result = await call()
            except asyncio.CancelledError:
                raise
            except (ccxt.AuthenticationError, ccxt.BadSymbol, ccxt.NotSupported) as exc:
                await queue.put(BrokerConnectionError(f"{what}: {type(exc).__name__}: {exc}"))
                return
            except Exception as exc:  # any other failure is a drop (network, garbage frame): reconnect
                self.reconnects += 1
                last_failure = time.monotonic()
                delay = backoff.next_delay()
                self.reconnect_delays.append(delay)
                log.warning("%s: %s: %s; reconnecting in %.2fs", what, type(exc).__name__, exc, delay)
                await self.sleep(delay)
                continue
            if time.monotonic() - last_failure >= self.stable_after:
                backoff.reset()
            for item in handle(result):
                await queue.put(item)

    async def _bars(self, ex: Any, symbol: str, queue: asyncio.Queue[Any]) -> None:
        pending: list[Any] | None = None  # the newest candle seen: still open until a newer one appears
        emitted = -1  # open time of the last bar yielded (a reconnect may replay older candles)

        def handle(candles: list[list[Any]]) -> list[Bar]:
            nonlocal pending, emitted
            out = []
            for c in sorted(candles, key=lambda c: c[0]):
                if pending is not None and c[0] > pending[0] and pending[0] > emitted:
                    # The venue started a newer bar: the pending one is closed and final.
                    try:
                        out.append(
                            Bar.parse(
                                int(pending[0]),
                                pending[1],
                                pending[2],
                                pending[3],
                                pending[4],
                                pending[5] or 0.0,
                                symbol,
                            )
                        )
                        emitted = int(pending[0])
                    except ValidationError as exc:
                        self.refused_rows += 1
                        log.warning(
                            "%s %s: refused live bar %s: %s", self.exchange_name, symbol, pending, exc
                        )
                if pending is None or c[0] >= pending[0]:
                    pending = list(c)
            return out

        await self._watch(
            f"watch_ohlcv {symbol}", lambda: ex.watch_ohlcv(symbol, self.timeframe), handle, queue
        )

    async def _quotes(self, ex: Any, symbol: str, queue: asyncio.Queue[Any]) -> None:
        def handle(t: dict[str, Any]) -> list[Quote]:
            last = t.get("last") or t.get("close")
            bid = t.get("bid") or last
            ask = t.get("ask") or last
            if bid is None or ask is None or not (math.isfinite(bid) and math.isfinite(ask)):
                return []
            try:
                return [
                    Quote.parse(
                        int(t.get("timestamp") or time.time() * 1000),
                        bid,
                        ask,
                        last,
                        symbol,
                        t.get("bidVolume") or 0.0,
                        t.get("askVolume") or 0.0,
                    )
                ]
            except ValidationError as exc:
                self.refused_rows += 1
                log.warning("%s %s: refused quote: %s", self.exchange_name, symbol, exc)
                return []

        await self._watch(
            f"watch_ticker {symbol}", lambda: ex.watch_ticker(symbol, dict(self.ticker_params)), handle, queue
        )


def parse_uri(uri: str) -> tuple[str, dict[str, Any]] | None:
    """``ccxt:EXCHANGE:SYMBOL[:TIMEFRAME]`` -> ("ccxt", options); None for any other URI."""
    if not isinstance(uri, str) or not uri.startswith("ccxt:"):
        return None
    parts = uri.split(":")
    if len(parts) < 3 or not parts[1] or not parts[2]:
        raise ConfigError(
            "data", f"{uri!r}: expected ccxt:EXCHANGE:SYMBOL[:TIMEFRAME], e.g. ccxt:binance:BTC/USDT:1m"
        )
    timeframe = "1m"
    rest = parts[2:]
    if len(rest) > 1 and TIMEFRAME_RE.match(rest[-1]):
        timeframe = rest.pop()
    exchange = parts[1]
    if exchange not in ccxt.exchanges:
        raise ConfigError("data", f"{uri!r}: {exchange!r} is not an exchange ccxt knows")
    return "ccxt", {"exchange": exchange, "symbols": [":".join(rest)], "timeframe": timeframe}
