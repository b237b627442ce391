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
from pathlib import Path
from typing import Any

from bench.sandbox_bench import bench_sandboxed_sma, synthetic_series
from stratkernel.core.data import BarSeries
from stratkernel.sandbox.host import SandboxLimits
from stratkernel.sandbox.js_host import JsScriptHost

SCRIPT = Path(__file__).resolve().parents[1] / "user_strategies" / "sma_cross.js"


def bench_js_sma(
    series: BarSeries, *, script: Path = SCRIPT, limits: SandboxLimits | None = None, compare: bool = False
) -> dict[str, Any]:
    """Run the sandboxed JS SMA crossover over ``series``; with ``compare`` also the Python one."""
    out = bench_sandboxed_sma(series, script=script, limits=limits, host_cls=JsScriptHost)
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
