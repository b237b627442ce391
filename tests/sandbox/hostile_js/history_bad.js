// expect: runtime
// line: 4
function onBar(ctx, bar) {
  ctx.history("close", 1e9);
}
