"""Market data entering the kernel: the DataSource protocol and columnar bar series.

Validation happens once, where data enters. A :class:`BarSeries` is validated vectorized when it is
built (``BarSeries.from_arrays``), so the backtest loop never re-checks a bar. Live sources yield bars
one at a time; the kernel passes each through :class:`BarValidator` (cheap scalar checks plus
ordering per symbol) before anything else sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import ValidationError
from .model import Bar, Quote


@dataclass(frozen=True, slots=True)
class BarSeries:
    """Validated OHLCV bars of one symbol as numpy arrays (ts in epoch ms, UTC, strictly increasing)."""

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def column(self, name: str) -> np.ndarray:
        if name == "hl2":
            return (self.high + self.low) / 2.0
        if name == "hlc3":
            return (self.high + self.low + self.close) / 3.0
        if name not in ("open", "high", "low", "close", "volume"):
            raise ValidationError("source", name, "must be open, high, low, close, volume, hl2 or hlc3")
        return getattr(self, name)

    def slice(self, start: int, stop: int) -> BarSeries:
        return BarSeries(
            self.symbol,
            self.ts[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
        )

    def between(self, start_ms: int | None, end_ms: int | None) -> BarSeries:
        lo = 0 if start_ms is None else int(np.searchsorted(self.ts, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.ts, end_ms, side="right"))
        return self.slice(lo, hi)

    def bar(self, i: int) -> Bar:
        return Bar(
            int(self.ts[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
            self.symbol,
        )

    @classmethod
    def from_arrays(
        cls,
        symbol: str,
        ts: Any,
        open: Any,
        high: Any,
        low: Any,
        close: Any,
        volume: Any | None = None,
    ) -> BarSeries:
        """Validate whole columns at once; the first bad row is reported by index, field and value."""
        t = np.asarray(ts, dtype=np.int64)
        cols = {}
        for name, arr in (("open", open), ("high", high), ("low", low), ("close", close)):
            try:
                cols[name] = np.ascontiguousarray(arr, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValidationError(name, "<column>", f"not numeric: {exc}") from None
        v = np.zeros_like(cols["close"]) if volume is None else np.ascontiguousarray(volume, dtype=np.float64)
        n = t.shape[0]
        for name, arr in (*cols.items(), ("volume", v)):
            if arr.shape != (n,):
                raise ValidationError(name, arr.shape, f"column length differs from ts ({n})")
        o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]

        def refuse(mask: np.ndarray, field: str, arr: np.ndarray, message: str) -> None:
            if mask.any():
                i = int(np.argmax(mask))
                raise ValidationError(f"bar[{i}].{field}", arr[i].item(), message)

        for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
            refuse(~np.isfinite(arr), name, arr, "must be finite")
            refuse(arr <= 0, name, arr, "must be positive")
        refuse(~np.isfinite(v) | (v < 0), "volume", v, "must be finite and >= 0")
        refuse(h < lo, "high", h, "high is below low")
        refuse((o < lo) | (o > h), "open", o, "open is outside [low, high]")
        refuse((c < lo) | (c > h), "close", c, "close is outside [low, high]")
        refuse(t < 0, "ts", t, "timestamp must be >= 0")
        if n > 1:
            refuse(np.concatenate(([False], np.diff(t) <= 0)), "ts", t, "timestamps must strictly increase")
        return cls(symbol, t, o, h, lo, c, v)


class BarValidator:
    """Scalar validation for live bars and quotes, with ordering per symbol and refusal counts."""

    def __init__(self) -> None:
        self._last_ts: dict[str, int] = {}
        self.refused = 0
        self.last_error: ValidationError | None = None

    def bar(self, bar: Any) -> Bar:
        try:
            if not isinstance(bar, Bar):
                raise ValidationError("bar", type(bar).__name__, "a data source must yield Bar values")
            checked = Bar.parse(*bar)
            prev = self._last_ts.get(checked.symbol)
            if prev is not None and checked.ts <= prev:
                raise ValidationError("ts", checked.ts, f"out of order: not after the previous bar ({prev})")
        except ValidationError as exc:
            self.refused += 1
            self.last_error = exc
            raise
        self._last_ts[checked.symbol] = checked.ts
        return checked

    def quote(self, quote: Any) -> Quote:
        try:
            if not isinstance(quote, Quote):
                raise ValidationError("quote", type(quote).__name__, "a data source must yield Quote values")
            return Quote.parse(*quote)
        except ValidationError as exc:
            self.refused += 1
            self.last_error = exc
            raise


class DataSource(Protocol):
    """A data-source plugin. Implement ``history`` for backtests and/or ``stream`` for live trading."""

    name: str
    symbols: list[str]

    async def history(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None) -> BarSeries:
        """All bars of ``symbol`` in [start, end], validated (build it with ``BarSeries.from_arrays``)."""

    def stream(self) -> AsyncIterator[Bar | Quote]:
        """Live bars and quotes, in time order. The kernel validates each item it receives."""
