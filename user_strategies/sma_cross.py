"""SMA crossover, long/flat: buy when the fast SMA crosses above the slow one, close on the cross down.

Every entry carries a stop-loss `stop_pct` percent below the close (the kernel's risk gate requires one).
The same logic as the built-in trusted `sma_cross` strategy, written as a user script.
"""

PARAMS = {
    "fast": {"default": 10, "min": 2, "max": 200, "step": 1},
    "slow": {"default": 30, "min": 3, "max": 500, "step": 1},
    "qty": {"default": 1.0, "min": 0.0001, "max": 1000000.0},
    "stop_pct": {"default": 5.0, "min": 0.1, "max": 50.0},
}

# Module-level values live as long as the script is loaded (a reload starts them afresh;
# use ctx.state for anything that must survive a restart).
memory = {"prev": 0}


def on_start(ctx):
    p = ctx.params
    if p["fast"] >= p["slow"]:
        raise ValueError("fast (" + str(p["fast"]) + ") must be below slow (" + str(p["slow"]) + ")")
    memory["prev"] = 0


def on_bar(ctx, bar):
    p = ctx.params
    fast = ctx.indicator("sma", p["fast"])
    slow = ctx.indicator("sma", p["slow"])
    if fast is None or slow is None:
        return
    sign = 1 if fast > slow else (-1 if fast < slow else 0)
    prev = memory["prev"]
    memory["prev"] = sign
    if sign > 0 >= prev:
        if ctx.position.qty <= 0:
            ctx.buy(p["qty"], stop_loss=bar.close * (1.0 - p["stop_pct"] / 100.0))
    elif sign < 0 <= prev and ctx.position.qty > 0:
        ctx.close()
