// expect: runtime
// line: 4
function onBar(ctx, bar) {
  ctx.buy(NaN, { stopLoss: bar.close * 0.9 });
}
