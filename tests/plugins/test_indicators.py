"""The built-in indicators: vectorized == incremental, and both match textbook definitions."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ValidationError
from stratkernel.core.indicators import IndicatorSpec
from stratkernel.core.plugins import load_plugins
from stratkernel.plugins import indicators as ind
from stratkernel.testing.indicators import assert_indicator_consistent

NAN = float("nan")


def random_series(n: int, seed: int, *, flat_every: int = 0) -> BarSeries:
    """A random walk with valid OHLC. ``flat_every`` inserts unchanged closes (zero changes for RSI)."""
    rng = np.random.default_rng(seed)
    ret = rng.normal(0.0, 0.01, n)
    if flat_every:
        ret[::flat_every] = 0.0
    close = 100.0 * np.exp(np.cumsum(ret))
    open_ = np.concatenate(([100.0], close[:-1]))
    wick = np.abs(rng.normal(0.0, 0.004, (2, n)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    vol = rng.uniform(1.0, 10.0, n)
    ts = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    return BarSeries.from_arrays("TEST", ts, open_, high, low, close, vol)


def series_from_closes(closes: list[float], highs=None, lows=None) -> BarSeries:
    n = len(closes)
    c = np.array(closes, dtype=np.float64)
    h = np.array(highs, dtype=np.float64) if highs is not None else c
    lo = np.array(lows, dtype=np.float64) if lows is not None else c
    ts = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    return BarSeries.from_arrays("TEST", ts, c, h, lo, c, np.ones(n))


# -- (a) vectorized == incremental ------------------------------------------------------------------
CASES = [
    ("sma", {"period": 1}),
    ("sma", {"period": 5}),
    ("sma", {"period": 50, "source": "hl2"}),
    ("ema", {"period": 1}),
    ("ema", {"period": 2}),
    ("ema", {"period": 20, "source": "hlc3"}),
    ("ema", {"period": 200}),
    ("rsi", {}),
    ("rsi", {"period": 2}),
    ("rsi", {"period": 30, "source": "open"}),
    ("atr", {}),
    ("atr", {"period": 1}),
    ("atr", {"period": 40}),
    ("macd", {}),
    ("macd", {"fast": 3, "slow": 10, "signal": 4, "source": "high"}),
    ("macd", {"fast": 26, "slow": 12, "signal": 1}),
    ("bollinger", {}),
    ("bollinger", {"period": 2, "mult": 1.5}),
    ("bollinger", {"period": 100, "mult": 3, "source": "low"}),
]


@pytest.mark.parametrize(("name", "params"), CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_vectorized_equals_incremental(name: str, params: dict, seed: int) -> None:
    spec = {s.name: s for s in ind.SPECS}[name]
    series = random_series(1500, seed, flat_every=7 if seed == 2 else 0)
    out = assert_indicator_consistent(spec, series, **params)
    assert len(out) == len(spec.outputs)
    assert all(np.isfinite(a[-1]) for a in out)


def test_recursive_indicators_are_bit_identical_live_and_vectorized() -> None:
    # the vectorized filters do the incremental arithmetic in the same order, so not even rounding differs
    s = random_series(5000, 11, flat_every=4)
    cases = (
        (ind.EMA, {"period": 9, "source": "hl2"}),
        (ind.RSI, {}),
        (ind.ATR, {}),
        (ind.MACD, {"source": "hlc3"}),
    )
    for spec, params in cases:
        assert_indicator_consistent(spec, s, rtol=0.0, **params)


def test_series_shorter_than_warm_up_is_all_nan() -> None:
    series = random_series(5, 3)
    for spec in ind.SPECS:
        out = assert_indicator_consistent(spec, series)
        assert all(np.isnan(a).all() for a in out), spec.name


def test_consistency_holds_over_long_series_with_a_trend() -> None:
    # 20k bars drifting far from the first price: exercises the centred sums and the exact recounts.
    series = random_series(20_000, 9)
    for spec in (ind.SMA, ind.BOLLINGER):
        assert_indicator_consistent(spec, series, period=37)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    period=st.integers(1, 40),
    other=st.integers(1, 40),
    source=st.sampled_from(["close", "open", "hl2", "hlc3"]),
)
def test_consistency_property(n: int, seed: int, period: int, other: int, source: str) -> None:
    series = random_series(n, seed, flat_every=3 if seed % 2 else 0)
    for spec in (ind.SMA, ind.EMA, ind.RSI):
        assert_indicator_consistent(spec, series, period=period, source=source)
    assert_indicator_consistent(ind.ATR, series, period=period)
    assert_indicator_consistent(
        ind.MACD, series, fast=period, slow=other, signal=max(1, other // 3), source=source
    )
    assert_indicator_consistent(ind.BOLLINGER, series, period=period, mult=1.5, source=source)


def test_constant_prices() -> None:
    s = series_from_closes([7.0] * 60)
    for spec in ind.SPECS:
        assert_indicator_consistent(spec, s)
    assert ind.RSI.compute(s)[0][-1] == 100.0  # no losses (and no gains): TradingView says 100
    mid, up, low = ind.BOLLINGER.compute(s)
    assert mid[-1] == up[-1] == low[-1] == 7.0
    assert ind.ATR.compute(s)[0][-1] == 0.0


# -- (b) textbook reference implementations, written naively here ------------------------------------
def ref_sma(x: list[float], n: int) -> list[float]:
    return [NAN if i < n - 1 else sum(x[i - n + 1 : i + 1]) / n for i in range(len(x))]


def ref_ema(x: list[float], n: int) -> list[float]:
    """EMA seeded with the SMA of the first n valid values; leading NaNs are skipped."""
    out = [NAN] * len(x)
    first = next(i for i, v in enumerate(x) if not math.isnan(v))
    k = 2.0 / (n + 1)
    prev = None
    for i in range(first + n - 1, len(x)):
        prev = sum(x[first : first + n]) / n if prev is None else x[i] * k + prev * (1 - k)
        out[i] = prev
    return out


def ref_wilder(values: list[float], n: int, start: int) -> list[float]:
    """Wilder's smoothing: first = mean of n values from ``start``, then (prev*(n-1) + v) / n."""
    out = [NAN] * len(values)
    prev = None
    for i in range(start + n - 1, len(values)):
        prev = sum(values[start : start + n]) / n if prev is None else (prev * (n - 1) + values[i]) / n
        out[i] = prev
    return out


