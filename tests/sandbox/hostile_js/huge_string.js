// expect: runtime limit
function onBar(ctx, bar) { let s = "x"; for (;;) s = s + s; }
