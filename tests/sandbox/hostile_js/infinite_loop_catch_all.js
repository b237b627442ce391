// expect: limit
// catching everything does not help: the termination cannot be caught
function onBar(ctx, bar) {
  for (;;) { try { while (true) {} } catch (e) {} finally { continue; } }
}
