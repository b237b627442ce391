// expect: limit
function onBar(ctx, bar) {
  while (true) {}
}
