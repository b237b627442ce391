"""``stratkernel data``: download history into the market-data store, list it, prune it.

The lead's ``cli.py`` attaches :data:`data_group` as ``stratkernel data``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .core.errors import ConfigError, StratkernelError, ValidationError

__all__ = ["data_group"]


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _root(root: str | None, config_path: str | None) -> Path:
    from .core.config import load_config
    from .core.marketdata import default_root

    if root:
        return Path(root).expanduser()
    return default_root(load_config(config_path).data_dir)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@click.group("data")
def data_group() -> None:
    """Market data kept for backtests: Parquet files by symbol and day under <data_dir>/market."""


_root_opt = click.option(
    "--root", type=click.Path(file_okay=False), help="Store directory (default <data_dir>/market)."
)
_config_opt = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file."
)


@data_group.command()
@click.argument("source_uri")
@click.option(
    "--start", help="First bar: YYYY-MM-DD, ISO timestamp or epoch ms (default: all the source has)."
)
@click.option("--end", help="Last bar: YYYY-MM-DD (the whole day), ISO timestamp or epoch ms.")
@click.option(
    "--symbol", "symbols", multiple=True, help="Symbol to download (repeatable; default: the source's)."
)
@_root_opt
@_config_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def download(
    source_uri: str,
    start: str | None,
    end: str | None,
    symbols: tuple[str, ...],
    root: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Pull history from SOURCE_URI (e.g. synthetic:bars=5000, bars.csv, ccxt:binance:BTC/USDT:1m)
    through the data-source plugins into the store, de-duplicated by (symbol, ts)."""
    from .core.marketdata import MarketStore, range_from_days
    from .core.plugins import load_plugins

    logging.getLogger("stratkernel.plugins").setLevel(logging.ERROR)
    try:
        lo, hi = range_from_days(start, end)
        store = MarketStore(_root(root, config_path))
        host = load_plugins()
        answer = host.hook.resolve_data_source(uri=source_uri)
        if answer is None:
            raise ConfigError("SOURCE_URI", f"no data-source plugin recognises {source_uri!r}")
        name, options = answer
        options = dict(options)
        if len(symbols) == 1:
            options.setdefault("symbol", symbols[0])
        source = host.registry.get("data_source", name).obj(options)
        wanted = list(symbols) or list(getattr(source, "symbols", None) or [])
        if not wanted:
            raise ConfigError("--symbol", f"the {name} source names no symbol; give --symbol")
        reports = asyncio.run(_download(source, wanted, lo, hi, store, show_progress=not as_json))
    except (StratkernelError, OSError) as exc:
        if as_json:
            click.echo(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
            sys.exit(1)
        _fail(str(exc))
        return
    rows: list[dict[str, Any]] = [
        {"symbol": r.symbol, "rows": r.rows, "added": r.added, "replaced": r.replaced, "days": len(r.days)}
        for r in reports
    ]
    if as_json:
        click.echo(json.dumps({"root": str(store.root), "symbols": rows}))
        return
    for r in rows:
        click.echo(f"{r['symbol']}: {r['rows']} bars over {r['days']} day(s): {r['added']} new, "
                   f"{r['replaced']} replaced -> {store.root}")  # fmt: skip


async def _download(
    source: Any, symbols: list[str], lo: int | None, hi: int | None, store: Any, show_progress: bool
) -> list[Any]:
    reports = []
    for sym in symbols:
        series = await source.history(sym, lo, hi)
        bar = None
        if show_progress and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(
                total=len(series), unit="bar", unit_scale=True, desc=sym, file=sys.stderr, mininterval=0.2
            )
        try:
            report = await asyncio.to_thread(store.write_bars, series, progress=bar.update if bar else None)
        finally:
            if bar is not None:
                bar.close()
        reports.append(report)
    return reports


@data_group.command()
@click.argument("source_uri")
@click.option(
    "--items",
    type=click.IntRange(min=1),
    help="Stop after this many bars and quotes (default: until Ctrl-C).",
)
@_root_opt
@_config_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
def record(
    source_uri: str, items: int | None, root: str | None, config_path: str | None, as_json: bool
) -> None:
    """Store what SOURCE_URI's live stream yields (bars and quotes), validated, until Ctrl-C or --items."""
    from .core.marketdata import MarketStore, RecordReport, record_stream
    from .core.plugins import load_plugins

    logging.getLogger("stratkernel.plugins").setLevel(logging.ERROR)
    report = RecordReport()
    try:
        store = MarketStore(_root(root, config_path))
        host = load_plugins()
        answer = host.hook.resolve_data_source(uri=source_uri)
        if answer is None:
            raise ConfigError("SOURCE_URI", f"no data-source plugin recognises {source_uri!r}")
        name, options = answer
        source = host.registry.get("data_source", name).obj(dict(options))
        if not as_json:
            click.echo(f"recording {source_uri} into {store.root} (Ctrl-C to stop) ...", err=True)
        report = asyncio.run(record_stream(source.stream(), store, max_items=items))
    except KeyboardInterrupt:
        click.echo("stopped; what was received is stored", err=True)
    except (StratkernelError, OSError) as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "bars": report.bars,
                    "ticks": report.ticks,
                    "refused": report.refused,
                    "last_error": report.last_error,
                }
            )
        )
        return
    click.echo(f"stored {report.bars} bars and {report.ticks} ticks; refused {report.refused}")


