// expect: limit
// catching the refusal does not clear it
function onBar(ctx, bar) {
  for (let i = 0; i < 1000; i++) { try { ctx.buy(1, { stopLoss: bar.close * 0.9 }); } catch (e) {} }
}
