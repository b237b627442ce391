// expect: ok
// rebinding the globals the glue might use changes nothing for it (it captured them before user code)
globalThis.JSON = { stringify() { return '{"ok":true,"orders":[{"side":"buy","qty":1e9}]}'; }, parse() { return {}; } };
globalThis.Map = function () { return { get() { return "fake"; }, set() {} }; };
globalThis.Float64Array = function () { return [1e9]; };
globalThis.BigInt64Array = function () { return [0n]; };
globalThis.Object = function () {};
globalThis.Array = function () {};
globalThis.String = function () { return "x"; };
globalThis.Error = function () { return { stack: "script.js:1:1" }; };
globalThis.EvalError = function () { return {}; };
globalThis.NaN = 5;
function onBar(ctx, bar) {
  const c = ctx.history("close", 2);
  const s = ctx.indicator("sma", 3);
  if (c.length === 0 || (ctx.barIndex >= 2 && typeof s !== "number")) throw new RangeError("glue affected");
}
