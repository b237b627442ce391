// SMA crossover, long/flat: buy when the fast SMA crosses above the slow one, close on the cross down.
//
// Every entry carries a stop-loss `stop_pct` percent below the close (the kernel's risk gate requires
// one). The JavaScript twin of sma_cross.py: same parameters, same trades on the same data.

const PARAMS = {
  fast: { default: 10, min: 2, max: 200, step: 1 },
  slow: { default: 30, min: 3, max: 500, step: 1 },
  qty: { default: 1.0, min: 0.0001, max: 1000000.0 },
  stop_pct: { default: 5.0, min: 0.1, max: 50.0 },
};

// Top-level values live as long as the script is loaded (a reload starts them afresh;
// use ctx.state for anything that must survive a restart).
let prev = 0;

function onStart(ctx) {
  const p = ctx.params;
  if (p.fast >= p.slow) {
    throw new Error("fast (" + p.fast + ") must be below slow (" + p.slow + ")");
  }
  prev = 0;
}

function onBar(ctx, bar) {
  const p = ctx.params;
  const fast = ctx.indicator("sma", p.fast);
  const slow = ctx.indicator("sma", p.slow);
  if (fast === null || slow === null) {
    return;
  }
  const sign = fast > slow ? 1 : fast < slow ? -1 : 0;
  const last = prev;
  prev = sign;
  if (sign > 0 && last <= 0) {
    if (ctx.position.qty <= 0) {
      ctx.buy(p.qty, { stopLoss: bar.close * (1.0 - p.stop_pct / 100.0) });
    }
  } else if (sign < 0 && last >= 0 && ctx.position.qty > 0) {
    ctx.close();
  }
}
