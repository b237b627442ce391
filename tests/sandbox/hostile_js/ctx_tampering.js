// expect: ok
// ctx, its position and params are frozen: writes are ignored and cannot change requests
function onBar(ctx, bar) {
  ctx.buy = function () { return "fake"; };
  ctx.position.qty = 1e9;
  ctx.params.qty = 1e9;
  try { Object.setPrototypeOf(ctx, { buy() { return "fake"; } }); } catch (e) { ctx.log("refused"); }
  if (typeof ctx.buy !== "function" || ctx.position.qty !== 0) throw new Error("ctx changed");
}
