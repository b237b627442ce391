"""Benchmark: the sandboxed JavaScript SMA-crossover script (user_strategies/sma_cross.js) over a series.

Driven exactly like the Python script in :mod:`bench.sandbox_bench` (``load`` → ``set_series`` →
``start`` → ``run`` batches that return at the first bar with a request → each market order filled
at the next bar's open through ``fill`` → ``stop``), but through
:class:`~stratkernel.sandbox.js_host.JsScriptHost`: a confined worker with a V8 isolate.

``python -m bench.js_bench [bars]`` prints the JS figures next to the Python ones; ``bench/__main__.py``
calls :func:`bench_js_sma`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.sandbox_bench import _snapshot, bench_sandboxed_sma, synthetic_series
from stratkernel.core.context import IndicatorEngine
from stratkernel.core.data import BarSeries
from stratkernel.core.model import Fill, Side
from stratkernel.core.plugins import load_plugins
from stratkernel.sandbox.host import SandboxLimits
from stratkernel.sandbox.js_host import JsScriptHost

SCRIPT = Path(__file__).resolve().parents[1] / "user_strategies" / "sma_cross.js"


def bench_js_sma(
    series: BarSeries, *, script: Path = SCRIPT, limits: SandboxLimits | None = None, compare: bool = False
) -> dict[str, Any]:
    """Run the sandboxed JS SMA crossover over ``series``; with ``compare`` also the Python one."""
    plugins = load_plugins()
    engine = IndicatorEngine(plugins.registry)
    engine.attach_series(series)
    sym = series.symbol
    n = len(series)
    opens = series.open
    t0 = time.perf_counter()
    host = JsScriptHost(
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
                crossings += "on_fill" in host.callbacks
                if fres.error is not None:
                    raise fres.error
        host.stop(snap)
        t_end = time.perf_counter()
        run_s = t_end - t_series
        out: dict[str, Any] = {
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
            "v8": host.v8_version,
        }
    finally:
        host.close()
    if compare:
        py = bench_sandboxed_sma(series)
        out["python_bars_per_s"] = py["bars_per_s"]
        out["python_orders"] = py["orders"]
        out["js_vs_python_time"] = round(py["bars_per_s"] / out["bars_per_s"], 3)  # >1: JS is slower
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    bars = int(args[0]) if args else 1_000_000
    result = bench_js_sma(synthetic_series(bars), compare=True)
    for k, v in result.items():
        print(f"{k:>22}: {v:,.1f}" if isinstance(v, float) else f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
