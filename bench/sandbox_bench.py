"""Benchmark: the sandboxed SMA-crossover user script over a bar series, end to end.

Drives :class:`~stratkernel.sandbox.host.ScriptHost` the way the kernel does: ``load`` →
``set_series`` → ``start`` → ``run`` batches that return at the first bar with a request → each
market order filled at the next bar's open (``fill`` with an updated position snapshot) → ``stop``.
Stops and take-profits are not simulated here (the kernel's broker does that); the number measured is
the cost of the sandbox: process boundary, framing, validation and the restricted per-bar path.

``python -m bench.sandbox_bench [bars]`` prints the result; ``bench/__main__.py`` calls
:func:`bench_sandboxed_sma`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from stratkernel.core.context import IndicatorEngine
from stratkernel.core.data import BarSeries
from stratkernel.core.model import Fill, Side
from stratkernel.core.plugins import load_plugins
from stratkernel.sandbox.host import SandboxLimits, ScriptHost

SCRIPT = Path(__file__).resolve().parents[1] / "user_strategies" / "sma_cross.py"


def _snapshot(symbol: str, qty: float, avg: float, cash: float) -> dict[str, Any]:
    return {
        "positions": {symbol: {"symbol": symbol, "qty": qty, "avg_price": avg, "realized_pnl": 0.0}}
        if qty
        else {},
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


def bench_sandboxed_sma(
    series: BarSeries,
    *,
    script: Path = SCRIPT,
    limits: SandboxLimits | None = None,
    host_cls: type[ScriptHost] = ScriptHost,
) -> dict[str, Any]:
    """Run the sandboxed SMA crossover over ``series`` the way the kernel drives a script host (the V8
    host too, via ``host_cls``); return throughput and counts."""
    plugins = load_plugins()
    engine = IndicatorEngine(plugins.registry)
    engine.attach_series(series)
    sym = series.symbol
    n = len(series)
    opens = series.open
    t0 = time.perf_counter()
    host = host_cls(
        script.read_text(encoding="utf-8"),
        name="sma_cross",
        filename=script.name,
        limits=limits or SandboxLimits(),
        indicators=engine.provider(sym),
        symbol=sym,
    )
    try:
        host.load()
        t_load = time.perf_counter()
        host.set_series(series)
        t_series = time.perf_counter()
        qty, avg, cash = 0.0, 0.0, 1_000_000.0
        snap = _snapshot(sym, qty, avg, cash)
        res = host.start(snap, None)
        crossings, orders, fills = 1, 0, 0
        i = 0
        while i < n:
            res = host.run(i, n, snap)
            crossings += 1
            if res.error is not None:
                raise res.error
            i = res.upto + 1
            for req in res.orders:
                orders += 1
                if i >= n:
                    break
                price = float(opens[i])
                signed = req.qty if req.side is Side.BUY else -req.qty
                new_qty = qty + signed
                cash -= signed * price
                avg = price if new_qty and (qty == 0 or (qty > 0) != (new_qty > 0)) else avg
                qty = 0.0 if abs(new_qty) < 1e-12 else new_qty
                snap = _snapshot(sym, qty, avg if qty else 0.0, cash)
                fill = Fill(
                    f"f{fills + 1}",
                    req.client_id,
                    sym,
                    req.side,
                    req.qty,
                    price,
                    0.0,
                    int(series.ts[i]),
                    "sma_cross",
                )
                fills += 1
                fres = host.fill(fill, snap)
                crossings += "on_fill" in host.callbacks  # without on_fill the host does not cross
                if fres.error is not None:
                    raise fres.error
        host.stop(snap)
        t_end = time.perf_counter()
        run_s = t_end - t_series
        return {
            "bars": n,
            "bars_per_s": n / (t_end - t0),
            "bars_per_s_run_only": n / run_s if run_s > 0 else float("inf"),
            "load_s": round(t_load - t0, 4),
            "set_series_s": round(t_series - t_load, 4),
            "run_s": round(run_s, 4),
            "total_s": round(t_end - t0, 4),
            "crossings": crossings,
            "orders": orders,
            "fills": fills,
            "worker_cpu_ms": res.cpu_ms,
            "worker_peak_rss_mb": round(res.rss_mb, 1),
            **({"v8": host.v8_version} if hasattr(host, "v8_version") else {}),
        }
    finally:
        host.close()


def synthetic_series(bars: int, *, seed: int = 1, symbol: str = "BENCH/USD") -> BarSeries:
    """A random-walk series (used when run standalone)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, bars)))
    opens = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(opens, close) * (1 + rng.uniform(0, 0.001, bars))
    low = np.minimum(opens, close) * (1 - rng.uniform(0, 0.001, bars))
    ts = 1_600_000_000_000 + np.arange(bars, dtype=np.int64) * 60_000
    return BarSeries.from_arrays(symbol, ts, opens, high, low, close, rng.uniform(1, 10, bars))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    bars = int(args[0]) if args else 1_000_000
    result = bench_sandboxed_sma(synthetic_series(bars))
    for k, v in result.items():
        print(f"{k:>22}: {v:,.1f}" if isinstance(v, float) else f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
