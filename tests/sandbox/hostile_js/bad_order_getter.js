// expect: runtime
// line: 6
// a getter that answers differently on every read: the glue reads each option once
let reads = 0;
function onBar(ctx, bar) {
  ctx.buy(1, { get stopLoss() { reads++; return reads === 1 ? -5 : bar.close * 0.9; } });
}
