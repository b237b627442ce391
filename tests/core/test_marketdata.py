"""Market-data store: Parquet by symbol/day, de-duplication, partition pruning, ticks, retention, CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stratkernel.cli import main
from stratkernel.core.backtest import load_data
from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.marketdata import MS_PER_DAY, MarketStore, range_from_days
from stratkernel.core.model import Quote, to_ms
from stratkernel.core.plugins import load_plugins
from stratkernel.plugins.synthetic import generate_bars

DAY0 = to_ms("2024-03-01T00:00:00Z")


def hourly(symbol: str, days: int, start: int = DAY0, price: float = 100.0) -> BarSeries:
    n = days * 24
    ts = start + np.arange(n, dtype=np.int64) * 3_600_000
    close = price + np.arange(n, dtype=np.float64) * 0.01
    return BarSeries.from_arrays(symbol, ts, close, close + 1, close - 1, close, np.full(n, 5.0))


def test_write_read_roundtrip_partitioned_by_symbol_and_day(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    rep = store.write_bars(hourly("BTC/USDT", 3))
    assert (rep.rows, rep.added, rep.replaced) == (72, 72, 0)
    assert rep.days == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert store.day_file(
        "bars",
        "BTC/USDT",
        "2024-03-02",
    ).is_file()
    assert (tmp_path / "bars" / "symbol=BTC%2FUSDT" / "date=2024-03-02" / "part.parquet").is_file()
    assert store.symbols() == ["BTC/USDT"]
    back = store.read_bars("BTC/USDT")
    src = hourly("BTC/USDT", 3)
    assert back.symbol == "BTC/USDT"
    np.testing.assert_array_equal(back.ts, src.ts)
    np.testing.assert_array_equal(back.close, src.close)
    np.testing.assert_array_equal(back.volume, src.volume)


def test_range_read_is_inclusive_and_exact(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write_bars(hourly("X", 5))
    lo, hi = DAY0 + MS_PER_DAY + 5 * 3_600_000, DAY0 + 3 * MS_PER_DAY + 2 * 3_600_000
    got = store.read_bars("X", lo, hi)
    assert int(got.ts[0]) == lo and int(got.ts[-1]) == hi
    assert len(got) == (hi - lo) // 3_600_000 + 1


def test_range_read_opens_only_the_needed_day_files(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write_bars(hourly("X", 10))
    lo, hi = range_from_days("2024-03-04", "2024-03-05")
    files = store.files_for("bars", "X", lo, hi)
    assert [Path(f).parent.name for f in files] == ["date=2024-03-04", "date=2024-03-05"]
    # proof that the other partitions are never opened: make them unreadable garbage, the read still works
    for day in store.days("bars", "X"):
        if day not in ("2024-03-04", "2024-03-05"):
            store.day_file("bars", "X", day).write_bytes(b"not parquet at all")
    got = store.read_bars("X", lo, hi)
    assert len(got) == 48
    assert day_str(int(got.ts[0])) == "2024-03-04" and day_str(int(got.ts[-1])) == "2024-03-05"
    with pytest.raises(Exception):  # noqa: B017 - the full read has to touch a corrupted file
        store.read_bars("X")


def day_str(ts: int) -> str:
    from stratkernel.core.marketdata import day_of

    return day_of(ts)


def test_rewrite_deduplicates_by_ts_and_new_rows_replace_old(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write_bars(hourly("X", 2))
    overlap = hourly("X", 2, start=DAY0 + MS_PER_DAY, price=200.0)  # day 2 again (corrected) and day 3 new
    rep = store.write_bars(overlap)
    assert (rep.added, rep.replaced) == (24, 24)
    got = store.read_bars("X")
    assert len(got) == 72
    assert np.all(np.diff(got.ts) > 0)
    assert got.close[23] == pytest.approx(100.23)
    assert got.close[24] == pytest.approx(200.0)  # the re-written day holds the newer values


def test_symbols_are_kept_apart(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write_bars(hourly("A", 1, price=10.0))
    store.write_bars(hourly("B", 1, price=20.0))
    assert store.read_bars("A").close[0] == 10.0
    assert store.read_bars("B").close[0] == 20.0
    assert len(store.read_bars("C")) == 0


def test_bad_bars_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    good = hourly("X", 1)
    bad = BarSeries("X", good.ts, good.open, good.high, good.low.copy(), good.close, good.volume)
    bad.low[7] = bad.high[7] + 1  # high below low on row 7
    with pytest.raises(ValidationError, match=r"bar\[7\]\.high"):
        store.write_bars(bad)
    assert store.symbols() == []


def test_summary_counts_rows_days_bytes(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write_bars(hourly("X", 3))
    (s,) = store.summary("bars")
    assert (s.symbol, s.rows, s.days) == ("X", 72, 3)
    assert s.first_ts == DAY0 and s.last_ts == DAY0 + 71 * 3_600_000
    assert s.bytes == sum(store.day_file("bars", "X", d).stat().st_size for d in store.days("bars", "X"))


def test_ticks_validated_counted_and_read_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = MarketStore(tmp_path)
    quotes = [
        Quote(DAY0 + 1000, 99.0, 101.0, 100.0, "X", 1.0, 2.0),
        Quote(DAY0 + 2000, 101.0, 99.0, 100.0, "X"),  # crossed book: refused
        ("not", "a quote"),  # refused
        Quote(DAY0 + MS_PER_DAY + 5, 98.0, 99.0, 98.5, "X"),
        Quote(DAY0 + 3000, 99.5, 100.5, 100.0, "Y"),
    ]
    with caplog.at_level("WARNING", logger="stratkernel.marketdata"):
        rep = store.write_ticks(quotes)
    assert (rep.written, rep.refused) == (3, 2)
    assert "refused 2 tick(s)" in caplog.text
    assert rep.days["X"] == ["2024-03-01", "2024-03-02"]
    got = store.read_ticks("X")
    assert got == [quotes[0], quotes[3]]
    assert store.read_ticks("X", DAY0 + MS_PER_DAY, None) == [quotes[3]]
    assert store.read_ticks("Y") == [quotes[4]]


def test_prune_by_keep_days_and_before(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write_bars(hourly("X", 5))
    store.write_ticks([Quote(DAY0 + 10, 1.0, 2.0, 1.5, "X")])
    now = DAY0 + 4 * MS_PER_DAY + 123  # "today" is 2024-03-05
    dry = store.prune(keep_days=2, now_ms=now, dry_run=True)
    assert len(dry.removed) == 4 and store.days("bars", "X")[0] == "2024-03-01"
    rep = store.prune(keep_days=2, now_ms=now)
    assert sorted(rep.removed) == [
        ("bars", "X", "2024-03-01"),
        ("bars", "X", "2024-03-02"),
        ("bars", "X", "2024-03-03"),
        ("ticks", "X", "2024-03-01"),
    ]
    assert rep.bytes_freed > 0
    assert store.days("bars", "X") == ["2024-03-04", "2024-03-05"]
    assert store.symbols("ticks") == []
    store.prune(before=date(2024, 3, 5))
    assert store.days("bars", "X") == ["2024-03-05"]
    with pytest.raises(ConfigError, match="keep_days"):
        store.prune()
    assert MarketStore(tmp_path, retention_days=1).prune(now_ms=now + MS_PER_DAY).removed == [
        ("bars", "X", "2024-03-05")
    ]


def test_store_data_source_through_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATKERNEL_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    MarketStore(tmp_path / "market").write_bars(hourly("BTC/USDT", 4))
    host = load_plugins()
    series = load_data("store:BTC/USDT:2024-03-02:2024-03-03", host)
    assert series.symbol == "BTC/USDT" and len(series) == 48
    assert len(load_data("store:BTC/USDT", host)) == 96
    with pytest.raises(ValidationError, match="no stored bars"):
        load_data("store:ETH/USDT", host)
    with pytest.raises(ConfigError, match="store:SYMBOL"):
        load_data("store:BTC/USDT:2024-03-02", host)
    with pytest.raises(ConfigError, match=r"data\.options\.end"):
        load_data("store:BTC/USDT:2024-03-03:2024-03-02", host)


def test_cli_download_list_prune_and_backtest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATKERNEL_DATA_DIR", str(tmp_path / "dd"))
    runner = CliRunner()
    uri = "synthetic:bars=4320,interval_ms=60000,start=2024-01-01T00:00:00Z"
    r = runner.invoke(main, ["data", "download", uri, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["symbols"] == [{"symbol": "SYNTH-USD", "rows": 4320, "added": 4320, "replaced": 0, "days": 3}]
    # again, a range only: everything is already there
    r = runner.invoke(
        main, ["data", "download", uri, "--start", "2024-01-02", "--end", "2024-01-02", "--json"]
    )
    assert json.loads(r.output)["symbols"][0] == {
        "symbol": "SYNTH-USD",
        "rows": 1440,
        "added": 0,
        "replaced": 1440,
        "days": 1,
    }
    r = runner.invoke(main, ["data", "list", "--json"])
    (row,) = json.loads(r.output)["symbols"]
    assert (row["symbol"], row["rows"], row["days"]) == ("SYNTH-USD", 4320, 3) and row["bytes"] > 0
    assert row["first"].startswith("2024-01-01T00:00") and row["last"].startswith("2024-01-03T23:59")
    assert "SYNTH-USD" in runner.invoke(main, ["data", "list"]).output
    # the bars equal what the source produced
    stored = MarketStore(tmp_path / "dd" / "market").read_bars("SYNTH-USD")
    np.testing.assert_array_equal(
        stored.close, generate_bars(4320, symbol="SYNTH-USD", start_ms=to_ms("2024-01-01T00:00:00Z")).close
    )
    r = runner.invoke(
        main, ["backtest", "sma_cross", "--data", "store:SYNTH-USD:2024-01-02:2024-01-02", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["bars"] == 1440
    r = runner.invoke(main, ["data", "prune", "--before", "2024-01-03", "--json"])
    assert [x["date"] for x in json.loads(r.output)["removed"]] == ["2024-01-01", "2024-01-02"]
    r = runner.invoke(main, ["data", "list", "--json"])
    assert json.loads(r.output)["symbols"][0]["rows"] == 1440


def test_cli_errors_name_the_problem(tmp_path: Path) -> None:
    runner = CliRunner()
    root = str(tmp_path / "m")
    r = runner.invoke(main, ["data", "download", "nonsense://x", "--root", root])
    assert r.exit_code == 1 and "no data-source plugin recognises 'nonsense://x'" in r.output
    r = runner.invoke(main, ["data", "download", "synthetic", "--start", "2024-13-01", "--root", root])
    assert r.exit_code == 1 and "start" in r.output and "YYYY-MM-DD" in r.output
    r = runner.invoke(main, ["data", "download", "synthetic", "--start", "2024-02-01", "--end", "2024-01-01",
                             "--root", root])  # fmt: skip
    assert r.exit_code == 1 and "end" in r.output and "before start" in r.output
    r = runner.invoke(main, ["data", "prune", "--root", root])
    assert r.exit_code == 1 and "--keep-days" in r.output
    r = runner.invoke(main, ["data", "prune", "--before", "yesterday", "--root", root])
    assert r.exit_code == 1 and "--before" in r.output
    r = runner.invoke(main, ["data", "list", "--root", root])
    assert r.exit_code == 0 and "no market data" in r.output
    assert not Path(root).exists() or MarketStore(root).symbols() == []


async def test_record_stream_stores_bars_and_ticks_and_counts_refusals(tmp_path: Path) -> None:
    from collections.abc import AsyncIterator

    from stratkernel.core.marketdata import record_stream
    from stratkernel.core.model import Bar

    async def feed() -> AsyncIterator[object]:
        yield Bar(DAY0, 10.0, 11.0, 9.0, 10.5, 3.0, "X")
        yield Quote(DAY0 + 59_999, 10.4, 10.6, 10.5, "X")
        yield Bar(DAY0, 10.0, 11.0, 9.0, 10.5, 3.0, "X")  # out of order (same ts again): refused
        yield Bar(DAY0 + 60_000, 10.5, 10.0, 9.0, 10.0, 1.0, "X")  # high below low: refused
        yield Quote(DAY0 + 60_001, 11.0, 10.0, 10.5, "X")  # crossed: refused
        yield Bar(DAY0 + MS_PER_DAY, 10.5, 12.0, 10.0, 11.0, 2.0, "X")
        yield Bar(DAY0 + 5, 1.0, 1.0, 1.0, 1.0, 0.0, "Y")

    store = MarketStore(tmp_path)
    rep = await record_stream(feed(), store, flush_every=2)
    assert (rep.bars, rep.ticks, rep.refused) == (3, 1, 3)
    assert list(store.read_bars("X").ts) == [DAY0, DAY0 + MS_PER_DAY]
    assert store.read_ticks("X") == [Quote(DAY0 + 59_999, 10.4, 10.6, 10.5, "X")]
    assert len(store.read_bars("Y")) == 1


async def test_record_stream_from_the_synthetic_source_stops_at_max_items(tmp_path: Path) -> None:
    from stratkernel.core.marketdata import record_stream
    from stratkernel.plugins.synthetic import make_source

    source = make_source({"speed": 0.0, "symbols": ["SYNTH-A", "SYNTH-B"]})
    store = MarketStore(tmp_path)
    rep = await record_stream(source.stream(), store, max_items=40)  # 10 bars x (bar + quote) x 2 symbols
    assert (rep.bars, rep.ticks, rep.refused) == (20, 20, 0)
    assert [s.rows for s in store.summary()] == [10, 10, 10, 10]
    a = store.read_bars("SYNTH-A")
    np.testing.assert_array_equal(np.diff(a.ts), np.full(9, 60_000))


def test_cli_record(tmp_path: Path) -> None:
    runner = CliRunner()
    root = str(tmp_path / "m")
    r = runner.invoke(
        main, ["data", "record", "synthetic:speed=0", "--items", "10", "--root", root, "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1]) == {
        "bars": 5,
        "ticks": 5,
        "refused": 0,
        "last_error": None,
    }
    assert MarketStore(root).symbols("ticks") == ["SYNTH-USD"]
