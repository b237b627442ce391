// expect: policy
// line: 3
const gen = Object.getPrototypeOf(function* () {}).constructor("yield 1");
function onBar(ctx, bar) {}
