// expect: load
// line: 3
null.x;
function onBar(ctx, bar) {}
