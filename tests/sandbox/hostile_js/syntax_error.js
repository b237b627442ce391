// expect: load
// line: 4
function onBar(ctx, bar) {
  ctx.log(;
}
