// expect: ok
// a Proxy behind globalThis sees lookups of missing globals, never the glue's
let seen = 0;
try { Object.setPrototypeOf(globalThis, new Proxy({}, { get(t, k) { seen++; return undefined; } })); } catch (e) {}
function onBar(ctx, bar) {}
