// expect: ok
// between two calls the glue is idle, but it still wants a key the script cannot know
const names = Object.getOwnPropertyNames(globalThis).filter((n) => n.startsWith("__sk_"));
let tried = 0;
function onBar(ctx, bar) {
  const glue = globalThis[names[0]];
  Promise.resolve().then(() => { try { glue("guess", "params", '{"qty": 1e9}'); } catch (e) { tried++; } });
  if (String(glue).indexOf("native code") < 0) throw new Error("glue source readable");
  if (ctx.params.qty !== undefined) throw new Error("params replaced");
}
