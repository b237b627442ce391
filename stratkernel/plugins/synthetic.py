"""SYNTHETIC prices: a seeded geometric random walk, data source ``synthetic``.

Not market data. It exists so that ``make run``, demos, tests and benchmarks work with no network
and no files. To keep it from being mistaken for a market, every symbol it serves must contain
``SYNTH`` (default ``SYNTH-USD``), the source has ``synthetic = True``, and its registration says so.

The walk, per bar (``drift`` and ``vol`` are per bar, in log-return units)::

    r      ~ Normal(drift - vol^2/2, vol)          # so E[close_t / close_{t-1}] = exp(drift)
    close  = previous close * exp(r)
    open   = previous close                         # no gaps
    high   = max(open, close) * exp(|z1| * vol/2)   # z1, z2 ~ Normal(0, 1)
    low    = min(open, close) * exp(-|z2| * vol/2)
    volume = lognormal around ``volume`` (rounded to 3 decimals)

so OHLC is always valid (low <= open, close <= high) and positive. The log price is reflected at
``start_price / 1e4`` and ``start_price * 1e4``, so no run underflows to 0 or overflows, however
long or volatile (far outside what the default parameters ever reach). Bars are generated in fixed
chunks of 4096 from ``numpy.random.default_rng(SeedSequence([seed, crc32(symbol)]))``: the first k
bars are the same whatever the total asked for, ``history`` and ``stream`` walk the same path, and
each symbol has its own path.

Options (all optional): ``symbol`` (``"SYNTH-USD"``) or ``symbols`` (a list), ``bars`` (10000, for
``history``), ``start`` (history's first bar time, default 2024-01-01T00:00:00Z), ``interval_ms``
(60000), ``start_price`` (100.0), ``drift`` (0.0), ``vol`` (0.001), ``volume`` (10.0), ``seed`` (0),
``speed`` (1.0; ``stream`` paces bars ``interval_ms / speed`` apart in real time, 0 = as fast as
possible), ``spread_bps`` (2.0; the quote after each bar is close -/+ half the spread), ``limit``
(bars per symbol that ``stream`` yields before it ends; default endless).

``stream`` stamps bars with the live clock: the first bar opens at the current time floored to
``interval_ms`` and each next one ``interval_ms`` later (at ``speed`` > 1 the stamps run ahead of
the wall clock). After each bar it yields a :class:`~stratkernel.core.model.Quote` stamped at the
bar's last millisecond.

On the command line, ``--data synthetic`` or ``--data synthetic:bars=5000,seed=3,vol=0.002``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.hookspecs import hookimpl
from stratkernel.core.model import Bar, Quote, to_ms

__all__ = [
    "DEFAULT_START_MS",
    "SyntheticSource",
    "WalkParams",
    "generate_bars",
    "register_data_sources",
    "resolve_data_source",
]

CHUNK = 4096
LOG_BAND = float(np.log(1e4))  # prices stay within start_price / 1e4 .. start_price * 1e4
DEFAULT_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DESCRIPTION = "SYNTHETIC prices (seeded random walk, not market data) for demos, tests and benchmarks"


@dataclass(frozen=True, slots=True)
class WalkParams:
    """Parameters of the random walk (see the module docstring)."""

    start_price: float = 100.0
    drift: float = 0.0
    vol: float = 0.001
    volume: float = 10.0
    seed: int = 0


def _rng(params: WalkParams, symbol: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([params.seed, zlib.crc32(symbol.encode())]))


def _chunks(params: WalkParams, symbol: str) -> Iterator[tuple[np.ndarray, ...]]:
    """Endless (open, high, low, close, volume) chunks of CHUNK bars, continuing one path."""
    rng = _rng(params, symbol)
    last = params.start_price
    mu = params.drift - 0.5 * params.vol * params.vol
    half = 0.5 * params.vol
    # Reflect the log price into [start/BAND, start*BAND] so no run, however long or volatile, reaches
    # 0 or overflows. Folding the free walk with a triangle wave of period 2W *is* the walk reflected
    # at both bounds, and it stays vectorized. Reducing the free walk modulo 2W keeps it small.
    lower = float(np.log(params.start_price)) - LOG_BAND
    width = 2.0 * LOG_BAND
    free = lower + LOG_BAND
    while True:
        z = rng.standard_normal((4, CHUNK))
        walk = free + np.cumsum(mu + params.vol * z[0])
        free = lower + float(np.mod(walk[-1] - lower, 2.0 * width))
        close = np.exp(lower + width - np.abs(np.mod(walk - lower, 2.0 * width) - width))
        open_ = np.empty(CHUNK)
        open_[0] = last
        open_[1:] = close[:-1]
        high = np.maximum(open_, close) * np.exp(np.abs(z[1]) * half)
        low = np.minimum(open_, close) * np.exp(-np.abs(z[2]) * half)
        volume = np.round(params.volume * np.exp(0.5 * z[3] - 0.125), 3)
        last = float(close[-1])
        yield open_, high, low, close, volume


def generate_bars(
    n: int,
    *,
    symbol: str = "SYNTH-USD",
    start_ms: int = DEFAULT_START_MS,
    interval_ms: int = 60_000,
    params: WalkParams | None = None,
) -> BarSeries:
    """``n`` synthetic bars as a validated BarSeries (vectorized; about 0.2 s per million bars)."""
    p = params or WalkParams()
    parts: list[tuple[np.ndarray, ...]] = []
    got = 0
    for chunk in _chunks(p, symbol):
        if got >= n:
            break
        parts.append(chunk)
        got += CHUNK
    cols = [np.concatenate([c[j] for c in parts])[:n] if parts else np.empty(0) for j in range(5)]
    ts = start_ms + interval_ms * np.arange(n, dtype=np.int64)
    return BarSeries.from_arrays(symbol, ts, *cols)


class SyntheticSource:
    """The ``synthetic`` data source. ``synthetic = True`` lets the kernel and UIs label its data."""

    synthetic = True
    description = DESCRIPTION

    def __init__(
        self,
        symbols: list[str],
        *,
        bars: int = 10_000,
        start_ms: int = DEFAULT_START_MS,
        interval_ms: int = 60_000,
        params: WalkParams | None = None,
        speed: float = 1.0,
        spread_bps: float = 2.0,
        limit: int | None = None,
    ) -> None:
        self.name = "synthetic"
        self.symbols = list(symbols)
        self.bars = bars
        self.start_ms = start_ms
        self.interval_ms = interval_ms
        self.params = params or WalkParams()
        self.speed = speed
        self.spread_bps = spread_bps
        self.limit = limit
        self._cache: dict[str, BarSeries] = {}

    def _series(self, symbol: str) -> BarSeries:
        if symbol not in self.symbols:
            raise ValidationError("symbol", symbol, f"the synthetic source serves {self.symbols}")
        if symbol not in self._cache:
            self._cache[symbol] = generate_bars(
                self.bars,
                symbol=symbol,
                start_ms=self.start_ms,
                interval_ms=self.interval_ms,
                params=self.params,
            )
        return self._cache[symbol]

    async def history(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> BarSeries:
        """The first ``bars`` bars from ``start``, cut to [start_ms, end_ms]."""
        return self._series(symbol).between(start_ms, end_ms)

    def quote_for(self, bar: Bar) -> Quote:
        """The top of book after ``bar``: close -/+ half the spread, at the bar's last millisecond."""
        half = bar.close * self.spread_bps / 20_000.0
        size = round(bar.volume / 10.0, 3)
        return Quote(bar.ts + self.interval_ms - 1, bar.close - half, bar.close + half, bar.close, bar.symbol,
                     size, size)  # fmt: skip

    async def stream(self) -> AsyncIterator[Bar | Quote]:
        """Live bars (then a quote each) for every symbol, paced by ``interval_ms / speed``."""
        walks = [(s, _chunks(self.params, s)) for s in self.symbols]
        buffers: dict[str, tuple[np.ndarray, ...]] = {}
        step = self.interval_ms
        first_ts = (int(time.time() * 1000) // step) * step
        pace = step / 1000.0 / self.speed if self.speed > 0 else 0.0
        t0 = time.monotonic()
        k = 0
        while self.limit is None or k < self.limit:
            if pace:
                # sleep until this bar has "closed"; absolute targets, so delays never accumulate
                delay = t0 + (k + 1) * pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            j = k % CHUNK
            for symbol, walk in walks:
                if j == 0:
                    buffers[symbol] = next(walk)
                o, h, lo, c, v = buffers[symbol]
                bar = Bar(first_ts + k * step, float(o[j]), float(h[j]), float(lo[j]), float(c[j]), float(v[j]),
                          symbol)  # fmt: skip
                yield bar
                yield self.quote_for(bar)
            k += 1


# -- options -----------------------------------------------------------------------------------------
_INT_OPTIONS = {"bars": (1, 50_000_000), "interval_ms": (1, 7 * 86_400_000), "seed": (0, 2**63 - 1)}
_FLOAT_OPTIONS = {
    "start_price": (1e-6, 1e9),
    "drift": (-0.1, 0.1),
    "vol": (0.0, 0.5),
    "volume": (0.0, 1e12),
    "speed": (0.0, 1e9),
    "spread_bps": (0.0, 10_000.0),
}
_OPTIONS = {"symbol", "symbols", "start", "limit", *_INT_OPTIONS, *_FLOAT_OPTIONS}


def _field(key: str) -> str:
    return f"data.options.{key}"


def make_source(options: dict[str, Any]) -> SyntheticSource:
    """The factory registered as ``synthetic``; refuses unknown or out-of-range options by name."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConfigError(
            _field(unknown[0]), f"unknown option for synthetic; known: {', '.join(sorted(_OPTIONS))}"
        )
    values: dict[str, Any] = {}
    for key, (ilo, ihi) in _INT_OPTIONS.items():
        if key in options:
            iv = options[key]
            if type(iv) is not int or not ilo <= iv <= ihi:
                raise ConfigError(_field(key), f"must be an integer from {ilo} to {ihi}, got {iv!r}")
            values[key] = iv
    for key, (flo, fhi) in _FLOAT_OPTIONS.items():
        if key in options:
            fv = options[key]
            if isinstance(fv, bool) or not isinstance(fv, int | float) or not flo <= fv <= fhi:
                raise ConfigError(_field(key), f"must be a number from {flo:g} to {fhi:g}, got {fv!r}")
            values[key] = float(fv)
    if "symbol" in options and "symbols" in options:
        raise ConfigError(_field("symbols"), "give symbol or symbols, not both")
    symbols = options.get("symbols", [options.get("symbol", "SYNTH-USD")])
    if not isinstance(symbols, list | tuple) or not symbols:
        raise ConfigError(_field("symbols"), f"must be a non-empty list of names, got {symbols!r}")
    for s in symbols:
        if not isinstance(s, str) or "SYNTH" not in s.upper() or not s.isprintable() or len(s) > 64:
            raise ConfigError(
                _field("symbol"),
                f"{s!r}: synthetic symbols must contain 'SYNTH' (e.g. SYNTH-USD) so made-up prices are "
                "never mistaken for a market's",
            )
    if len(set(symbols)) != len(symbols):
        raise ConfigError(_field("symbols"), f"duplicate names in {list(symbols)}")
    start_ms = DEFAULT_START_MS
    if options.get("start") is not None:
        try:
            start_ms = to_ms(options["start"], "start")
        except ValidationError as exc:
            raise ConfigError(_field("start"), f"{options['start']!r}: {exc.reason}") from None
    limit = options.get("limit")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ConfigError(_field("limit"), f"must be a non-negative integer, got {limit!r}")
    params = WalkParams(
        start_price=values.get("start_price", 100.0),
        drift=values.get("drift", 0.0),
        vol=values.get("vol", 0.001),
        volume=values.get("volume", 10.0),
        seed=values.get("seed", 0),
    )
    return SyntheticSource(
        list(symbols),
        bars=values.get("bars", 10_000),
        start_ms=start_ms,
        interval_ms=values.get("interval_ms", 60_000),
        params=params,
        speed=values.get("speed", 1.0),
        spread_bps=values.get("spread_bps", 2.0),
        limit=limit,
    )


@hookimpl
def register_data_sources(register: Callable[..., None]) -> None:
    register("synthetic", make_source, description=DESCRIPTION, synthetic=True)


@hookimpl
def resolve_data_source(uri: str) -> tuple[str, dict[str, Any]] | None:
    """``synthetic`` or ``synthetic:key=value,...`` (numbers are parsed; everything else is text)."""
    if uri != "synthetic" and not uri.startswith("synthetic:"):
        return None
    options: dict[str, Any] = {}
    rest = uri[len("synthetic:") :] if ":" in uri else ""
    for part in filter(None, rest.split(",")):
        key, sep, raw = part.partition("=")
        if not sep or not key:
            raise ConfigError("data", f"{uri!r}: expected synthetic:key=value,... (bad part {part!r})")
        options[key.strip()] = _scalar(raw.strip())
    return "synthetic", options


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
