// expect: runtime
// line: 4
function onBar(ctx, bar) {
  ctx.indicator("sma", {}.x === undefined ? NaN : 1);
}
