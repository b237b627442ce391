// expect: load
// line: 3
setTimeout(() => {}, 0);
function onBar(ctx, bar) {}
