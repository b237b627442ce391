"""Market data storage for backtests: Parquet files partitioned by symbol and UTC day.

Layout under a root directory (default ``<data_dir>/market``)::

    <root>/bars/symbol=<SYMBOL>/date=YYYY-MM-DD/part.parquet     ts, open, high, low, close, volume
    <root>/ticks/symbol=<SYMBOL>/date=YYYY-MM-DD/part.parquet    ts, bid, ask, last, bid_size, ask_size

``SYMBOL`` is URI-encoded (``BTC/USDT`` -> ``BTC%2FUSDT``), which is how pyarrow's hive partitioning
decodes it. Reads go through ``pyarrow.dataset`` with a date filter on the partition key, so a range
read opens only the day files it needs (partition pruning); the schema is given up front, so no file is
opened just to infer it.

Writes are per day file and atomic (write a temporary file, then rename): a crash mid-write leaves the
previous day file intact. A write merges with what is stored and de-duplicates by ``ts`` within the
symbol: where a ``ts`` is stored already, the newly written row replaces it (a re-download corrects
data; it never doubles it). Bars are validated with :meth:`BarSeries.from_arrays` before anything is
written; ticks one at a time with :class:`BarValidator.quote`, and refused ticks are counted and logged.

Retention: :meth:`MarketStore.prune` deletes whole day partitions older than ``keep_days`` (relative to
now) or before a date.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote as _urlquote
from urllib.parse import unquote as _urlunquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .data import BarSeries, BarValidator
from .errors import ConfigError, ValidationError
from .model import Bar, Quote

__all__ = [
    "BAR_SCHEMA",
    "TICK_SCHEMA",
    "MarketStore",
    "PruneReport",
    "RecordReport",
    "SymbolSummary",
    "TickWriteReport",
    "WriteReport",
    "day_of",
    "parse_day",
    "record_stream",
]

log = logging.getLogger("stratkernel.marketdata")

MS_PER_DAY = 86_400_000
PART_FILE = "part.parquet"
KINDS = ("bars", "ticks")

BAR_SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
TICK_SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("last", pa.float64()),
        ("bid_size", pa.float64()),
        ("ask_size", pa.float64()),
    ]
)
_SCHEMAS = {"bars": BAR_SCHEMA, "ticks": TICK_SCHEMA}
_DATE_PARTITIONING = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")


def day_of(ts_ms: int) -> str:
    """The UTC day (``YYYY-MM-DD``) a millisecond timestamp falls in: the partition key."""
    return datetime.fromtimestamp(ts_ms // 1000, tz=UTC).date().isoformat()


def parse_day(text: str, field_name: str = "date") -> date:
    """``YYYY-MM-DD`` -> date, refused by name when it is not one."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValidationError(field_name, text, "expected a date as YYYY-MM-DD") from None


def _day_start_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def _check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not symbol or not symbol.isprintable() or len(symbol) > 128:
        raise ValidationError(
            "symbol", symbol, "must be a non-empty printable name of at most 128 characters"
        )
    return symbol


@dataclass(frozen=True)
class WriteReport:
    """What a bar write did: rows given, rows new to the store, rows that replaced a stored ``ts``."""

    symbol: str
    rows: int
    added: int
    replaced: int
    days: list[str]


@dataclass(frozen=True)
class TickWriteReport:
    written: int
    refused: int
    last_error: str | None
    days: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SymbolSummary:
    kind: str
    symbol: str
    first_ts: int
    last_ts: int
    rows: int
    bytes: int
    days: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "symbol": self.symbol,
            "first": datetime.fromtimestamp(self.first_ts / 1000, tz=UTC).isoformat(),
            "last": datetime.fromtimestamp(self.last_ts / 1000, tz=UTC).isoformat(),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "rows": self.rows,
            "bytes": self.bytes,
            "days": self.days,
        }


@dataclass(frozen=True)
class PruneReport:
    removed: list[tuple[str, str, str]]  # (kind, symbol, date)
    bytes_freed: int
    dry_run: bool


