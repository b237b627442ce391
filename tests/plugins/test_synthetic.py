"""The synthetic random-walk source: deterministic, always-valid OHLC, labelled, paced stream."""

from __future__ import annotations

import numpy as np
import pytest

from stratkernel.core.data import BarValidator
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.model import Bar, Quote
from stratkernel.core.plugins import load_plugins
from stratkernel.plugins import data_files, synthetic
from stratkernel.plugins.synthetic import DEFAULT_START_MS, WalkParams, generate_bars, make_source


def assert_valid_ohlc(s) -> None:  # type: ignore[no-untyped-def]
    assert (s.low > 0).all()
    assert (s.low <= s.open).all() and (s.open <= s.high).all()
    assert (s.low <= s.close).all() and (s.close <= s.high).all()
    assert (s.volume >= 0).all()


def test_generate_is_deterministic_per_seed_and_symbol() -> None:
    a = generate_bars(3000, params=WalkParams(seed=5))
    b = generate_bars(3000, params=WalkParams(seed=5))
    c = generate_bars(3000, params=WalkParams(seed=6))
    d = generate_bars(3000, symbol="SYNTH-EUR", params=WalkParams(seed=5))
    assert np.array_equal(a.close, b.close) and np.array_equal(a.high, b.high)
    assert not np.array_equal(a.close, c.close)
    assert not np.array_equal(a.close, d.close)
    assert a.symbol == "SYNTH-USD" and d.symbol == "SYNTH-EUR"
    assert a.ts[0] == DEFAULT_START_MS
    assert np.all(np.diff(a.ts) == 60_000)


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    long, short = generate_bars(10_000), generate_bars(5000)
    for name in ("ts", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(long, name)[:5000], getattr(short, name)), name


def test_ohlc_is_valid_and_gapless_even_at_extreme_volatility() -> None:
    for vol in (0.0, 0.001, 0.5):
        s = generate_bars(20_000, params=WalkParams(vol=vol, drift=-0.001 if vol else 0.0))
        assert_valid_ohlc(s)
        assert np.array_equal(s.open[1:], s.close[:-1])
    flat = generate_bars(100, params=WalkParams(vol=0.0, start_price=42.0))
    assert flat.close == pytest.approx([42.0] * 100, rel=1e-12)
    assert np.allclose(flat.high, flat.low, rtol=1e-12, atol=0)


def test_returns_have_the_configured_drift_and_volatility() -> None:
    # a fixed seed, so this is deterministic; 2 log units of drift stay far from the reflecting bounds
    s = generate_bars(200_000, params=WalkParams(seed=1, vol=0.001, drift=0.00001))
    r = np.diff(np.log(s.close))
    assert r.std() == pytest.approx(0.001, rel=0.02)
    assert r.mean() == pytest.approx(0.00001 - 0.5 * 0.001**2, abs=2 * 0.001 / np.sqrt(len(r)))


def test_long_volatile_runs_are_reflected_inside_the_price_band() -> None:
    s = generate_bars(100_000, params=WalkParams(vol=0.2, drift=0.01, start_price=50.0))
    assert_valid_ohlc(s)
    assert s.close.max() <= 50.0 * 1e4 * (1 + 1e-9) and s.close.min() >= 50.0 / 1e4 * (1 - 1e-9)
    assert np.isfinite(s.high).all()


async def test_history_and_bounds() -> None:
    src = make_source({"bars": 500, "interval_ms": 1000, "seed": 3, "start": "2024-06-01T00:00:00Z"})
    assert src.synthetic is True and "SYNTHETIC" in src.description
    s = await src.history("SYNTH-USD")
    assert len(s) == 500 and s.ts[0] == 1_717_200_000_000
    part = await src.history("SYNTH-USD", int(s.ts[10]), int(s.ts[19]))
    assert part.ts.tolist() == s.ts[10:20].tolist()
    with pytest.raises(ValidationError, match="serves"):
        await src.history("BTC/USDT")


