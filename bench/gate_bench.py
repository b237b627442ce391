"""Benchmark: the risk gate's cost per order, every rule on, next to the gate switched off.

``python -m bench.gate_bench [orders]`` prints JSON; ``bench/__main__.py`` calls :func:`bench_gate`.

Setup: a real backtest-mode kernel with the paper broker, two symbols, an open position (so the
exposure, leverage and margin rules have something to add up), and a [risk] config that enables
every built-in rule with limits loose enough that each order is *approved* — the longest path, as
every rule runs to the end. The clock advances 100 ms per order so the rate windows and duplicate
guard see a realistic stream. Timing covers ``Gateway.decide`` only (what the gate adds to an order's
path), per order, with ``perf_counter_ns``; both configurations run in the same process, interleaved
in blocks so that machine noise hits both alike.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import statistics
import sys
import time
from typing import Any

from stratkernel.core.config import KernelConfig
from stratkernel.core.kernel import Kernel
from stratkernel.core.model import Bar, OrderRequest, OrderType, Side
from stratkernel.core.risk import RiskConfig
from stratkernel.testing import plugin_host

__all__ = ["bench_gate"]

T0 = 1_700_000_000_000

ALL_RULES: dict[str, Any] = {
    "require_stop_loss": True,
    "max_order_qty": 1e6,
    "max_order_notional": 1e9,
    "max_position_qty": 1e9,
    "max_position_notional": 1e12,
    "max_gross_exposure": 1e12,
    "max_leverage": 1e6,
    "max_open_positions": 100,
    "risk_per_trade_pct": 100.0,
    "margin_free_fraction": 1.0,
    "margin_level_min_pct": 1.0,
    "daily_loss_pct": 50.0,
    "weekly_loss_pct": 60.0,
    "max_drawdown_pct": 70.0,
    "stop_cooldown_bars": 5,
    "stop_cooldown_minutes": 5.0,
    "stop_lock_count": 3,
    "max_orders_per_second": 1000,
    "max_orders_per_minute": 100_000,
    "max_total_orders_per_second": 1000,
    "max_total_orders_per_minute": 100_000,
    "duplicate_window_ms": 500,
    "price_collar_pct": 10.0,
    "stale_quote_s": 1e9,
    "notifiers": [],
}


async def _kernel(risk: dict[str, Any]) -> Kernel:
    cfg = KernelConfig(strategies=[], symbols=["X", "Y"], risk=RiskConfig(**risk))
    k = Kernel(cfg, plugin_host(), mode="backtest")
    await k.setup()
    for m in range(3):
        for sym, px in (("X", 100.0), ("Y", 50.0)):
            k.port.time = T0 + m * 60_000
            await k.on_live_bar(Bar(k.port.time, px, px * 1.001, px * 0.999, px, 10.0, sym))
        if m == 0:  # an open position in Y: the portfolio rules have something to add up
            d = await k.submit(OrderRequest("Y", Side.BUY, 10, stop_loss=45.0, source="bench"))
            assert d.approved, d
    return k


def _requests(n: int) -> list[OrderRequest]:
    out = []
    for i in range(n):
        qty = float(1 + i % 9)  # varied, so the duplicate guard does not trip
        if i % 3 == 2:
            out.append(
                OrderRequest(
                    "X",
                    Side.BUY,
                    qty,
                    OrderType.LIMIT,
                    limit_price=99.5,
                    stop_loss=95.0,
                    take_profit=110.0,
                    strategy="s2",
                )
            )
        elif i % 2:
            out.append(OrderRequest("X", Side.SELL, qty, stop_loss=105.0, take_profit=90.0, strategy="s1"))
        else:
            out.append(OrderRequest("X", Side.BUY, qty, stop_loss=95.0, take_profit=110.0, strategy="s1"))
    return out


def _run_block(k: Kernel, reqs: list[OrderRequest], out: list[int], start: int) -> int:
    gw = k.gateway
    assert gw is not None
    tickets = gw._tickets
    t_ms = k.port.time
    clock = time.perf_counter_ns
    approved = 0
    for i, r in enumerate(reqs):
        t_ms += 100
        k.port.time = t_ms
        t = clock()
        d = gw.decide(r, f"o{start + i}")
        out.append(clock() - t)
        approved += d.approved
        tickets.clear()  # never redeemed here: keep the ticket map from growing
    return approved


def _pct(xs: list[int], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000.0


def bench_gate(orders: int = 50_000, block: int = 1000) -> dict[str, Any]:
    """Per-order cost of ``Gateway.decide`` (µs): every rule on vs the gate disabled, same run.

    The garbage collector stays on (it is part of what a live kernel pays), with the objects that
    exist after setup frozen out of it (``gc.freeze()``). ``*_best_block_mean_us``
    is the fastest 1000-order block's mean: the least disturbed figure on a shared machine, reported
    next to the load average so a noisy run can be told from a slow gate.
    """

    async def setup() -> tuple[Kernel, Kernel]:
        return await _kernel(ALL_RULES), await _kernel({"enabled": False})

    on, off = asyncio.run(setup())
    assert on.gateway is not None and off.gateway is not None
    # the process holds ~200k long-lived objects (plugins, ccxt, the API stack); a full collection
    # walks all of them (~1 ms). Freezing them after setup, as a latency-minded runtime does, keeps
    # the collector to the young objects; the collector itself stays on.
    from stratkernel.core.kernel import tune_gc_for_trading

    old_thresholds = tune_gc_for_trading()  # the same GC policy `stratkernel run` uses
    rules = [r.name for r in on.gateway.rules]
    reqs = _requests(block)
    t_on: list[int] = []
    t_off: list[int] = []
    best_on = best_off = math.inf
    approved = 0
    _run_block(on, reqs, [], 0)  # warm-up
    _run_block(off, reqs, [], 0)
    for b in range(max(1, orders // block)):
        n = len(t_on)
        approved += _run_block(on, reqs, t_on, b * block)
        best_on = min(best_on, sum(t_on[n:]) / block / 1000.0)
        n = len(t_off)
        _run_block(off, reqs, t_off, b * block)
        best_off = min(best_off, sum(t_off[n:]) / block / 1000.0)
    gc.unfreeze()  # leave the collector as we found it for the benchmarks that follow
    gc.set_threshold(*old_thresholds)
    return {
        "orders": len(t_on),
        "approved_with_all_rules": approved,
        "rules": rules,
        "gate_all_rules_median_us": statistics.median(t_on) / 1000.0,
        "gate_all_rules_p99_us": _pct(t_on, 0.99),
        "gate_all_rules_best_block_mean_us": best_on,
        "gate_disabled_median_us": statistics.median(t_off) / 1000.0,
        "gate_disabled_p99_us": _pct(t_off, 0.99),
        "gate_disabled_best_block_mean_us": best_off,
        "target_p99_us": 25.0,
        "gc": "on, setup objects frozen, young threshold 50000 (as stratkernel run)",
        "load_average_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    print(json.dumps(bench_gate(n), indent=2))
