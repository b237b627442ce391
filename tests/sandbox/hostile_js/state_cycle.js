// expect: runtime
function onBar(ctx, bar) { const a = {}; a.self = a; ctx.state.a = a; }
