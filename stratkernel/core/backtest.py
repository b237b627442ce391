"""Backtests: the live kernel replayed over a validated series, with a paper broker and bar time.

``run_backtest`` is what the CLI, the API and the optimizer call. The equity curve and statistics are
computed after the run, vectorized from the fills, so the per-bar loop does no bookkeeping for them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import KernelConfig, StrategyConfig
from .data import BarSeries
from .errors import ConfigError
from .kernel import Kernel
from .model import Decision, Fill
from .plugins import PluginHost, load_plugins

MS_PER_YEAR = 365.0 * 24 * 3600 * 1000


@dataclass(repr=False)
class BacktestResult:
    strategy: str
    params: dict[str, Any]
    symbol: str
    bars: int
    fills: list[Fill]
    denials: list[Decision]
    orders: int
    initial_cash: float
    final_equity: float
    equity: np.ndarray
    trades: int
    wins: int
    max_drawdown_pct: float
    sharpe: float
    elapsed_s: float
    failure: dict[str, Any] | None = None
    gate: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # compact on purpose: asyncio reprs a finished task's result, and a repr of every fill of a
        # million-bar run costs as much as a good part of the run
        return (
            f"BacktestResult(strategy={self.strategy!r}, bars={self.bars}, fills={len(self.fills)}, "
            f"pnl={self.pnl:.4f}, failure={self.failure!r})"
        )

    @property
    def pnl(self) -> float:
        return self.final_equity - self.initial_cash

    @property
    def return_pct(self) -> float:
        return self.pnl / self.initial_cash * 100.0

    @property
    def bars_per_s(self) -> float:
        return self.bars / self.elapsed_s if self.elapsed_s > 0 else math.inf

    def summary(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "params": self.params,
            "symbol": self.symbol,
            "bars": self.bars,
            "orders": self.orders,
            "fills": len(self.fills),
            "denied": len(self.denials),
            "trades": self.trades,
            "win_rate": round(self.wins / self.trades, 4) if self.trades else None,
            "initial_cash": self.initial_cash,
            "final_equity": round(self.final_equity, 6),
            "pnl": round(self.pnl, 6),
            "return_pct": round(self.return_pct, 6),
            "max_drawdown_pct": round(self.max_drawdown_pct, 6),
            "sharpe": round(self.sharpe, 6) if math.isfinite(self.sharpe) else None,
            "elapsed_s": round(self.elapsed_s, 4),
            "bars_per_s": round(self.bars_per_s, 1) if math.isfinite(self.bars_per_s) else None,
            "gate": self.gate,
            "failure": self.failure,
        }


def load_data(uri: str | Path, plugins: PluginHost, symbol: str | None = None) -> BarSeries:
    """Resolve a path or URI through the data-source plugins and load the whole series (sync)."""
    import asyncio

    return asyncio.run(load_data_async(uri, plugins, symbol))


async def load_data_async(uri: str | Path, plugins: PluginHost, symbol: str | None = None) -> BarSeries:
    """Ask ``resolve_data_source`` which plugin reads ``uri``, then load its history."""
    answer = plugins.hook.resolve_data_source(uri=str(uri))
    if answer is None:
        raise ConfigError(
            "--data", f"no data-source plugin recognises {str(uri)!r} (try a .csv or .parquet file)"
        )
    name, options = answer
    options = dict(options)
    if symbol:
        options.setdefault("symbol", symbol)
    source = plugins.registry.get("data_source", name).obj(options)
    sym = symbol or (source.symbols[0] if getattr(source, "symbols", None) else Path(str(uri)).stem)
    return await source.history(sym)


async def run_backtest_async(
    strategy: str | Path,
    data: BarSeries | str | Path,
    *,
    params: dict[str, Any] | None = None,
    config: KernelConfig | None = None,
    plugins: PluginHost | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    name: str | None = None,
) -> BacktestResult:
    plugins = plugins or load_plugins()
    series = data if isinstance(data, BarSeries) else await load_data_async(data, plugins)
    base = config or KernelConfig(strategies=[])
    ref = str(strategy)
    inst = name or (Path(ref).stem if ref.endswith((".py", ".js")) else ref)
    cfg = base.model_copy(
        update={
            "symbols": [series.symbol],
            "strategies": [
                StrategyConfig(name=inst, strategy=ref, symbol=series.symbol, params=params or {})
            ],
        }
    )
    kernel = Kernel(cfg, plugins, mode="backtest")
    await kernel.setup()
    slot = kernel.add_strategy(inst, ref, symbol=series.symbol, params=params or {})
    t0 = time.perf_counter()
    if slot.status == "running":
        await kernel.run_backtest(series, progress=progress, cancel=cancel)
    else:
        await kernel._settle_failures()
    elapsed = time.perf_counter() - t0
    fills = kernel.fill_log
    equity = equity_curve(series, fills, cfg.initial_cash)
    trades, wins = round_trips(fills)
    gate = kernel.gateway.stats() if kernel.gateway else None
    return BacktestResult(
        strategy=ref,
        params=slot.params,
        symbol=series.symbol,
        bars=kernel.stats["bars"],
        fills=fills,
        denials=kernel.denials,
        orders=kernel.stats["orders"],
        initial_cash=cfg.initial_cash,
        final_equity=float(equity[-1]) if len(equity) else cfg.initial_cash,
        equity=equity,
        trades=trades,
        wins=wins,
        max_drawdown_pct=max_drawdown_pct(equity),
        sharpe=sharpe(equity, series.ts),
        elapsed_s=elapsed,
        failure=slot.error.as_dict() if slot.error else None,
        gate={"approved": gate.approved, "denied": gate.denied, "by_code": gate.by_code} if gate else {},
    )


def run_backtest(strategy: str | Path, data: BarSeries | str | Path, **kwargs: Any) -> BacktestResult:
    """Synchronous wrapper of :func:`run_backtest_async` for scripts, tests and the CLI."""
    import asyncio

    return asyncio.run(run_backtest_async(strategy, data, **kwargs))


def equity_curve(series: BarSeries, fills: list[Fill], initial_cash: float) -> np.ndarray:
    n = len(series)
    if n == 0:
        return np.zeros(0)
    if not fills:
        return np.full(n, initial_cash, dtype=np.float64)
    fts = np.fromiter((f.ts for f in fills), dtype=np.int64, count=len(fills))
    signed = np.fromiter((f.signed_qty for f in fills), dtype=np.float64, count=len(fills))
    price = np.fromiter((f.price for f in fills), dtype=np.float64, count=len(fills))
    fee = np.fromiter((f.fee for f in fills), dtype=np.float64, count=len(fills))
    idx = np.clip(np.searchsorted(series.ts, fts, side="left"), 0, n - 1)
    cash = initial_cash + np.cumsum(np.bincount(idx, weights=-(signed * price + fee), minlength=n))
    qty = np.cumsum(np.bincount(idx, weights=signed, minlength=n))
    return cash + qty * series.close


def round_trips(fills: list[Fill]) -> tuple[int, int]:
    """Count closed trades (flat → position → flat, per strategy and symbol) and winners."""
    qty: dict[tuple[str, str], float] = {}
    cash: dict[tuple[str, str], float] = {}
    trades = wins = 0
    for f in fills:
        key = (f.strategy, f.symbol)
        q0 = qty.get(key, 0.0)
        q1 = q0 + f.signed_qty
        cash[key] = cash.get(key, 0.0) - f.signed_qty * f.price - f.fee
        if abs(q1) < 1e-12:
            trades += 1
            if cash[key] > 0:
                wins += 1
            cash[key] = 0.0
            q1 = 0.0
        qty[key] = q1
    return trades, wins


def max_drawdown_pct(equity: np.ndarray) -> float:
    if len(equity) == 0:
        return 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max((peak - equity) / peak) * 100.0)


def sharpe(equity: np.ndarray, ts: np.ndarray) -> float:
    """Annualised Sharpe of per-bar returns (risk-free 0), years of 365 days (markets that never close)."""
    if len(equity) < 3:
        return math.nan
    rets = np.diff(equity) / equity[:-1]
    sd = float(np.std(rets, ddof=1))
    if sd == 0 or not math.isfinite(sd):
        return math.nan
    step = float(np.median(np.diff(ts)))
    per_year = MS_PER_YEAR / step if step > 0 else 252.0
    return float(np.mean(rets) / sd * math.sqrt(per_year))