def ref_rsi(x: list[float], n: int) -> list[float]:
    gains = [0.0] + [max(x[i] - x[i - 1], 0.0) for i in range(1, len(x))]
    losses = [0.0] + [max(x[i - 1] - x[i], 0.0) for i in range(1, len(x))]
    ag, al = ref_wilder(gains, n, 1), ref_wilder(losses, n, 1)
    out = []
    for g, lo in zip(ag, al, strict=True):
        if math.isnan(g):
            out.append(NAN)
        elif lo == 0:
            out.append(100.0)
        else:
            out.append(100 - 100 / (1 + g / lo))
    return out


def ref_atr(h: list[float], lo: list[float], c: list[float], n: int) -> list[float]:
    tr = [h[0] - lo[0]] + [
        max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in range(1, len(c))
    ]
    return ref_wilder(tr, n, 0)


def ref_bollinger(x: list[float], n: int, k: float) -> tuple[list[float], list[float], list[float]]:
    mid, up, low = [], [], []
    for i in range(len(x)):
        if i < n - 1:
            mid.append(NAN), up.append(NAN), low.append(NAN)
            continue
        w = x[i - n + 1 : i + 1]
        m, sd = statistics.fmean(w), statistics.pstdev(w)
        mid.append(m), up.append(m + k * sd), low.append(m - k * sd)
    return mid, up, low


