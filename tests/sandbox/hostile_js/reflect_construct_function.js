// expect: policy
// line: 3
const f = Reflect.construct(Function, ["return 1"]);
function onBar(ctx, bar) {}
