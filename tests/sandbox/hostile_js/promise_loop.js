// expect: limit
// a microtask loop: it runs before the call returns, inside the call's time budget
function onBar(ctx, bar) {
  const spin = () => Promise.resolve().then(spin);
  spin();
}
