// expect: runtime
// line: 4
function onBar(ctx, bar) {
  ctx.indicator("no_such_indicator", 3);
}
