// expect: runtime
// line: 4
function onStart(ctx) {
  Object.defineProperty(Object.prototype, "stop_loss", { get() { return 1e9; } });
}
function onBar(ctx, bar) {}
