"""The built-in indicators: sma, ema, rsi, atr, macd, bollinger.

Each indicator has two implementations that give the same numbers (checked by
:func:`stratkernel.testing.indicators.assert_indicator_consistent` in the test suite):

* ``compute(series, **params)``, vectorized over a whole :class:`~stratkernel.core.data.BarSeries`
  (backtests). Windowed sums use numpy cumulative sums; the recursive filters (EMA, Wilder's RMA)
  run one tight ``itertools.accumulate`` pass over a Python list, the fastest exact way without scipy
  (about 0.3 s per million bars per filter on the reference machine; see ``make bench``).
* ``incremental(**params)``, an object whose ``update(bar)`` costs O(1) per bar and holds at most one
  window of values (ring buffers), used live.

Warm-up convention: TradingView's Pine built-ins (``ta.sma``, ``ta.ema``, ``ta.rma``, ``ta.rsi``,
``ta.atr``, ``ta.macd``, ``ta.bb``). Values before the first full window are NaN (scripts see
``None``). With ``n`` the period and index 0 the first bar:

==========  ==========================================================================================
sma(n)      first value at index n-1: the mean of the last n values.
ema(n)      alpha = 2/(n+1); seeded at index n-1 with the SMA of the first n values, then
            ``ema += alpha * (x - ema)``. Same seed as TA-Lib's EMA.
rsi(n)      Wilder's RMA (alpha = 1/n) of gains and losses of the n changes x[i]-x[i-1]; seeded with
            their simple averages, so the first value is at index n (same as TA-Lib).
            ``rsi = 100 - 100 / (1 + gain/loss)``; 100 when the average loss is 0, 0 when the average
            gain is 0 (TradingView; TA-Lib returns 0 when both are 0, we return 100 like TradingView).
atr(n)      Wilder's RMA of the true range. TR[0] = high-low (no previous close yet), TR[i] =
            max(high-low, |high-close[i-1]|, |low-close[i-1]|). Seeded with the mean of TR[0..n-1],
            so the first value is at index n-1 (TradingView). TA-Lib skips TR[0] and starts at index n.
macd        macd = ema(fast) - ema(slow), first at index max(fast, slow)-1; signal = ema(signal) of
            the macd line, seeded with the SMA of its first ``signal`` values, so signal and hist
            start at index max(fast, slow)+signal-2 (TradingView; TA-Lib delays the macd line to the
            signal's first index as well).
bollinger   middle = sma(n); upper/lower = middle +/- mult * population standard deviation
            (ddof=0, as TradingView's ta.stdev and TA-Lib's BBANDS); first at index n-1.
==========  ==========================================================================================

``source`` is one of open, high, low, close, volume, hl2, hlc3 (see ``BarSeries.column``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from itertools import accumulate
from typing import Any

import numpy as np

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ValidationError
from stratkernel.core.hookspecs import hookimpl
from stratkernel.core.indicators import IndicatorSpec
from stratkernel.core.model import Bar

__all__ = [
    "ATR",
    "BOLLINGER",
    "EMA",
    "MACD",
    "RSI",
    "SMA",
    "SPECS",
    "register_indicators",
]

NAN = float("nan")
SOURCES = ("open", "high", "low", "close", "volume", "hl2", "hlc3")


# -- parameter checks (compute/incremental may be called directly, not only through spec.bind) ---------
def _period(name: str, value: Any) -> int:
    if type(value) is not int or not 1 <= value <= 100_000:
        raise ValidationError(name, value, "must be an integer from 1 to 100000")
    return value


def _source(value: Any) -> str:
    if value not in SOURCES:
        raise ValidationError("source", value, f"must be one of {', '.join(SOURCES)}")
    return str(value)


def _source_getter(source: str) -> Callable[[Bar], float]:
    """The scalar twin of ``BarSeries.column``: same arithmetic, so both paths agree bit for bit."""
    if source == "hl2":
        return lambda b: (b.high + b.low) / 2.0
    if source == "hlc3":
        return lambda b: (b.high + b.low + b.close) / 3.0
    index = Bar._fields.index(source)
    return lambda b: float(b[index])


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan, dtype=np.float64)


# -- vectorized building blocks ----------------------------------------------------------------------
def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of each window of n values, NaN for the first n-1 positions.

    The cumulative sum runs over ``x - x[0]`` so its magnitude stays near the data's range rather
    than growing with the series length times the price level (keeps ~1e-12 relative error at 1M bars).
    """
    out = _nan(len(x))
    if len(x) < n:
        return out
    c = x[0]
    cs = np.empty(len(x) + 1, dtype=np.float64)
    cs[0] = 0.0
    np.cumsum(x - c, out=cs[1:])
    out[n - 1 :] = (cs[n:] - cs[:-n]) / n + c
    return out


