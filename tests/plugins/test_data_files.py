"""CSV and Parquet bar replay: real files in tmp_path, read by the real pyarrow readers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.model import Bar, to_ms
from stratkernel.core.plugins import load_plugins
from stratkernel.plugins import data_files
from stratkernel.plugins.data_files import load_series

T0 = 1_700_000_000_000
ROWS = [
    (T0, 100.0, 101.0, 99.5, 100.5, 10.0),
    (T0 + 60_000, 100.5, 102.0, 100.0, 101.5, 12.5),
    (T0 + 120_000, 101.5, 101.7, 100.2, 100.3, 0.0),
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def csv_text(rows=ROWS, header: str = "ts,open,high,low,close,volume", ts=None) -> str:
    lines = [header]
    for i, r in enumerate(rows):
        t = ts[i] if ts is not None else r[0]
        lines.append(",".join([str(t), *(repr(v) for v in r[1:])]))
    return "\n".join(lines) + "\n"


def assert_rows(series: BarSeries, rows=ROWS) -> None:
    assert len(series) == len(rows)
    assert series.ts.dtype == np.int64
    assert series.ts.tolist() == [r[0] for r in rows]
    for j, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        assert series.column(name).tolist() == [r[j] for r in rows], name


# -- reading CSV -------------------------------------------------------------------------------------
def test_csv_epoch_ms(tmp_path: Path) -> None:
    s = load_series(write(tmp_path / "BTCUSDT-1m.csv", csv_text()))
    assert s.symbol == "BTCUSDT-1m"
    assert_rows(s)
    assert load_series(tmp_path / "BTCUSDT-1m.csv", symbol="BTC/USDT").symbol == "BTC/USDT"


def test_csv_epoch_seconds_integer_and_fractional(tmp_path: Path) -> None:
    secs = [r[0] // 1000 for r in ROWS]
    assert_rows(load_series(write(tmp_path / "s.csv", csv_text(ts=secs))))
    frac = [f"{r[0] / 1000 + 0.25}" for r in ROWS]
    s = load_series(write(tmp_path / "f.csv", csv_text(ts=frac)))
    assert s.ts.tolist() == [r[0] + 250 for r in ROWS]


def test_csv_iso_timestamps_with_zones(tmp_path: Path) -> None:
    iso = ["2023-11-14T22:13:20Z", "2023-11-14T23:14:20+01:00", "2023-11-14T22:15:20.000+00:00"]
    s = load_series(write(tmp_path / "iso.csv", csv_text(ts=iso)))
    assert s.ts.tolist() == [r[0] for r in ROWS]
    assert s.ts[0] == to_ms("2023-11-14T22:13:20Z")


def test_csv_mixed_iso_spellings_take_the_per_value_path(tmp_path: Path) -> None:
    # pyarrow does not infer a type for a column mixing spellings; each value is still parsed correctly
    iso = ["2023-11-14T22:13:20Z", "1700000060", "2023-11-14 22:15:20+00:00"]
    s = load_series(write(tmp_path / "mixed.csv", csv_text(ts=iso)))
    assert s.ts.tolist() == [r[0] for r in ROWS]


def test_csv_aliases_case_insensitive_extra_columns_and_no_volume(tmp_path: Path) -> None:
    text = "Date,Symbol,O,H,L,C\n" + "".join(f"{r[0]},X,{r[1]},{r[2]},{r[3]},{r[4]}\n" for r in ROWS)
    s = load_series(write(tmp_path / "a.csv", text))
    assert s.close.tolist() == [r[4] for r in ROWS]
    assert s.volume.tolist() == [0.0, 0.0, 0.0]
    text = "TIMESTAMP,Open,HIGH,low,Close,Vol\n" + "".join(",".join(map(str, r)) + "\n" for r in ROWS)
    assert_rows(load_series(write(tmp_path / "b.csv", text)))


def test_csv_gz_and_semicolon_delimiter(tmp_path: Path) -> None:
    gz = tmp_path / "z.csv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(csv_text())
    s = load_series(gz)
    assert s.symbol == "z"
    assert_rows(s)
    semi = csv_text().replace(",", ";")
    assert_rows(load_series(write(tmp_path / "semi.csv", semi)))


def test_naive_and_date_only_timestamps_are_refused(tmp_path: Path) -> None:
    naive = ["2023-11-14T22:13:20", "2023-11-14T22:14:20", "2023-11-14T22:15:20"]
    with pytest.raises(ValidationError, match=r"naive\.csv line 2, column 'ts'.*time zone"):
        load_series(write(tmp_path / "naive.csv", csv_text(ts=naive)))
    dates = ["2023-11-14", "2023-11-15", "2023-11-16"]
    with pytest.raises(ValidationError, match=r"dates\.csv line 2.*date without a time"):
        load_series(write(tmp_path / "dates.csv", csv_text(ts=dates)))
    # one naive value among aware ones is found on its own line
    mixed = ["2023-11-14T22:13:20Z", "2023-11-14T22:14:20Z", "2023-11-14T22:15:20"]
    with pytest.raises(ValidationError, match=r"line 4, column 'ts'.*naive"):
        load_series(write(tmp_path / "m.csv", csv_text(ts=mixed)))


def test_missing_file_unknown_type_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_series(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="unknown file type"):
        load_series(write(tmp_path / "bars.txt", csv_text()))
    text = "ts,open,high,low,volume\n1,2,3,1,5\n"
    with pytest.raises(ValidationError, match=r"missing column 'close' \(accepted names: close, c\)") as e:
        load_series(write(tmp_path / "nc.csv", text))
    assert "nc.csv" in str(e.value)
    text = "time,timestamp,open,high,low,close\n"
    with pytest.raises(ValidationError, match="several columns mean 'ts'"):
        load_series(write(tmp_path / "dup.csv", text))


def test_non_numeric_and_empty_cells_are_named(tmp_path: Path) -> None:
    text = csv_text().replace("101.5,101.7", "101.5,abc")
    with pytest.raises(ValidationError, match=r"bad\.csv line 4, column 'high'='abc': not a number"):
        load_series(write(tmp_path / "bad.csv", text))
    text = csv_text().replace(",102.0,", ",,")
    with pytest.raises(ValidationError, match=r"line 3, column 'high'.*missing value"):
        load_series(write(tmp_path / "empty.csv", text))
    text = csv_text().replace(f"{T0 + 60_000},", "soon,")
    with pytest.raises(ValidationError, match=r"line 3, column 'ts'='soon'"):
        load_series(write(tmp_path / "ts.csv", text))


def test_bad_cell_far_into_a_large_file_is_named(tmp_path: Path) -> None:
    # far beyond pyarrow's first block, where types were inferred
    n = 60_000
    lines = ["timestamp,o,h,l,c,v"] + [f"{T0 + 60_000 * i},1.0,2.0,0.5,1.5,3" for i in range(n)]
    lines[50_001] = lines[50_001].replace(",1.5,", ",1.5x,")
    with pytest.raises(ValidationError, match=r"line 50002, column 'c' \(close\)='1.5x': not a number"):
        load_series(write(tmp_path / "big.csv", "\n".join(lines) + "\n"))


def test_invalid_bars_name_the_line_and_column(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[2][3] = 101.8  # low above high
    with pytest.raises(ValidationError, match=r"hl\.csv line 4, column 'high'.*high is below low"):
        load_series(write(tmp_path / "hl.csv", csv_text(rows=rows)))
    rows = [list(r) for r in ROWS]
    rows[2][0] = rows[1][0]
    with pytest.raises(ValidationError, match=r"line 4, column 'ts'.*strictly increase"):
        load_series(write(tmp_path / "dupts.csv", csv_text(rows=rows)))
    rows = [list(r) for r in ROWS]
    rows[0][4] = -1.0
    rows[0][3] = -2.0
    with pytest.raises(ValidationError, match=r"line 2, column 'low'.*positive"):
        load_series(write(tmp_path / "neg.csv", csv_text(rows=rows)))


def test_structural_problems(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no header row"):
        load_series(write(tmp_path / "nohdr.csv", "1700000000000,1,2,0.5,1.5,3\n"))
    with pytest.raises(ValidationError, match="header row is required"):
        load_series(write(tmp_path / "empty.csv", ""))
    with pytest.raises(ValidationError, match="no bars"):
        load_series(write(tmp_path / "hdr.csv", "ts,open,high,low,close,volume\n"))
    with pytest.raises(ValidationError, match="cannot parse CSV"):
        load_series(write(tmp_path / "short.csv", csv_text() + f"{T0 + 180_000},1,2\n"))
    secs_then_ms = [ROWS[0][0] // 1000, ROWS[1][0], ROWS[2][0]]
    with pytest.raises(ValidationError, match=r"line 3, column 'ts'.*epoch unit differs"):
        load_series(write(tmp_path / "units.csv", csv_text(ts=secs_then_ms)))
    micros = [r[0] * 1000 for r in ROWS]
    with pytest.raises(ValidationError, match=r"line 2, column 'ts'.*microseconds or nanoseconds"):
        load_series(write(tmp_path / "us.csv", csv_text(ts=micros)))


# -- reading Parquet ---------------------------------------------------------------------------------
def parquet(path: Path, ts: pa.Array, **cols: list) -> Path:
    base = {
        "open": [r[1] for r in ROWS],
        "high": [r[2] for r in ROWS],
        "low": [r[3] for r in ROWS],
        "close": [r[4] for r in ROWS],
        "volume": [r[5] for r in ROWS],
    }
    base.update(cols)
    pq.write_table(pa.table({"ts": ts, **base}), path)
    return path


def test_parquet_int_ms_and_aware_timestamps(tmp_path: Path) -> None:
    assert_rows(load_series(parquet(tmp_path / "p.parquet", pa.array([r[0] for r in ROWS], pa.int64()))))
    aware = pa.array([r[0] * 1000 for r in ROWS], pa.timestamp("us", tz="Europe/Berlin"))
    s = load_series(parquet(tmp_path / "aware.parquet", aware))
    assert s.symbol == "aware"
    assert_rows(s)


def test_parquet_errors(tmp_path: Path) -> None:
    naive = pa.array([r[0] for r in ROWS], pa.timestamp("ms"))
    with pytest.raises(ValidationError, match=r"naive\.parquet row 0, column 'ts'.*time zone"):
        load_series(parquet(tmp_path / "naive.parquet", naive))
    bad = parquet(tmp_path / "bad.parquet", pa.array([r[0] for r in ROWS]), close=["100.5", "x", "1"])
    with pytest.raises(ValidationError, match=r"bad\.parquet row 1, column 'close'='x': not a number"):
        load_series(bad)
    nan = parquet(tmp_path / "nan.parquet", pa.array([r[0] for r in ROWS]), high=[101.0, float("nan"), 101.7])
    with pytest.raises(ValidationError, match=r"row 1, column 'high'.*finite"):
        load_series(nan)
    with pytest.raises(ValidationError, match="not a readable Parquet file"):
        load_series(write(tmp_path / "text.parquet", "ts,open\n"))


def test_csv_and_parquet_agree_on_a_large_file(tmp_path: Path) -> None:
    n = 50_000
    rng = np.random.default_rng(3)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate(([50.0], close[:-1]))
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    ts = T0 + 1000 * np.arange(n, dtype=np.int64)
    vol = rng.uniform(0, 5, n)
    table = pa.table({"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": vol})
    pq.write_table(table, tmp_path / "x.parquet")
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, tmp_path / "x.csv")
    a, b = load_series(tmp_path / "x.parquet"), load_series(tmp_path / "x.csv")
    for name in ("ts", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.close.tolist() == close.tolist()


# -- the plugin: registration, factory options, history, stream, URI resolution ----------------------
@pytest.fixture
def host():
    h = load_plugins(entry_points=False, extra=[("data_files", data_files)])
    assert h.failures == []
    return h


async def test_csv_source_history_and_stream(host, tmp_path: Path) -> None:
    path = write(tmp_path / "eth.csv", csv_text())
    factory = host.registry.get("data_source", "csv").obj
    src = factory({"path": str(path), "symbol": "ETH/USDT"})
    assert src.symbols == ["ETH/USDT"] and src.synthetic is False
    full = await src.history("ETH/USDT")
    assert_rows(full)
    part = await src.history("ETH/USDT", T0 + 60_000, None)
    assert part.ts.tolist() == [T0 + 60_000, T0 + 120_000]
    with pytest.raises(ValidationError, match="holds only 'ETH/USDT'"):
        await src.history("BTC/USDT")
    bars = [b async for b in src.stream()]
    assert bars == [Bar(*r, "ETH/USDT") for r in ROWS]


async def test_start_end_options_bound_history_and_stream(host, tmp_path: Path) -> None:
    path = write(tmp_path / "eth.csv", csv_text())
    factory = host.registry.get("data_source", "csv").obj
    src = factory({"path": str(path), "start": T0 + 1, "end": "2023-11-14T22:15:20Z"})
    assert (await src.history("eth")).ts.tolist() == [T0 + 60_000, T0 + 120_000]
    assert [b.ts async for b in src.stream()] == [T0 + 60_000, T0 + 120_000]


async def test_parquet_source(host, tmp_path: Path) -> None:
    path = parquet(tmp_path / "p.parquet", pa.array([r[0] for r in ROWS], pa.int64()))
    src = host.registry.get("data_source", "parquet").obj({"path": str(path)})
    assert_rows(await src.history("p"))


def test_factory_option_errors(host, tmp_path: Path) -> None:
    csv_factory = host.registry.get("data_source", "csv").obj
    with pytest.raises(ConfigError, match=r"data.options.path.*needs path"):
        csv_factory({})
    with pytest.raises(ConfigError, match=r"data.options.path.*no such file"):
        csv_factory({"path": str(tmp_path / "missing.csv")})
    path = write(tmp_path / "eth.csv", csv_text())
    with pytest.raises(ConfigError, match=r"data.options.speed.*unknown option"):
        csv_factory({"path": str(path), "speed": 2})
    with pytest.raises(ConfigError, match=r"data.options.path.*not a parquet file"):
        host.registry.get("data_source", "parquet").obj({"path": str(path)})
    with pytest.raises(ConfigError, match=r"data.options.start.*naive"):
        csv_factory({"path": str(path), "start": "2024-01-01T00:00:00"})
    with pytest.raises(ConfigError, match=r"data.options.end.*before start"):
        csv_factory({"path": str(path), "start": T0 + 1000, "end": T0})


def test_resolve_data_source(host) -> None:
    resolve = host.hook.resolve_data_source
    assert resolve(uri="data/BTC.csv") == ("csv", {"path": "data/BTC.csv"})
    assert resolve(uri="data/BTC.CSV.GZ") == ("csv", {"path": "data/BTC.CSV.GZ"})
    assert resolve(uri="/x/y.parquet") == ("parquet", {"path": "/x/y.parquet"})
    assert resolve(uri="ccxt:binance:BTC/USDT:1m") is None
    assert resolve(uri="bars.txt") is None


# -- the benchmark data generator (bench/datagen.py) writes files this plugin reads -----------------
REPO = Path(__file__).resolve().parents[2]


def test_datagen_round_trip_and_ensure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # bench/ is a top-level folder, not part of the package
    from bench.datagen import ensure_dataset, write_dataset
    from stratkernel.plugins.synthetic import WalkParams, generate_bars

    out = write_dataset(2000, tmp_path / "d" / "bars.csv", seed=4)
    assert out.read_text().splitlines()[0] == "ts,open,high,low,close,volume"
    s = load_series(out)
    ref = generate_bars(2000, params=WalkParams(seed=4))
    assert np.array_equal(s.ts, ref.ts)
    assert np.array_equal(s.close, np.round(ref.close, 4))
    assert np.array_equal(s.volume, ref.volume)
    pq_out = write_dataset(2000, tmp_path / "bars.parquet", seed=4)
    assert np.array_equal(load_series(pq_out).high, s.high)

    before = out.read_bytes()
    stamp = out.stat().st_mtime_ns
    assert ensure_dataset(2000, out, seed=4) == out
    assert out.stat().st_mtime_ns == stamp  # same arguments: not rewritten
    ensure_dataset(2000, out, seed=5)  # other arguments: regenerated
    assert out.read_bytes() != before
    ensure_dataset(2000, out, seed=4)
    assert out.read_bytes() == before  # reproducible byte for byte
    (tmp_path / "new.csv").unlink(missing_ok=True)
    assert len(load_series(ensure_dataset(10, tmp_path / "new.csv"))) == 10
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        write_dataset(10, tmp_path / "x.txt")


def test_datagen_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "cli.csv"
    run = subprocess.run(
        [sys.executable, "-m", "bench.datagen", "--bars", "500", "--out", str(out), "--seed", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "wrote 500 bars" in run.stderr
    assert len(load_series(out)) == 500
    bad = subprocess.run(
        [sys.executable, "-m", "bench.datagen", "--bars", "0", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "--bars must be at least 1" in bad.stderr
