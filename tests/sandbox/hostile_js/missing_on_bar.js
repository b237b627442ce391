// expect: load
function onbar(ctx, bar) {}
