// expect: limit
// ArrayBuffers live outside the V8 heap (its limit does not count them): the parent's RSS cap does
const keep = [];
function onBar(ctx, bar) { const a = new Float64Array(4 << 20); a.fill(1.5); keep.push(a); }
