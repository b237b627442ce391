// expect: policy
// line: 4
function onBar(ctx, bar) {
  (function () {}).constructor("return 1")();
}
