// expect: limit
function onBar(ctx, bar) {
  for (let i = 0; i < 1000; i++) ctx.buy(1, { stopLoss: bar.close * 0.9 });
}