async def test_stream_yields_valid_bars_and_quotes_on_the_history_path() -> None:
    src = make_source({"speed": 0, "limit": 50, "interval_ms": 5000, "seed": 9, "spread_bps": 10.0})
    hist = await src.history("SYNTH-USD")
    items = [x async for x in src.stream()]
    assert len(items) == 100
    bars, quotes = items[0::2], items[1::2]
    assert all(type(b) is Bar for b in bars) and all(type(q) is Quote for q in quotes)
    check = BarValidator()
    for b, q in zip(bars, quotes, strict=True):
        check.bar(b)
        check.quote(q)
        assert b.ts < q.ts < b.ts + 5000
        assert q.bid < q.last == b.close < q.ask
        assert (q.ask - q.bid) / b.close == pytest.approx(10.0 / 10_000)
    assert [b.close for b in bars] == hist.close[:50].tolist()
    assert [b.high for b in bars] == hist.high[:50].tolist()
    assert all(b.ts % 5000 == 0 for b in bars)
    assert np.all(np.diff([b.ts for b in bars]) == 5000)


async def test_stream_past_a_chunk_boundary_and_several_symbols() -> None:
    src = make_source({"symbols": ["SYNTH-A", "SYNTH-B"], "speed": 0, "limit": 4100, "bars": 4100})
    closes: dict[str, list[float]] = {"SYNTH-A": [], "SYNTH-B": []}
    async for item in src.stream():
        if isinstance(item, Bar):
            closes[item.symbol].append(item.close)
    for sym, got in closes.items():
        assert got == (await src.history(sym)).close.tolist()


async def test_paced_stream_runs_with_the_default_config_options() -> None:
    # the kernel's default [data] options; pacing is real (a few ms per bar at this speed)
    src = make_source({"interval_ms": 1000, "speed": 500.0, "seed": 7, "limit": 3})
    items = [x async for x in src.stream()]
    assert [type(x) for x in items] == [Bar, Quote] * 3


def test_option_errors_name_the_option() -> None:
    cases = [
        ({"bar": 10}, "data.options.bar.*unknown option"),
        ({"bars": 0}, "data.options.bars.*integer"),
        ({"bars": 1.5}, "data.options.bars"),
        ({"vol": -0.1}, "data.options.vol"),
        ({"speed": -1}, "data.options.speed"),
        ({"speed": True}, "data.options.speed"),
        ({"symbol": "BTC/USDT"}, "data.options.symbol.*must contain 'SYNTH'"),
        ({"symbols": []}, "data.options.symbols"),
        ({"symbols": ["SYNTH-A", "SYNTH-A"]}, "duplicate"),
        ({"symbol": "SYNTH-A", "symbols": ["SYNTH-B"]}, "not both"),
        ({"start": "2024-01-01"}, "data.options.start"),
        ({"limit": -1}, "data.options.limit"),
    ]
    for options, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            make_source(options)


def test_registered_and_resolved_through_the_plugin_host() -> None:
    host = load_plugins(entry_points=False, extra=[("synthetic", synthetic), ("data_files", data_files)])
    assert host.failures == []
    reg = host.registry.get("data_source", "synthetic")
    assert reg.meta == {"synthetic": True} and "SYNTHETIC" in reg.description
    resolve = host.hook.resolve_data_source
    assert resolve(uri="synthetic") == ("synthetic", {})
    assert resolve(uri="synthetic:bars=500,seed=3,vol=0.002,symbol=SYNTH-X") == (
        "synthetic",
        {"bars": 500, "seed": 3, "vol": 0.002, "symbol": "SYNTH-X"},
    )
    assert resolve(uri="bars.csv") == ("csv", {"path": "bars.csv"})
    assert resolve(uri="synthetic.parquet") == ("parquet", {"path": "synthetic.parquet"})
    with pytest.raises(ConfigError, match="key=value"):
        resolve(uri="synthetic:oops")
