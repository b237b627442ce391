// expect: limit
function onStart(ctx) { let i = 0; while (i >= 0) { i = (i + 1) % 7; } }
function onBar(ctx, bar) {}
