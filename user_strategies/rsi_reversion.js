// RSI mean reversion with ATR stops, long only.
//
// Buy when RSI falls below `oversold`; the stop-loss sits `atr_stop` ATRs below the close and the
// take-profit `atr_target` ATRs above it. Close early when RSI recovers above `exit_level`.
// The JavaScript twin of rsi_reversion.py: same parameters, same trades on the same data.

const PARAMS = {
  rsi_period: { default: 14, min: 2, max: 100, step: 1 },
  atr_period: { default: 14, min: 2, max: 100, step: 1 },
  oversold: { default: 30.0, min: 5.0, max: 50.0 },
  exit_level: { default: 55.0, min: 40.0, max: 95.0 },
  atr_stop: { default: 2.0, min: 0.5, max: 10.0 },
  atr_target: { default: 3.0, min: 0.5, max: 20.0 },
  qty: { default: 1.0, min: 0.0001, max: 1000000.0 },
};

function onBar(ctx, bar) {
  const p = ctx.params;
  const rsi = ctx.indicator("rsi", p.rsi_period);
  const atr = ctx.indicator("atr", p.atr_period);
  if (rsi === null || atr === null || atr <= 0) {
    return;
  }
  const qty = ctx.position.qty;
  if (qty === 0 && rsi < p.oversold) {
    const stop = bar.close - p.atr_stop * atr;
    if (stop > 0) {
      ctx.buy(p.qty, { stopLoss: stop, takeProfit: bar.close + p.atr_target * atr, tag: "rsi-entry" });
    }
  } else if (qty > 0 && rsi > p.exit_level) {
    ctx.close();
  }
}

function onReject(ctx, rejection) {
  ctx.log("request", rejection.id, "refused:", rejection.code, rejection.message);
}