def assert_same(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(
        actual, np.array(expected, dtype=np.float64), rtol=1e-9, atol=1e-12, equal_nan=True
    )


@pytest.fixture(scope="module")
def small() -> BarSeries:
    return random_series(120, 42, flat_every=5)


def test_sma_matches_textbook(small: BarSeries) -> None:
    for n in (1, 3, 10):
        assert_same(ind.SMA.compute(small, period=n)[0], ref_sma(small.close.tolist(), n))


def test_ema_matches_textbook(small: BarSeries) -> None:
    for n in (1, 4, 21):
        assert_same(ind.EMA.compute(small, period=n)[0], ref_ema(small.close.tolist(), n))


def test_rsi_matches_textbook(small: BarSeries) -> None:
    for n in (2, 14):
        assert_same(ind.RSI.compute(small, period=n)[0], ref_rsi(small.close.tolist(), n))


def test_atr_matches_textbook(small: BarSeries) -> None:
    h, lo, c = small.high.tolist(), small.low.tolist(), small.close.tolist()
    for n in (1, 5, 14):
        assert_same(ind.ATR.compute(small, period=n)[0], ref_atr(h, lo, c, n))


def test_macd_matches_textbook(small: BarSeries) -> None:
    x = small.close.tolist()
    line, sig, hist = ind.MACD.compute(small, fast=5, slow=13, signal=4)
    ref_line = [f - s for f, s in zip(ref_ema(x, 5), ref_ema(x, 13), strict=True)]
    ref_sig = ref_ema(ref_line, 4)
    assert_same(line, ref_line)
    assert_same(sig, ref_sig)
    assert_same(hist, [a - b for a, b in zip(ref_line, ref_sig, strict=True)])


def test_bollinger_matches_textbook(small: BarSeries) -> None:
    mid, up, low = ind.BOLLINGER.compute(small, period=10, mult=2.5)
    rmid, rup, rlow = ref_bollinger(small.close.tolist(), 10, 2.5)
    assert_same(mid, rmid)
    assert_same(up, rup)
    assert_same(low, rlow)


def test_bollinger_long_windows_match_per_window_std() -> None:
    # periods above 64 take the blocked-sums path; compare with numpy's std of each window
    s = random_series(12_000, 4)
    for n in (65, 300, 5000):
        mid, up, _low = ind.BOLLINGER.compute(s, period=n, mult=1.0)
        ref = np.array([np.std(s.close[i - n + 1 : i + 1]) for i in range(n - 1, len(s))])
        np.testing.assert_allclose((up - mid)[n - 1 :], ref, rtol=1e-8)
        assert np.isnan(up[: n - 1]).all()
        assert_indicator_consistent(ind.BOLLINGER, s, period=n)


# -- hand-computed values --------------------------------------------------------------------------
ONE_TO_TEN = [float(v) for v in range(1, 11)]


def test_known_sma_and_ema_of_one_to_ten() -> None:
    s = series_from_closes(ONE_TO_TEN)
    sma = ind.SMA.compute(s, period=3)[0]
    assert np.isnan(sma[:2]).all()
    assert sma[2:].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert ind.SMA.compute(s, period=10)[0][-1] == 5.5
    # EMA(3): alpha=0.5, seed SMA(1,2,3)=2 at index 2; on a straight line it stays one step behind.
    ema = ind.EMA.compute(s, period=3)[0]
    assert np.isnan(ema[:2]).all()
    assert ema[2:].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]


def test_known_rsi_values() -> None:
    # changes +1, -1, +2 with period 2: avg gain/loss 0.5/0.5 -> 50; then 1.25/0.25 -> rs 5 -> 83.33
    rsi = ind.RSI.compute(series_from_closes([10.0, 11.0, 10.0, 12.0]), period=2)[0]
    assert np.isnan(rsi[:2]).all()
    assert rsi[2] == pytest.approx(50.0)
    assert rsi[3] == pytest.approx(100 - 100 / 6)
    assert ind.RSI.compute(series_from_closes(ONE_TO_TEN), period=3)[0][-1] == 100.0
    assert ind.RSI.compute(series_from_closes(ONE_TO_TEN[::-1]), period=3)[0][-1] == 0.0