def _rolling_pstd(x: np.ndarray, n: int, mean: np.ndarray) -> np.ndarray:
    """Population standard deviation of each window of n values (NaN for the first n-1).

    Short windows (n <= 64): exact two-pass per window, in chunks that cap temporaries at ~16 MB;
    O(len(x) * n) but that is cheap for small n. Longer windows: O(len(x)) sums of (x - c) and
    (x - c)^2, where the centre c is re-chosen for every block of outputs (the mean of the data that
    block touches), so ``S2/n - (S1/n)^2`` never subtracts two huge numbers.
    """
    out = _nan(len(x))
    if len(x) < n:
        return out
    if n <= 64:
        windows = np.lib.stride_tricks.sliding_window_view(x, n)
        m = mean[n - 1 :]
        step = max(1, 2_000_000 // n)
        for lo in range(0, windows.shape[0], step):
            w = windows[lo : lo + step]
            d = w - m[lo : lo + step, None]
            out[n - 1 + lo : n - 1 + lo + w.shape[0]] = np.sqrt(np.einsum("ij,ij->i", d, d) / n)
        return out
    block = max(4096, 8 * n)
    for start in range(n - 1, len(x), block):
        stop = min(start + block, len(x))
        seg = x[start - n + 1 : stop]
        d = seg - seg.mean()
        c1 = np.concatenate(([0.0], np.cumsum(d)))
        c2 = np.concatenate(([0.0], np.cumsum(d * d)))
        s1 = (c1[n:] - c1[:-n]) / n
        var = (c2[n:] - c2[:-n]) / n - s1 * s1
        out[start:stop] = np.sqrt(np.maximum(var, 0.0))
    return out


def _seeded_filter(x: np.ndarray, n: int, alpha: float, start: int = 0) -> np.ndarray:
    """``y += alpha * (x - y)`` seeded at index start+n-1 with the mean of x[start:start+n].

    ``x`` must be finite from ``start`` on. The same arithmetic, in the same order, as
    :class:`_SeededFilter`, so live and backtest values are identical, not merely close.
    """
    out = _nan(len(x))
    first = start + n - 1
    if len(x) <= first:
        return out
    seed = 0.0
    for v in x[start : start + n].tolist():  # sequential, like the incremental running sum
        seed += v
    seed /= n
    rest = x[first + 1 :].tolist()
    out[first:] = np.fromiter(
        accumulate(rest, lambda y, v: y + alpha * (v - y), initial=seed),
        dtype=np.float64,
        count=len(rest) + 1,
    )
    return out


def _true_range(series: BarSeries) -> np.ndarray:
    h, lo, c = series.high, series.low, series.close
    tr = h - lo
    if len(series) > 1:
        pc = c[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - pc), np.abs(lo[1:] - pc)))
    return tr


def _rsi_from(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + up / down)
    rsi = np.where(up == 0.0, 0.0, rsi)
    rsi = np.where(down == 0.0, 100.0, rsi)
    return np.where(np.isnan(up) | np.isnan(down), np.nan, rsi)


def _rsi_value(up: float, down: float) -> float:
    if down == 0.0:
        return 100.0
    if up == 0.0:
        return 0.0
    return 100.0 - 100.0 / (1.0 + up / down)


# -- incremental building blocks ---------------------------------------------------------------------
class _SeededFilter:
    """Scalar twin of :func:`_seeded_filter`: NaN for n-1 values, then the seeded recursive filter."""

    __slots__ = ("_alpha", "_count", "_n", "_sum", "value")

    def __init__(self, n: int, alpha: float) -> None:
        self._n = n
        self._alpha = alpha
        self._count = 0
        self._sum = 0.0
        self.value = NAN

    def push(self, x: float) -> float:
        if self._count >= self._n:
            y = self.value
            self.value = y + self._alpha * (x - y)
            return self.value
        self._count += 1
        self._sum += x
        if self._count == self._n:
            self.value = self._sum / self._n
        return self.value


