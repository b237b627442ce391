"""The example plugin: one indicator and one broker, registered through stratkernel's hooks."""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from stratkernel import Bar, BarSeries, IndicatorSpec, Order, hookimpl
from stratkernel.plugins.paper import PaperBroker


def _wma_vec(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    if n > len(x):
        return out
    w = np.arange(1, n + 1, dtype=np.float64)
    # a NaN anywhere in a window makes that window NaN, like the incremental form
    valid = np.convolve(np.isnan(x).astype(float), np.ones(n), "valid") == 0
    conv = np.convolve(np.nan_to_num(x), w[::-1], "valid") / w.sum()
    conv[~valid] = np.nan
    out[n - 1:] = conv
    return out


def hma_compute(series: BarSeries, period: int = 20, source: str = "close") -> tuple[np.ndarray]:
    x = series.column(source)
    half, root = max(period // 2, 1), max(int(math.sqrt(period)), 1)
    raw = 2.0 * _wma_vec(x, half) - _wma_vec(x, period)
    return (_wma_vec(raw, root),)


class _Wma:
    def __init__(self, n: int) -> None:
        self.n = n
        self.buf: deque[float] = deque(maxlen=n)
        self.den = n * (n + 1) / 2

    def update(self, v: float) -> float:
        if v != v:
            self.buf.clear()
            return math.nan
        self.buf.append(v)
        if len(self.buf) < self.n:
            return math.nan
        return sum((i + 1) * b for i, b in enumerate(self.buf)) / self.den


class HmaIncremental:
    def __init__(self, period: int = 20, source: str = "close") -> None:
        self.source = source
        self.half = _Wma(max(period // 2, 1))
        self.full = _Wma(period)
        self.root = _Wma(max(int(math.sqrt(period)), 1))

    def update(self, bar: Bar) -> tuple[float]:
        x = getattr(bar, self.source)
        h, f = self.half.update(x), self.full.update(x)
        raw = 2.0 * h - f if (h == h and f == f) else math.nan
        return (self.root.update(raw),)


class JournalBroker(PaperBroker):
    """Paper trading plus a JSONL journal of every order the kernel sends."""

    name = "journal"

    def __init__(self, events: Any, path: str, **kwargs: Any) -> None:
        super().__init__(events, **kwargs)
        self.path = Path(path)

    async def submit(self, order: Order) -> None:
        r = order.request
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": order.id, "symbol": r.symbol, "side": r.side.value, "qty": r.qty,
                                 "stop_loss": r.stop_loss, "strategy": r.strategy}) + "\n")
        await super().submit(order)


def _journal_factory(config: dict[str, Any], events: Any) -> JournalBroker:
    cfg = dict(config)
    path = cfg.pop("path", "orders.jsonl")
    return JournalBroker(events, path, cash=float(cfg.pop("cash", 100_000.0)),
                         currency=str(cfg.pop("currency", "USD")))


@hookimpl
def register_indicators(register: Any) -> None:
    register(IndicatorSpec(name="hma", params=(("period", 20), ("source", "close")), compute=hma_compute,
                           incremental=HmaIncremental, description="Hull moving average (example plugin)"))


@hookimpl
def register_brokers(register: Any) -> None:
    register("journal", _journal_factory, description="Paper broker that journals orders (example plugin)",
             simulated=True)
