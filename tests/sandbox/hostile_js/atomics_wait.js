// expect: runtime
// line: 4
function onBar(ctx, bar) {
  Atomics.wait(new Int32Array(4), 0, 0, 100000);
}
