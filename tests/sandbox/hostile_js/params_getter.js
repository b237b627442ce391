// expect: load
// PARAMS read by the glue once; a getter that throws is a load failure
const PARAMS = { get fast() { throw new Error("no"); } };
function onBar(ctx, bar) {}
