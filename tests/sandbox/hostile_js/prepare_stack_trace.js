// expect: ok
// V8's stack-trace hooks would hand out the glue's functions; Error is frozen, so they cannot be set
Error.prepareStackTrace = (e, frames) => frames.map((f) => f.getFunction());
Error.stackTraceLimit = 0;
function onBar(ctx, bar) {
  const s = new Error("x").stack;
  if (typeof s !== "string") throw new Error("prepareStackTrace took effect");
}
