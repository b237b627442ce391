"""ctx.state in use: a breakout script that keeps trade statistics across restarts.

The kernel persists ctx.state (a small JSON-serializable dict) and hands it back on the next start,
so the counters survive a restart or a hot reload. Entries: close above the highest close of the last
`lookback` bars; exits: ctx.close() after `hold` bars. After `max_losses` losing trades in a row the
script stops trading until it is restarted with a fresh state.
"""

PARAMS = {
    "lookback": {"default": 20, "min": 2, "max": 500, "step": 1},
    "hold": {"default": 10, "min": 1, "max": 500, "step": 1},
    "qty": {"default": 1.0, "min": 0.0001, "max": 1000000.0},
    "stop_pct": {"default": 3.0, "min": 0.1, "max": 50.0},
    "max_losses": {"default": 5, "min": 1, "max": 100, "step": 1},
}


def on_start(ctx):
    s = ctx.state
    s["starts"] = s.get("starts", 0) + 1
    for key in ("entries", "exits", "wins", "losses", "streak", "worst_streak"):
        if key not in s:
            s[key] = 0
    if "entry_bar" not in s:
        s["entry_bar"] = -1
    if "entry_price" not in s:
        s["entry_price"] = 0.0
    ctx.log("start", s["starts"], "entries so far:", s["entries"])


def on_bar(ctx, bar):
    s = ctx.state
    p = ctx.params
    if ctx.position.qty > 0:
        if ctx.bar_index - s["entry_bar"] >= p["hold"]:
            ctx.close()
        return
    if s["streak"] >= p["max_losses"]:
        return
    closes = ctx.history("close", p["lookback"] + 1)
    if len(closes) <= p["lookback"]:
        return
    if bar.close > max(closes[:-1]):
        ctx.buy(p["qty"], stop_loss=bar.close * (1.0 - p["stop_pct"] / 100.0), tag="breakout")


def on_fill(ctx, fill):
    s = ctx.state
    if fill.side == "buy":
        s["entries"] = s["entries"] + 1
        s["entry_bar"] = ctx.bar_index
        s["entry_price"] = fill.price
        return
    s["exits"] = s["exits"] + 1
    if fill.price > s["entry_price"]:
        s["wins"] = s["wins"] + 1
        s["streak"] = 0
    else:
        s["losses"] = s["losses"] + 1
        s["streak"] = s["streak"] + 1
        s["worst_streak"] = max(s["worst_streak"], s["streak"])
