// expect: policy
// line: 4
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const g = AsyncFunction("return 1");
function onBar(ctx, bar) {}
