# expect: policy
# line: 6
# a curated function's __self__ would be the real module if it were reachable
import math
def on_bar(ctx, bar):
    m = math.sqrt.__self__