@data_group.command("list")
@_root_opt
@_config_opt
@click.option("--ticks", is_flag=True, help="Also list stored ticks.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def list_(root: str | None, config_path: str | None, ticks: bool, as_json: bool) -> None:
    """Stored symbols with first/last time, bar counts, days and bytes on disk."""
    from .core.marketdata import MarketStore

    try:
        store = MarketStore(_root(root, config_path))
        rows = [s for s in store.summary() if ticks or s.kind == "bars"]
    except (StratkernelError, OSError) as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps({"root": str(store.root), "symbols": [s.as_dict() for s in rows]}))
        return
    if not rows:
        click.echo(f"no market data under {store.root}")
        return
    click.echo(f"{'KIND':<6} {'SYMBOL':<20} {'FIRST':<26} {'LAST':<26} {'ROWS':>10} {'DAYS':>5} {'SIZE':>10}")
    for s in rows:
        d = s.as_dict()
        click.echo(f"{s.kind:<6} {s.symbol:<20} {d['first']:<26} {d['last']:<26} {s.rows:>10} {s.days:>5} "
                   f"{_human(s.bytes):>10}")  # fmt: skip


@data_group.command()
@click.option("--keep-days", type=int, help="Keep the last N days (today, UTC, is one); delete older days.")
@click.option("--before", help="Delete days before this date (YYYY-MM-DD).")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@_root_opt
@_config_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def prune(
    keep_days: int | None,
    before: str | None,
    dry_run: bool,
    root: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Retention: delete whole day partitions (bars and ticks) older than --keep-days or --before."""
    from .core.marketdata import MarketStore, parse_day

    try:
        if keep_days is None and before is None:
            raise ConfigError("prune", "give --keep-days N and/or --before YYYY-MM-DD")
        if keep_days is not None and keep_days < 1:
            raise ConfigError("--keep-days", f"must be >= 1, got {keep_days}")
        cutoff = parse_day(before, "--before") if before is not None else None
        store = MarketStore(_root(root, config_path))
        report = store.prune(keep_days=keep_days, before=cutoff, dry_run=dry_run)
    except (StratkernelError, ValidationError, OSError) as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "bytes": report.bytes_freed,
                    "removed": [{"kind": k, "symbol": s, "date": d} for k, s, d in report.removed],
                }
            )
        )
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {len(report.removed)} day partition(s), {_human(report.bytes_freed)}")
