// expect: runtime
// line: 4
function f(n) {
  return f(n + 1) + 1;
}
function onBar(ctx, bar) { f(0); }
