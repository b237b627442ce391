"""A test kit for plugin and strategy authors (and for stratkernel's own tests).

::

    from stratkernel.testing import make_series, kernel_with, assert_indicator_consistent

* :func:`make_series`: a deterministic, valid BarSeries (random walk) for tests.
* :func:`plugin_host`: a PluginHost with the built-in plugins plus your plugin objects, without
  installing anything.
* :func:`kernel_with`: a ready backtest-mode Kernel (paper broker) with your plugins and rules.
* :func:`assert_indicator_consistent`: your indicator's vectorized and incremental forms agree.
* ``stratkernel.testing.exchange_emulator``: a Binance-spot emulator on 127.0.0.1 for ccxt tests.
* ``stratkernel.testing.mt5_double``: a faithful stand-in for the Windows-only MetaTrader5 package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stratkernel.core.config import KernelConfig
from stratkernel.core.data import BarSeries
from stratkernel.core.kernel import Kernel
from stratkernel.core.plugins import PluginHost, load_plugins

from .indicators import assert_indicator_consistent

__all__ = ["assert_indicator_consistent", "kernel_with", "make_series", "plugin_host"]


def make_series(
    n: int = 1000,
    *,
    symbol: str = "TEST",
    seed: int = 1,
    start: float = 100.0,
    vol: float = 0.002,
    step_ms: int = 60_000,
    t0: int = 1_700_000_000_000,
) -> BarSeries:
    """A valid OHLCV random walk: open is the previous close, high/low bracket both."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.concatenate(([start], close[:-1]))
    spread = np.abs(rng.normal(0.0, vol / 2, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.uniform(10.0, 1000.0, n)
    ts = t0 + np.arange(n, dtype=np.int64) * step_ms
    return BarSeries.from_arrays(symbol, ts, open_, high, low, close, volume)


def plugin_host(*plugins: Any, builtins: bool = True) -> PluginHost:
    """Built-in plugins (through their entry points) plus the given plugin objects or modules."""
    return load_plugins(
        entry_points=builtins, extra=[(getattr(p, "__name__", type(p).__name__), p) for p in plugins]
    )


async def kernel_with(
    *plugins: Any,
    config: KernelConfig | None = None,
    symbols: list[str] | None = None,
    **config_overrides: Any,
) -> Kernel:
    """A set-up backtest Kernel with a paper broker; add strategies with ``kernel.add_strategy``."""
    cfg = config or KernelConfig(strategies=[], symbols=symbols or ["TEST"], **config_overrides)
    kernel = Kernel(cfg, plugin_host(*plugins), mode="backtest")
    await kernel.setup()
    return kernel
