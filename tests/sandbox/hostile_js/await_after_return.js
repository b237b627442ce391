// expect: policy
async function onBar(ctx, bar) {
  await null;
  ctx.log("after the await");
}
