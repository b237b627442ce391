"""Data source ``store``: replay bars from the market-data store (``stratkernel data download``).

``stratkernel backtest S --data store:SYMBOL`` reads every stored bar of SYMBOL;
``store:SYMBOL:START:END`` reads a range (dates ``YYYY-MM-DD``, the end day included whole, or epoch ms;
either may be left empty: ``store:BTC/USDT::2024-03-01``). Only the day files in the range are opened.

Options: ``symbol`` (required), ``start``, ``end``, ``root`` (default ``<data_dir>/market`` with
``data_dir`` from the kernel configuration: ``./stratkernel.toml``, ``STRATKERNEL_DATA_DIR``, or ``.stratkernel``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import ConfigError, ValidationError
from stratkernel.core.hookspecs import hookimpl
from stratkernel.core.marketdata import MarketStore, default_root, range_from_days
from stratkernel.core.model import Bar

DESCRIPTION = "Replay bars from the local market-data store (stratkernel data download)"
_OPTIONS = ("symbol", "start", "end", "root")


class StoreDataSource:
    """Bars of one symbol from a :class:`MarketStore`, cut to the configured range."""

    synthetic = False

    def __init__(self, store: MarketStore, symbol: str, start_ms: int | None, end_ms: int | None) -> None:
        self.name = "store"
        self.store = store
        self.symbol = symbol
        self.symbols = [symbol]
        self.start_ms = start_ms
        self.end_ms = end_ms

    def _bounds(self, start_ms: int | None, end_ms: int | None) -> tuple[int | None, int | None]:
        lo = (
            start_ms
            if self.start_ms is None
            else (self.start_ms if start_ms is None else max(start_ms, self.start_ms))
        )
        hi = end_ms if self.end_ms is None else (self.end_ms if end_ms is None else min(end_ms, self.end_ms))
        return lo, hi

    async def history(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> BarSeries:
        if symbol != self.symbol:
            raise ValidationError("symbol", symbol, f"this store source serves only {self.symbol!r}")
        lo, hi = self._bounds(start_ms, end_ms)
        series = await asyncio.to_thread(self.store.read_bars, symbol, lo, hi)
        if len(series) == 0:
            raise ValidationError(
                "data",
                f"store:{symbol}",
                f"no stored bars in range under {self.store.root} (stored symbols: {self.store.symbols() or 'none'}; "
                "fetch some with `stratkernel data download`)",
            )
        return series

    async def stream(self) -> AsyncIterator[Bar]:
        series = await self.history(self.symbol)
        for i in range(len(series)):
            yield series.bar(i)
            if i % 256 == 255:
                await asyncio.sleep(0)


def _default_root() -> Path:
    # the same data_dir the CLI uses: stratkernel.toml in the working directory, then the environment
    from stratkernel.core.config import load_config

    return default_root(load_config(None).data_dir)


def make_source(options: dict[str, Any]) -> StoreDataSource:
    """The factory registered as ``store``; refuses unknown or bad options by name."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(
            f"data.options.{unknown[0]}", f"unknown option for store; known: {', '.join(_OPTIONS)}"
        )
    symbol = options.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ConfigError("data.options.symbol", "store needs symbol = the stored symbol to replay")
    try:
        lo, hi = range_from_days(
            None if options.get("start") is None else str(options["start"]),
            None if options.get("end") is None else str(options["end"]),
        )
    except ValidationError as exc:
        raise ConfigError(f"data.options.{exc.field}", f"{exc.value!r}: {exc.reason}") from None
    root = options.get("root")
    store = MarketStore(Path(str(root)) if root else _default_root())
    return StoreDataSource(store, symbol, lo, hi)


@hookimpl
def register_data_sources(register: Callable[..., None]) -> None:
    register("store", make_source, description=DESCRIPTION)


@hookimpl
def resolve_data_source(uri: str) -> tuple[str, dict[str, Any]] | None:
    """``store:SYMBOL`` or ``store:SYMBOL:START:END``."""
    if not uri.startswith("store:"):
        return None
    parts = uri[len("store:") :].split(":")
    if len(parts) not in (1, 3) or not parts[0]:
        raise ConfigError(
            "data", f"{uri!r}: expected store:SYMBOL or store:SYMBOL:START:END (dates YYYY-MM-DD)"
        )
    options: dict[str, Any] = {"symbol": parts[0]}
    if len(parts) == 3:
        if parts[1]:
            options["start"] = parts[1]
        if parts[2]:
            options["end"] = parts[2]
    return "store", options
