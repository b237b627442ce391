"""Built-in trusted strategies. They register like any third-party strategy plugin."""

from __future__ import annotations

from typing import Any

from stratkernel import Bar, Context, Strategy, hookimpl


class SmaCross(Strategy):
    """Long/flat SMA crossover: buy when the fast SMA crosses above the slow one, close on the cross down.

    Every entry carries a stop-loss ``stop_pct`` below the close (the risk gate requires one).
    """

    name = "sma_cross"
    PARAMS = {
        "fast": {"default": 10, "min": 2, "max": 200, "step": 1},
        "slow": {"default": 30, "min": 3, "max": 500, "step": 1},
        "qty": {"default": 1.0, "min": 0.0001, "max": 1e6},
        "stop_pct": {"default": 5.0, "min": 0.1, "max": 50.0},
    }

    def on_start(self, ctx: Context) -> None:
        p = ctx.params
        if p["fast"] >= p["slow"]:
            raise ValueError(f"fast ({p['fast']}) must be below slow ({p['slow']})")
        self.fast, self.slow = p["fast"], p["slow"]
        self.qty, self.stop = p["qty"], 1.0 - p["stop_pct"] / 100.0
        self.prev = 0  # sign of (fast - slow) on the previous bar

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        fast = ctx.indicator("sma", self.fast)
        slow = ctx.indicator("sma", self.slow)
        if fast is None or slow is None:
            return
        sign = 1 if fast > slow else -1 if fast < slow else 0
        prev, self.prev = self.prev, sign
        if sign > 0 >= prev:
            if ctx.position.qty <= 0:
                ctx.buy(self.qty, stop_loss=bar.close * self.stop)
        elif sign < 0 <= prev and ctx.position.qty > 0:
            ctx.close()


@hookimpl
def register_strategies(register: Any) -> None:
    register(SmaCross)
