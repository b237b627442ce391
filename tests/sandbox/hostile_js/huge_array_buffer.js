// expect: runtime limit
function onBar(ctx, bar) { const a = new Uint8Array(2 ** 34); a.fill(1); }
