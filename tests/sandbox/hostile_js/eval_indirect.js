// expect: policy
// line: 3
const e = (0, globalThis["ev" + "al"])("1 + 1");
function onBar(ctx, bar) {}