class _Window:
    """The last n values with their mean and population variance in O(1) amortized per value.

    Sums are kept about a centre ``c`` (the window mean at the last exact recount), so
    ``var = S2/n - (S1/n)^2`` suffers no cancellation; every n values the sums are recomputed exactly
    from the ring buffer, so rounding never accumulates (O(n) once per n values = O(1) amortized).
    """

    __slots__ = ("_buf", "_c", "_n", "_s1", "_s2", "_since")

    def __init__(self, n: int) -> None:
        self._n = n
        self._buf: deque[float] = deque(maxlen=n)
        self._c = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._since = 0

    @property
    def full(self) -> bool:
        return len(self._buf) == self._n

    def push(self, x: float) -> None:
        buf, c = self._buf, self._c
        if len(buf) == self._n:
            old = buf[0] - c
            self._s1 -= old
            self._s2 -= old * old
        if not buf:
            self._c = c = x
        buf.append(x)
        d = x - c
        self._s1 += d
        self._s2 += d * d
        self._since += 1
        if self._since >= self._n:
            self._recount()

    def _recount(self) -> None:
        buf = self._buf
        c = math.fsum(buf) / len(buf)
        self._c = c
        self._s1 = math.fsum(v - c for v in buf)
        self._s2 = math.fsum((v - c) * (v - c) for v in buf)
        self._since = 0

    def mean(self) -> float:
        return self._c + self._s1 / len(self._buf)

    def pstd(self) -> float:
        n = len(self._buf)
        m = self._s1 / n
        return math.sqrt(max(self._s2 / n - m * m, 0.0))


# -- sma ---------------------------------------------------------------------------------------------
def sma_compute(series: BarSeries, period: int = 20, source: str = "close") -> tuple[np.ndarray]:
    return (_rolling_mean(series.column(_source(source)), _period("period", period)),)


class SmaIncremental:
    __slots__ = ("_get", "_w")

    def __init__(self, period: int = 20, source: str = "close") -> None:
        self._get = _source_getter(_source(source))
        self._w = _Window(_period("period", period))

    def update(self, bar: Bar) -> tuple[float]:
        w = self._w
        w.push(self._get(bar))
        return (w.mean() if w.full else NAN,)


# -- ema ---------------------------------------------------------------------------------------------
def ema_compute(series: BarSeries, period: int = 20, source: str = "close") -> tuple[np.ndarray]:
    n = _period("period", period)
    return (_seeded_filter(series.column(_source(source)), n, 2.0 / (n + 1)),)


class EmaIncremental:
    __slots__ = ("_f", "_get")

    def __init__(self, period: int = 20, source: str = "close") -> None:
        n = _period("period", period)
        self._get = _source_getter(_source(source))
        self._f = _SeededFilter(n, 2.0 / (n + 1))

    def update(self, bar: Bar) -> tuple[float]:
        return (self._f.push(self._get(bar)),)


# -- rsi ---------------------------------------------------------------------------------------------
def rsi_compute(series: BarSeries, period: int = 14, source: str = "close") -> tuple[np.ndarray]:
    n = _period("period", period)
    x = series.column(_source(source))
    if len(x) <= n:
        return (_nan(len(x)),)
    change = np.empty_like(x)
    change[0] = np.nan
    np.subtract(x[1:], x[:-1], out=change[1:])
    # max(change, 0) and max(-change, 0) exactly as the incremental version computes them
    gain = np.where(change > 0.0, change, 0.0)
    loss = np.where(change < 0.0, -change, 0.0)
    up = _seeded_filter(gain, n, 1.0 / n, start=1)
    down = _seeded_filter(loss, n, 1.0 / n, start=1)
    return (_rsi_from(up, down),)


class RsiIncremental:
    __slots__ = ("_down", "_get", "_prev", "_up")

    def __init__(self, period: int = 14, source: str = "close") -> None:
        n = _period("period", period)
        self._get = _source_getter(_source(source))
        self._up = _SeededFilter(n, 1.0 / n)
        self._down = _SeededFilter(n, 1.0 / n)
        self._prev = NAN

    def update(self, bar: Bar) -> tuple[float]:
        x = self._get(bar)
        prev, self._prev = self._prev, x
        if prev != prev:  # first bar: no change yet
            return (NAN,)
        change = x - prev
        up = self._up.push(change if change > 0.0 else 0.0)
        down = self._down.push(-change if change < 0.0 else 0.0)
        if up != up:
            return (NAN,)
        return (_rsi_value(up, down),)


# -- atr ---------------------------------------------------------------------------------------------
def atr_compute(series: BarSeries, period: int = 14) -> tuple[np.ndarray]:
    n = _period("period", period)
    return (_seeded_filter(_true_range(series), n, 1.0 / n),)


class AtrIncremental:
    __slots__ = ("_f", "_prev_close")

    def __init__(self, period: int = 14) -> None:
        n = _period("period", period)
        self._f = _SeededFilter(n, 1.0 / n)
        self._prev_close = NAN

    def update(self, bar: Bar) -> tuple[float]:
        tr = bar.high - bar.low
        pc = self._prev_close
        if pc == pc:
            tr = max(tr, max(abs(bar.high - pc), abs(bar.low - pc)))
        self._prev_close = bar.close
        return (self._f.push(tr),)


