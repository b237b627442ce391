// expect: policy
// a continuation that tries to place an order after the callback returned
function onBar(ctx, bar) {
  Promise.resolve().then(() => ctx.buy(1, { stopLoss: bar.close * 0.5 }));
}
