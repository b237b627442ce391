// expect: runtime
function onBar(ctx, bar) { ctx.state.n = 10n; }
