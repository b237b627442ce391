"""Helpers shared by the sandbox tests (a module, so test files can import them by name)."""

from __future__ import annotations

from typing import Any

import numpy as np

from stratkernel.core.data import BarSeries
from stratkernel.sandbox.host import SandboxLimits

SYMBOL = "TEST/USD"
# Short budgets keep the hostile corpus quick; the defaults are exercised in test_host.py.
FAST_LIMITS = SandboxLimits(call_timeout_s=0.5, batch_timeout_s=3.0, load_timeout_s=2.0, memory_mb=256)


def make_series(n: int = 300, *, seed: int = 7, symbol: str = SYMBOL) -> BarSeries:
    """A deterministic random walk with some trend changes, so crossovers and RSI extremes happen."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.01, n) + 0.004 * np.sin(np.arange(n) / 25.0)
    close = 100.0 * np.exp(np.cumsum(steps))
    opens = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(opens, close) * (1.0 + rng.uniform(0.0005, 0.004, n))
    low = np.minimum(opens, close) * (1.0 - rng.uniform(0.0005, 0.004, n))
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    return BarSeries.from_arrays(symbol, ts, opens, high, low, close, rng.uniform(1.0, 5.0, n))


def snapshot(qty: float = 0.0, avg: float = 0.0, cash: float = 100_000.0) -> dict[str, Any]:
    positions = {SYMBOL: {"symbol": SYMBOL, "qty": qty, "avg_price": avg, "realized_pnl": 0.0}} if qty else {}
    return {
        "positions": positions,
        "account": {
            "cash": cash,
            "equity": cash,
            "margin_used": 0.0,
            "free_margin": cash,
            "currency": "USD",
            "leverage": 1.0,
        },
        "open_orders": [],
    }