# -- macd --------------------------------------------------------------------------------------------
def macd_compute(
    series: BarSeries, fast: int = 12, slow: int = 26, signal: int = 9, source: str = "close"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, s, g = _period("fast", fast), _period("slow", slow), _period("signal", signal)
    x = series.column(_source(source))
    line = _seeded_filter(x, f, 2.0 / (f + 1)) - _seeded_filter(x, s, 2.0 / (s + 1))
    sig = _seeded_filter(line, g, 2.0 / (g + 1), start=max(f, s) - 1)
    return line, sig, line - sig


class MacdIncremental:
    __slots__ = ("_fast", "_get", "_signal", "_slow")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9, source: str = "close") -> None:
        f, s, g = _period("fast", fast), _period("slow", slow), _period("signal", signal)
        self._get = _source_getter(_source(source))
        self._fast = _SeededFilter(f, 2.0 / (f + 1))
        self._slow = _SeededFilter(s, 2.0 / (s + 1))
        self._signal = _SeededFilter(g, 2.0 / (g + 1))

    def update(self, bar: Bar) -> tuple[float, float, float]:
        x = self._get(bar)
        line = self._fast.push(x) - self._slow.push(x)
        if line != line:
            return (NAN, NAN, NAN)
        sig = self._signal.push(line)
        return (line, sig, line - sig)


# -- bollinger ---------------------------------------------------------------------------------------
def bollinger_compute(
    series: BarSeries, period: int = 20, mult: float = 2.0, source: str = "close"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = _period("period", period)
    k = _mult(mult)
    x = series.column(_source(source))
    mid = _rolling_mean(x, n)
    dev = k * _rolling_pstd(x, n, mid)
    return mid, mid + dev, mid - dev


def _mult(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        raise ValidationError("mult", value, "must be a positive number")
    return float(value)


class BollingerIncremental:
    __slots__ = ("_get", "_k", "_w")

    def __init__(self, period: int = 20, mult: float = 2.0, source: str = "close") -> None:
        self._get = _source_getter(_source(source))
        self._w = _Window(_period("period", period))
        self._k = _mult(mult)

    def update(self, bar: Bar) -> tuple[float, float, float]:
        w = self._w
        w.push(self._get(bar))
        if not w.full:
            return (NAN, NAN, NAN)
        mid = w.mean()
        dev = self._k * w.pstd()
        return (mid, mid + dev, mid - dev)


# -- specs -------------------------------------------------------------------------------------------
SMA = IndicatorSpec(
    name="sma",
    params=(("period", 20), ("source", "close")),
    compute=sma_compute,
    incremental=SmaIncremental,
    description="Simple moving average; first value at index period-1.",
)
EMA = IndicatorSpec(
    name="ema",
    params=(("period", 20), ("source", "close")),
    compute=ema_compute,
    incremental=EmaIncremental,
    description="Exponential moving average, alpha=2/(period+1), seeded with the SMA (TradingView/TA-Lib).",
)
RSI = IndicatorSpec(
    name="rsi",
    params=(("period", 14), ("source", "close")),
    compute=rsi_compute,
    incremental=RsiIncremental,
    description="Relative strength index with Wilder's smoothing; first value at index period.",
)
ATR = IndicatorSpec(
    name="atr",
    params=(("period", 14),),
    compute=atr_compute,
    incremental=AtrIncremental,
    description="Average true range, Wilder's smoothing (TradingView seed); first value at index period-1.",
)
MACD = IndicatorSpec(
    name="macd",
    params=(("fast", 12), ("slow", 26), ("signal", 9), ("source", "close")),
    compute=macd_compute,
    incremental=MacdIncremental,
    outputs=("macd", "signal", "hist"),
    description="MACD line, signal line and histogram (TradingView warm-up).",
)
BOLLINGER = IndicatorSpec(
    name="bollinger",
    params=(("period", 20), ("mult", 2.0), ("source", "close")),
    compute=bollinger_compute,
    incremental=BollingerIncremental,
    outputs=("middle", "upper", "lower"),
    description="Bollinger bands: SMA +/- mult * population standard deviation (ddof=0).",
)

SPECS: tuple[IndicatorSpec, ...] = (SMA, EMA, RSI, ATR, MACD, BOLLINGER)


@hookimpl
def register_indicators(register: Callable[..., None]) -> None:
    for spec in SPECS:
        register(spec)
