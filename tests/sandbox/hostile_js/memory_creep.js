// expect: limit
// the V8 heap grows by ~8 MiB a bar, kept alive at top level
const keep = [];
function onBar(ctx, bar) { keep.push(new Array(1 << 20).fill(bar.close + keep.length)); }
