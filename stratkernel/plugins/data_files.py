"""Bar replay from CSV and Parquet files: data sources ``csv`` and ``parquet``.

Use from a config::

    [data]
    source = "csv"
    options = { path = "bars/BTCUSDT-1m.csv", symbol = "BTC/USDT", start = "2024-01-01T00:00:00Z" }

or on the command line (``stratkernel backtest S --data bars.csv``), which goes through the
:func:`resolve_data_source` hook below. From Python, :func:`load_series` reads a file into a validated
:class:`~stratkernel.core.data.BarSeries`.

File format
-----------
* A header row is required. Columns are matched case-insensitively, with aliases:
  ``ts`` (``timestamp``, ``time``, ``date``, ``datetime``, ``open_time``), ``open`` (``o``),
  ``high`` (``h``), ``low`` (``l``), ``close`` (``c``), ``volume`` (``v``, ``vol``). Other columns are
  ignored. ``volume`` may be absent (then 0); the others are required.
* ``ts`` is the bar's open time: epoch milliseconds, epoch seconds (all values below 1e11, fractions
  allowed), or ISO-8601 *with* a zone (``2024-01-01T00:00:00Z``, ``...+02:00``). Naive times and bare
  dates are refused: the file does not say which zone they are in. Epoch values of 1e14 and more
  (microseconds, nanoseconds) are refused rather than misread.
* Timestamps must strictly increase. Nothing is sorted, dropped or filled silently: the first bad
  cell is reported with the file, line (CSV; the header is line 1) or row (Parquet, from 0), column
  and value, as a :class:`~stratkernel.core.errors.ValidationError`.
* ``.csv.gz`` is read transparently. The delimiter is ``,`` unless the header has none and has ``;``
  or a tab.

CSV is parsed by pyarrow's multithreaded reader (about 0.3 s per million rows here), Parquet by
pyarrow.parquet.
"""

from __future__ import annotations

import asyncio
import csv
import math
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.hookspecs import hookimpl
from stratkernel.core.model import Bar, to_ms

__all__ = [
    "ALIASES",
    "FileDataSource",
    "load_series",
    "register_data_sources",
    "resolve_data_source",
]

ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "timestamp", "time", "date", "datetime", "open_time"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "v", "vol"),
}
REQUIRED = ("ts", "open", "high", "low", "close")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
SECONDS_LIMIT = 1e11  # below: epoch seconds; the same heuristic as stratkernel.core.model.to_ms
MS_LIMIT = 1e14  # from here on epoch ms would be after the year 5138: a µs or ns column, refused
_BAR_FIELD = re.compile(r"^bar\[(\d+)\]\.(\w+)$")


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return None


class _Where:
    """Names a cell in error messages: 'bars.csv line 7, column close' / 'bars.parquet row 5, ...'."""

    def __init__(self, path: Path, fmt: str, actual: dict[str, str]) -> None:
        self.path = path
        self.fmt = fmt
        self.actual = actual

    def cell(self, row: int, column: str) -> str:
        pos = f"line {row + 2}" if self.fmt == "csv" else f"row {row}"
        name = self.actual.get(column, column)
        shown = repr(name) if name == column else f"{name!r} ({column})"
        return f"{self.path} {pos}, column {shown}"


# -- reading -----------------------------------------------------------------------------------------
def load_series(path: str | Path, symbol: str | None = None) -> BarSeries:
    """Read a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) file into a validated
    BarSeries. ``symbol`` defaults to the file name without its extension.

    Raises ConfigError if the file is missing or of an unknown type, ValidationError naming file,
    line/row, column and value for anything wrong inside it.
    """
    p = Path(path)
    fmt = _format_of(p)
    if fmt is None:
        raise ConfigError("path", f"{p}: unknown file type; use .csv, .csv.gz, .parquet or .pq")
    if not p.is_file():
        raise ConfigError("path", f"{p}: no such file")
    sym = symbol if symbol is not None else _stem(p)
    table, where = _read_csv(p) if fmt == "csv" else _read_parquet(p)
    return _to_series(table, where, sym)


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


