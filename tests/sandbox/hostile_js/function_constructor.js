// expect: policy
// line: 4
function onBar(ctx, bar) {
  const f = new Function("return globalThis")();
}
