// expect: load
// line: 3
const reg = new FinalizationRegistry(() => {});
function onBar(ctx, bar) {}
