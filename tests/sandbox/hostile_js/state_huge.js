// expect: limit
function onBar(ctx, bar) { ctx.state.big = "x".repeat(200000); }
