// expect: policy
// line: 4
function onBar(ctx, bar) {
  eval("ctx.buy(1)");
}
