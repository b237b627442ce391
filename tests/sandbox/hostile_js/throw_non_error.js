// expect: runtime
function onBar(ctx, bar) { throw { stack: "script.js:999:1", toString() { throw new Error("no"); } }; }
