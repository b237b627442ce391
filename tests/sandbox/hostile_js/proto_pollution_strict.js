// expect: runtime
// line: 5
"use strict";
function onBar(ctx, bar) {
  Array.prototype.toJSON = function () { return "x"; };
}
