// expect: ok
function onBar(ctx, bar) { for (let i = 0; i < 5000; i++) ctx.log("x".repeat(100), i); }
