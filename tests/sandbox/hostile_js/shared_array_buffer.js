// expect: load
// line: 3
const sab = new SharedArrayBuffer(1024);
function onBar(ctx, bar) {}