class MarketStore:
    """Bars and ticks on disk, partitioned by symbol and UTC day. Safe to point at an empty directory."""

    def __init__(self, root: str | Path, *, retention_days: int | None = None) -> None:
        self.root = Path(root).expanduser()
        if retention_days is not None and (type(retention_days) is not int or retention_days < 1):
            raise ConfigError("retention_days", f"must be a positive integer, got {retention_days!r}")
        self.retention_days = retention_days

    # -- paths ----------------------------------------------------------------------------------
    def symbol_dir(self, kind: str, symbol: str) -> Path:
        if kind not in KINDS:
            raise ValidationError("kind", kind, f"must be one of {KINDS}")
        return self.root / kind / f"symbol={_urlquote(_check_symbol(symbol), safe='')}"

    def day_file(self, kind: str, symbol: str, day: str) -> Path:
        return self.symbol_dir(kind, symbol) / f"date={day}" / PART_FILE

    def symbols(self, kind: str = "bars") -> list[str]:
        base = self.root / kind
        if not base.is_dir():
            return []
        return sorted(
            _urlunquote(p.name[len("symbol=") :])
            for p in base.iterdir()
            if p.is_dir() and p.name.startswith("symbol=")
        )

    def days(self, kind: str, symbol: str) -> list[str]:
        d = self.symbol_dir(kind, symbol)
        if not d.is_dir():
            return []
        return sorted(
            p.name[len("date=") :]
            for p in d.iterdir()
            if p.name.startswith("date=") and (p / PART_FILE).is_file()
        )

    # -- writing --------------------------------------------------------------------------------
    def _merge_write(self, kind: str, symbol: str, day: str, new: pa.Table) -> tuple[int, int]:
        """Merge ``new`` (sorted by ts, unique ts) into the day file; returns (added, replaced)."""
        path = self.day_file(kind, symbol, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        added = new.num_rows
        replaced = 0
        if path.is_file():
            old = pq.read_table(path, schema=_SCHEMAS[kind])
            keep = pc.invert(pc.is_in(old["ts"], value_set=new["ts"]))
            kept = old.filter(keep)
            replaced = old.num_rows - kept.num_rows
            added = new.num_rows - replaced
            merged = pa.concat_tables([kept, new])
            new = merged.take(pc.sort_indices(merged["ts"]))
        tmp = path.with_name(f".{PART_FILE}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(new, tmp, compression="zstd")
            os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one
        finally:
            if tmp.exists():
                tmp.unlink()
        return added, replaced

    def write_bars(self, series: BarSeries, *, progress: Callable[[int], None] | None = None) -> WriteReport:
        """Store a validated series (re-validated here: a hand-built BarSeries gets no free pass)."""
        symbol = _check_symbol(series.symbol)
        checked = BarSeries.from_arrays(symbol, series.ts, series.open, series.high, series.low, series.close,
                                        series.volume)  # fmt: skip
        if len(checked) == 0:
            return WriteReport(symbol, 0, 0, 0, [])
        table = pa.table(
            [pa.array(checked.ts), pa.array(checked.open), pa.array(checked.high), pa.array(checked.low),
             pa.array(checked.close), pa.array(checked.volume)],
            schema=BAR_SCHEMA,
        )  # fmt: skip
        day_idx = checked.ts // MS_PER_DAY
        # ts strictly increases, so each day is one contiguous run
        bounds = np.flatnonzero(np.diff(day_idx)) + 1
        starts = np.concatenate(([0], bounds))
        stops = np.concatenate((bounds, [len(checked)]))
        added = replaced = 0
        days: list[str] = []
        for lo, hi in zip(starts.tolist(), stops.tolist(), strict=True):
            day = day_of(int(checked.ts[lo]))
            a, r = self._merge_write("bars", symbol, day, table.slice(lo, hi - lo))
            added += a
            replaced += r
            days.append(day)
            if progress is not None:
                progress(hi - lo)
        return WriteReport(symbol, len(checked), added, replaced, days)

    def write_ticks(self, quotes: Iterable[Any], *, symbol: str | None = None) -> TickWriteReport:
        """Validate each quote (``BarValidator.quote``) and store the good ones; bad ones are counted,
        logged with the last reason, and skipped. ``symbol`` fills in quotes that carry none.
        Within one symbol, a later quote with the same ``ts`` replaces an earlier one."""
        validator = BarValidator()
        rows: dict[str, dict[int, Quote]] = {}
        for raw in quotes:
            try:
                q = validator.quote(raw)
            except ValidationError:
                continue
            sym = q.symbol or symbol
            if not sym:
                validator.refused += 1
                validator.last_error = ValidationError("symbol", "", "a stored quote needs a symbol")
                continue
            rows.setdefault(sym, {})[q.ts] = q
        if validator.refused:
            log.warning("refused %d tick(s); last: %s", validator.refused, validator.last_error)
        written = 0
        days: dict[str, list[str]] = {}
        for sym, by_ts in rows.items():
            _check_symbol(sym)
            ordered = [by_ts[t] for t in sorted(by_ts)]
            ts = np.fromiter((q.ts for q in ordered), dtype=np.int64, count=len(ordered))
            table = pa.table(
                [pa.array(ts), pa.array([q.bid for q in ordered], pa.float64()),
                 pa.array([q.ask for q in ordered], pa.float64()), pa.array([q.last for q in ordered], pa.float64()),
                 pa.array([q.bid_size for q in ordered], pa.float64()),
                 pa.array([q.ask_size for q in ordered], pa.float64())],
                schema=TICK_SCHEMA,
            )  # fmt: skip
            day_idx = ts // MS_PER_DAY
            bounds = np.flatnonzero(np.diff(day_idx)) + 1
            for lo, hi in zip(np.concatenate(([0], bounds)).tolist(), np.concatenate((bounds, [len(ts)])).tolist(),
                              strict=True):  # fmt: skip
                day = day_of(int(ts[lo]))
                self._merge_write("ticks", sym, day, table.slice(lo, hi - lo))
                days.setdefault(sym, []).append(day)
            written += len(ordered)
        err = str(validator.last_error) if validator.last_error is not None else None
        return TickWriteReport(written, validator.refused, err, days)

    # -- reading --------------------------------------------------------------------------------
    def _dataset(self, kind: str, symbol: str) -> ds.Dataset | None:
        base = self.symbol_dir(kind, symbol)
        if not base.is_dir():
            return None
        schema = _SCHEMAS[kind].append(pa.field("date", pa.string()))
        return ds.dataset(base, format="parquet", partitioning=_DATE_PARTITIONING, schema=schema,
                          exclude_invalid_files=False, ignore_prefixes=[".", "_"])  # fmt: skip

    @staticmethod
    def _filter(start_ms: int | None, end_ms: int | None) -> ds.Expression | None:
        expr: ds.Expression | None = None
        if start_ms is not None:
            expr = (ds.field("date") >= day_of(start_ms)) & (ds.field("ts") >= start_ms)
        if end_ms is not None:
            e2 = (ds.field("date") <= day_of(end_ms)) & (ds.field("ts") <= end_ms)
            expr = e2 if expr is None else expr & e2
        return expr

    def files_for(
        self, kind: str, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[str]:
        """The day files a range read opens (the partitions left after pruning on the date key)."""
        dset = self._dataset(kind, symbol)
        if dset is None:
            return []
        return sorted(f.path for f in dset.get_fragments(filter=self._filter(start_ms, end_ms)))

    def _read(self, kind: str, symbol: str, start_ms: int | None, end_ms: int | None) -> pa.Table:
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValidationError("end", end_ms, f"is before start ({start_ms})")
        dset = self._dataset(kind, symbol)
        if dset is None:
            return _SCHEMAS[kind].empty_table()
        table = dset.to_table(columns=_SCHEMAS[kind].names, filter=self._filter(start_ms, end_ms))
        return table.take(pc.sort_indices(table["ts"]))

    def read_bars(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> BarSeries:
        """Bars of ``symbol`` with ``start_ms <= ts <= end_ms``; only the needed day files are opened."""
        t = self._read("bars", symbol, start_ms, end_ms)
        cols = [t[name].to_numpy() for name in BAR_SCHEMA.names]
        return BarSeries.from_arrays(symbol, *cols)

    def read_ticks(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> list[Quote]:
        t = self._read("ticks", symbol, start_ms, end_ms)
        c = {name: t[name].to_pylist() for name in TICK_SCHEMA.names}
        return [Quote(ts, b, a, la, symbol, bs, az) for ts, b, a, la, bs, az in
                zip(c["ts"], c["bid"], c["ask"], c["last"], c["bid_size"], c["ask_size"], strict=True)]  # fmt: skip

    # -- inventory and retention ----------------------------------------------------------------
    def summary(self, kind: str | None = None) -> list[SymbolSummary]:
        """Per kind and symbol: first/last ts, row count, bytes on disk and day count (read from
        Parquet footers and the ts column of the first and last day only)."""
        out: list[SymbolSummary] = []
        for k in (kind,) if kind else KINDS:
            for sym in self.symbols(k):
                days = self.days(k, sym)
                if not days:
                    continue
                rows = size = 0
                for day in days:
                    f = self.day_file(k, sym, day)
                    size += f.stat().st_size
                    rows += pq.ParquetFile(f).metadata.num_rows
                first = pq.read_table(self.day_file(k, sym, days[0]), columns=["ts"])["ts"]
                last = pq.read_table(self.day_file(k, sym, days[-1]), columns=["ts"])["ts"]
                out.append(SymbolSummary(k, sym, int(pc.min(first).as_py()), int(pc.max(last).as_py()), rows, size,
                                         len(days)))  # fmt: skip
        return out

    def prune(
        self,
        *,
        keep_days: int | None = None,
        before: date | None = None,
        now_ms: int | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Delete whole day partitions: those before ``before`` and/or older than ``keep_days`` days
        (today, UTC, counts as one: ``keep_days=1`` keeps only today). With neither given, the store's
        ``retention_days`` applies; with none at all, this refuses rather than guess."""
        if keep_days is None and before is None:
            keep_days = self.retention_days
        if keep_days is None and before is None:
            raise ConfigError("prune", "give keep_days and/or before (or set retention_days)")
        cutoff: date | None = before
        if keep_days is not None:
            if type(keep_days) is not int or keep_days < 1:
                raise ConfigError("keep_days", f"must be a positive integer, got {keep_days!r}")
            now = now_ms if now_ms is not None else int(time.time() * 1000)
            c2 = datetime.fromtimestamp(now / 1000, tz=UTC).date() - timedelta(days=keep_days - 1)
            cutoff = c2 if cutoff is None else max(cutoff, c2)
        assert cutoff is not None
        limit = cutoff.isoformat()
        removed: list[tuple[str, str, str]] = []
        freed = 0
        for k in KINDS:
            for sym in self.symbols(k):
                for day in self.days(k, sym):
                    if day >= limit:
                        continue
                    part = self.day_file(k, sym, day).parent
                    freed += sum(p.stat().st_size for p in part.iterdir() if p.is_file())
                    removed.append((k, sym, day))
                    if not dry_run:
                        shutil.rmtree(part)
                sdir = self.symbol_dir(k, sym)
                if not dry_run and sdir.is_dir() and not any(sdir.iterdir()):
                    sdir.rmdir()
        return PruneReport(removed, freed, dry_run)


def default_root(data_dir: str | Path) -> Path:
    """Where ``stratkernel data`` keeps market data: ``<data_dir>/market``."""
    return Path(data_dir).expanduser() / "market"


def range_from_days(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``--start``/``--end`` as given on the command line -> [start_ms, end_ms]. A bare date as the end
    means the whole of that day; other values go through :func:`stratkernel.core.model.to_ms`."""
    from .model import to_ms

    def one(text: str | None, name: str, end: bool) -> int | None:
        if text is None or text == "":
            return None
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            ms = _day_start_ms(parse_day(text, name))
            return ms + MS_PER_DAY - 1 if end else ms
        if text.isdigit():
            return to_ms(int(text), name)
        return to_ms(text, name)

    lo, hi = one(start, "start", False), one(end, "end", True)
    if lo is not None and hi is not None and hi < lo:
        raise ValidationError("end", end, f"is before start ({start})")
    return lo, hi


@dataclass
class RecordReport:
    """What :func:`record_stream` stored: bars and ticks written, items refused at validation."""

    bars: int = 0
    ticks: int = 0
    refused: int = 0
    last_error: str | None = None


async def record_stream(
    stream: AsyncIterator[Any],
    store: MarketStore,
    *,
    max_items: int | None = None,
    flush_every: int = 10_000,
) -> RecordReport:
    """Store what a data source's live ``stream()`` yields: bars validated by ``BarValidator.bar``
    (order per symbol included), quotes by ``BarValidator.quote``. Refused items are counted and
    logged, never stored. Buffers are written every ``flush_every`` items and at the end, also when
    the stream fails or the task is cancelled (what was received is not lost)."""
    if flush_every < 1:
        raise ConfigError("flush_every", f"must be >= 1, got {flush_every!r}")
    validator = BarValidator()
    report = RecordReport()
    bars: dict[str, list[Bar]] = {}
    ticks: list[Quote] = []
    pending = 0

    def flush() -> None:
        nonlocal pending
        for sym, rows in bars.items():
            if rows:
                cols = list(zip(*rows, strict=True))
                report.bars += store.write_bars(BarSeries.from_arrays(sym, *cols[:6])).rows
        bars.clear()
        if ticks:
            report.ticks += store.write_ticks(ticks).written
            ticks.clear()
        pending = 0

    seen = 0
    try:
        async for item in stream:
            seen += 1
            try:
                if isinstance(item, Quote):
                    ticks.append(validator.quote(item))
                else:
                    b = validator.bar(item)
                    bars.setdefault(b.symbol, []).append(b)
            except ValidationError:
                pass  # counted by the validator; reported below
            pending += 1
            if pending >= flush_every:
                flush()
            if max_items is not None and seen >= max_items:
                break
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None and max_items is not None and seen >= max_items:
            await aclose()  # we stopped early: let the source release what it holds
        flush()
        report.refused = validator.refused
        report.last_error = str(validator.last_error) if validator.last_error is not None else None
        if validator.refused:
            log.warning("recording refused %d item(s); last: %s", validator.refused, validator.last_error)
    return report