def _map_columns(names: list[str], path: Path, header_desc: str) -> dict[str, str]:
    """canonical name -> the file's column name."""
    found: dict[str, str] = {}
    lowered = {n: n.strip().lower() for n in names}
    for canon, aliases in ALIASES.items():
        hits = [n for n in names if lowered[n] in aliases]
        if len(hits) > 1:
            raise ValidationError(f"{path} {header_desc}", hits, f"several columns mean {canon!r}; keep one")
        if hits:
            found[canon] = hits[0]
    for canon in REQUIRED:
        if canon not in found:
            raise ValidationError(
                f"{path} {header_desc}",
                names,
                f"missing column {canon!r} (accepted names: {', '.join(ALIASES[canon])})",
            )
    return found


def _read_header(path: Path) -> tuple[list[str], str]:
    with pa.input_stream(str(path), compression="detect") as f:
        head = f.read(65536)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        # a cut in the middle of a multi-byte character at the end of the chunk is fine
        text = head.decode("utf-8-sig", errors="ignore")
    first = text.split("\n", 1)[0].rstrip("\r")
    if not first.strip():
        raise ValidationError(
            f"{path} line 1", first, "empty file or empty first line; a header row is required"
        )
    delimiter = ","
    if "," not in first:
        if ";" in first:
            delimiter = ";"
        elif "\t" in first:
            delimiter = "\t"
    names = next(csv.reader([first], delimiter=delimiter))
    if all(_is_number(n) for n in names):
        raise ValidationError(
            f"{path} line 1",
            first,
            "no header row (the first line is data); add one such as ts,open,high,low,close,volume",
        )
    return names, delimiter


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[pa.Table, _Where]:
    names, delimiter = _read_header(path)
    actual = _map_columns(names, path, "header (line 1)")
    where = _Where(path, "csv", actual)
    include = list(actual.values())
    typed = {actual[c]: pa.float64() for c in PRICE_COLUMNS if c in actual}
    parse = pacsv.ParseOptions(delimiter=delimiter)
    try:
        table = pacsv.read_csv(
            path,
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(include_columns=include, column_types=typed),
        )
    except pa.ArrowInvalid:
        # A cell that is not a number (or a type inferred from the first block that a later block
        # breaks): read every column as text and find the first bad cell ourselves, to name it.
        try:
            table = pacsv.read_csv(
                path,
                parse_options=parse,
                convert_options=pacsv.ConvertOptions(
                    include_columns=include,
                    column_types={n: pa.string() for n in include},
                    strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc2:  # structural: wrong number of fields on a line, bad quoting
            raise ValidationError(str(path), "<file>", f"cannot parse CSV: {exc2}") from None
        for canon in PRICE_COLUMNS:
            if canon in actual:
                _first_bad_number(table.column(actual[canon]), where, canon)
        # all numbers were fine: it was the ts column's inferred type; the text path names the cell
    return table.rename_columns([_canonical(n, actual) for n in table.column_names]), where


def _canonical(name: str, actual: dict[str, str]) -> str:
    return next(c for c, a in actual.items() if a == name)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _first_bad_number(col: pa.ChunkedArray, where: _Where, canon: str) -> None:
    for i, v in enumerate(col.to_pylist()):
        if v is None:
            raise ValidationError(where.cell(i, canon), v, "missing value")
        try:
            float(v)
        except (TypeError, ValueError):
            raise ValidationError(where.cell(i, canon), v, "not a number") from None


def _read_parquet(path: Path) -> tuple[pa.Table, _Where]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(str(path), "<file>", f"not a readable Parquet file: {exc}") from None
    actual = _map_columns(list(schema.names), path, "schema")
    where = _Where(path, "parquet", actual)
    table = pq.read_table(path, columns=list(actual.values()))
    table = table.rename_columns([_canonical(n, actual) for n in table.column_names])
    for canon in PRICE_COLUMNS:
        if canon not in actual:
            continue
        col = table.column(canon)
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type):
            continue
        if _is_text(col.type):
            _first_bad_number(col, where, canon)
            continue
        raise ValidationError(where.cell(0, canon), str(col.type), "column type is not numeric")
    return table, where


# -- converting --------------------------------------------------------------------------------------
def _to_series(table: pa.Table, where: _Where, symbol: str) -> BarSeries:
    n = table.num_rows
    if n == 0:
        raise ValidationError(str(where.path), 0, "contains no bars (only a header)")
    ts = _timestamps(table.column("ts"), where)
    cols: dict[str, np.ndarray] = {}
    for canon in PRICE_COLUMNS:
        if canon not in where.actual:
            continue
        col = table.column(canon)
        if col.null_count:
            i = int(np.argmax(pc.is_null(col).to_numpy(zero_copy_only=False)))
            raise ValidationError(where.cell(i, canon), None, "missing value (empty, NA or NaN)")
        try:
            cols[canon] = pc.cast(col, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            _first_bad_number(col, where, canon)
            raise
    try:
        return BarSeries.from_arrays(
            symbol, ts, cols["open"], cols["high"], cols["low"], cols["close"], cols.get("volume")
        )
    except ValidationError as exc:
        m = _BAR_FIELD.match(exc.field)
        if m is None:
            raise ValidationError(f"{where.path} {exc.field}", exc.value, exc.reason) from None
        row, field = int(m.group(1)), m.group(2)
        raise ValidationError(where.cell(row, field), exc.value, exc.reason) from None


def _timestamps(col: pa.ChunkedArray, where: _Where) -> np.ndarray:
    """The ts column as int64 epoch milliseconds (UTC)."""
    t = col.type
    if col.null_count:
        i = int(np.argmax(pc.is_null(col).to_numpy(zero_copy_only=False)))
        raise ValidationError(where.cell(i, "ts"), None, "missing timestamp")
    if pa.types.is_timestamp(t):
        if t.tz is None:
            raise ValidationError(
                where.cell(0, "ts"),
                str(col[0].as_py()),
                "timestamp without a time zone; write it with one (e.g. 2024-01-01T00:00:00Z or +00:00)",
            )
        # tz-aware Arrow timestamps are stored as UTC instants; only the unit changes
        ms = pc.cast(col, pa.timestamp("ms", tz=t.tz), safe=False)
        return np.asarray(pc.cast(ms, pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_date(t):
        raise ValidationError(
            where.cell(0, "ts"),
            str(col[0].as_py()),
            "a date without a time and time zone; write e.g. 2024-01-01T00:00:00Z, or epoch ms",
        )
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _epoch_to_ms(col.to_numpy().astype(np.float64, copy=False), col, where)
    if _is_text(t):
        return _text_to_ms(col, where)
    raise ValidationError(where.cell(0, "ts"), str(t), "timestamp column type not understood")


def _epoch_to_ms(v: np.ndarray, col: pa.ChunkedArray, where: _Where) -> np.ndarray:
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(where.cell(i, "ts"), col[i].as_py(), "timestamp must be finite and >= 0")
    seconds = v < SECONDS_LIMIT
    if seconds.any() and not seconds.all():
        # one file, one unit: a mix is almost certainly a broken export, not something to guess at
        i = int(np.argmax(seconds != seconds[0]))
        unit = "seconds" if seconds[0] else "milliseconds"
        raise ValidationError(
            where.cell(i, "ts"), col[i].as_py(), f"epoch unit differs from the first row ({unit})"
        )
    too_big = v >= MS_LIMIT
    if too_big.any():
        i = int(np.argmax(too_big))
        raise ValidationError(
            where.cell(i, "ts"),
            col[i].as_py(),
            "too large for epoch ms (microseconds or nanoseconds?); give s or ms",
        )
    if pa.types.is_integer(col.type):
        ints = np.asarray(col.to_numpy(), dtype=np.int64)
        return ints * 1000 if seconds[0] else ints
    return np.rint(v * 1000.0 if seconds[0] else v).astype(np.int64)


def _text_to_ms(col: pa.ChunkedArray, where: _Where) -> np.ndarray:
    """Slow path for text pyarrow did not recognise (mixed formats, stray text): per value, so the
    bad one can be named."""
    values = col.to_pylist()
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        s = v.strip()
        try:
            if _is_number(s):
                f = float(s)
                if not math.isfinite(f) or f < 0:
                    raise ValidationError("ts", v, "timestamp must be finite and >= 0")
                if f >= MS_LIMIT:
                    raise ValidationError("ts", v, "too large for epoch ms (microseconds or nanoseconds?)")
                out[i] = round(f * 1000) if f < SECONDS_LIMIT else round(f)
            else:
                out[i] = to_ms(s)
        except ValidationError as exc:
            raise ValidationError(where.cell(i, "ts"), v, exc.reason) from None
    return out


# -- the data source ---------------------------------------------------------------------------------
class FileDataSource:
    """Replays one file's bars. ``history`` serves backtests; ``stream`` replays the bars in order
    as fast as the consumer takes them (it yields to the event loop between bars, never sleeps)."""

    synthetic = False

    def __init__(
        self,
        name: str,
        path: Path,
        symbol: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.symbol = symbol
        self.symbols = [symbol]
        self.start_ms = start_ms
        self.end_ms = end_ms
        self._series: BarSeries | None = None

    def load(self) -> BarSeries:
        """The whole configured range, read once and cached."""
        if self._series is None:
            self._series = load_series(self.path, self.symbol).between(self.start_ms, self.end_ms)
        return self._series

    async def history(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> BarSeries:
        if symbol != self.symbol:
            raise ValidationError("symbol", symbol, f"{self.path} holds only {self.symbol!r}")
        # parsing a large file takes a moment: keep the event loop responsive meanwhile
        series = self._series if self._series is not None else await asyncio.to_thread(self.load)
        return series.between(start_ms, end_ms)

    async def stream(self) -> AsyncIterator[Bar]:
        series = self._series if self._series is not None else await asyncio.to_thread(self.load)
        for i in range(len(series)):
            yield series.bar(i)
            if i % 256 == 255:
                await asyncio.sleep(0)


_OPTIONS = ("path", "symbol", "start", "end")


def _factory(kind: str) -> Callable[[dict[str, Any]], FileDataSource]:
    def make(options: dict[str, Any]) -> FileDataSource:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"data.options.{unknown[0]}", f"unknown option for {kind}; known: {', '.join(_OPTIONS)}"
            )
        raw = options.get("path")
        if not isinstance(raw, str | Path) or not str(raw):
            raise ConfigError("data.options.path", f"{kind} needs path = the file to replay")
        path = Path(raw).expanduser()
        fmt = _format_of(path)
        if fmt != kind:
            raise ConfigError("data.options.path", f"{path}: not a {kind} file (expected {_SUFFIXES[kind]})")
        if not path.is_file():
            raise ConfigError("data.options.path", f"{path}: no such file")
        symbol = options.get("symbol") or _stem(path)
        if not isinstance(symbol, str):
            raise ConfigError("data.options.symbol", f"must be a string, got {symbol!r}")
        bounds: list[int | None] = []
        for key in ("start", "end"):
            value = options.get(key)
            try:
                bounds.append(None if value is None else to_ms(value, key))
            except ValidationError as exc:
                raise ConfigError(f"data.options.{key}", f"{value!r}: {exc.reason}") from None
        if bounds[0] is not None and bounds[1] is not None and bounds[1] < bounds[0]:
            raise ConfigError("data.options.end", "is before start")
        return FileDataSource(kind, path, symbol, bounds[0], bounds[1])

    return make


_SUFFIXES = {"csv": ".csv or .csv.gz", "parquet": ".parquet or .pq"}


@hookimpl
def register_data_sources(register: Callable[..., None]) -> None:
    register("csv", _factory("csv"), description="Replay OHLCV bars from a CSV file (.csv, .csv.gz)")
    register("parquet", _factory("parquet"), description="Replay OHLCV bars from a Parquet file")


@hookimpl
def resolve_data_source(uri: str) -> tuple[str, dict[str, Any]] | None:
    fmt = _format_of(Path(uri))
    return (fmt, {"path": uri}) if fmt is not None else None