def test_known_atr_values() -> None:
    s = series_from_closes([9.0, 11.0, 10.5], highs=[10.0, 12.0, 11.0], lows=[8.0, 9.0, 10.0])
    # TR = 2 (high-low), 3 (max(3, |12-9|, |9-9|)), 1 (max(1, |11-11|, |10-11|)); period 2
    atr = ind.ATR.compute(s, period=2)[0]
    assert np.isnan(atr[0])
    assert atr[1:].tolist() == [2.5, 1.75]


def test_known_macd_and_bollinger_values() -> None:
    s = series_from_closes([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    # On a line, EMA(2) lags by 0.5 and EMA(3) by 1, so the macd line is 0.5 from index 2 on.
    line, sig, hist = ind.MACD.compute(s, fast=2, slow=3, signal=2)
    assert np.isnan(line[:2]).all() and np.isnan(sig[:3]).all()
    assert line[2:] == pytest.approx([0.5] * 4)
    assert sig[3:] == pytest.approx([0.5] * 3)
    assert hist[3:] == pytest.approx([0.0] * 3, abs=1e-12)
    mid, up, low = ind.BOLLINGER.compute(series_from_closes([1.0, 2.0, 3.0, 4.0]), period=4, mult=2.0)
    assert mid[3] == 2.5
    assert up[3] == pytest.approx(2.5 + 2 * math.sqrt(1.25))
    assert low[3] == pytest.approx(2.5 - 2 * math.sqrt(1.25))


# -- registration and parameter errors ---------------------------------------------------------------
def test_registered_through_the_plugin_host() -> None:
    host = load_plugins(entry_points=False, extra=[("indicators", ind)])
    assert host.failures == []
    assert {"sma", "ema", "rsi", "atr", "macd", "bollinger"} <= set(host.registry.names("indicator"))
    spec = host.registry.indicator("macd")
    assert spec.outputs == ("macd", "signal", "hist")
    assert spec.bind((5, 13), {"output": "hist"}) == (
        (("fast", 5), ("slow", 13), ("signal", 9), ("source", "close")),
        2,
    )


def test_bad_parameters_are_refused_by_name() -> None:
    s = random_series(50, 1)
    with pytest.raises(ValidationError, match="period"):
        ind.SMA.compute(s, period=0)
    with pytest.raises(ValidationError, match="source"):
        ind.EMA.compute(s, period=3, source="vwap")
    with pytest.raises(ValidationError, match="source"):
        ind.RSI.incremental(period=3, source="vwap")
    with pytest.raises(ValidationError, match="mult"):
        ind.BOLLINGER.incremental(period=3, mult=-1.0)
    with pytest.raises(ValidationError, match="signal"):
        ind.MACD.compute(s, signal=2.5)


def test_consistency_helper_catches_a_disagreeing_indicator() -> None:
    class OffByOne:
        def __init__(self, period: int) -> None:
            self.inner = ind.SmaIncremental(period)

        def update(self, bar):  # type: ignore[no-untyped-def]
            (v,) = self.inner.update(bar)
            return (v * (1 + 1e-6),)

    bad = IndicatorSpec("bad", (("period", 3),), ind.sma_compute, OffByOne)
    with pytest.raises(AssertionError, match=r"bad\(period=3\) output 'value' differs at bar 2"):
        assert_indicator_consistent(bad, random_series(20, 1))

    class LateWarmUp(OffByOne):
        def update(self, bar):  # type: ignore[no-untyped-def]
            (v,) = self.inner.update(bar)
            return (v,) if bar.ts > 1_700_000_000_000 + 60_000 * 3 else (NAN,)

    late = IndicatorSpec("late", (("period", 3),), ind.sma_compute, LateWarmUp)
    with pytest.raises(AssertionError, match="warm-up differs at bar 2"):
        assert_indicator_consistent(late, random_series(20, 1))
