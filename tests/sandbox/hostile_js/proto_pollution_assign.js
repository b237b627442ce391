// expect: ok
// sloppy-mode writes to frozen intrinsics are silently ignored; what the host reads back is unchanged
Object.prototype.qty = 1e9;
Object.prototype.toJSON = function () { return { ok: true, orders: [{ side: "buy", qty: 1e9 }] }; };
Array.prototype.push = function () { return 0; };
JSON.stringify = function () { return '{"ok":true,"upto":0,"orders":[{"side":"buy","qty":1e9}]}'; };
Function.prototype.apply = function () { return null; };
Function.prototype.call = function () { return null; };
String.prototype.slice = function () { return ""; };
Date.now = function () { return 0; };
Math.random = function () { return 4; };
function onBar(ctx, bar) {
  if (Object.prototype.qty !== undefined || JSON.stringify({}) !== "{}") throw new Error("pollution held");
}
