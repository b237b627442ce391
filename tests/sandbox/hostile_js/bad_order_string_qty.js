// expect: runtime
// line: 4
function onBar(ctx, bar) {
  ctx.sell("1", { stopLoss: bar.close * 1.1 });
}
