// expect: limit
for (;;) {}
function onBar(ctx, bar) {}
