# expect: policy
# line: 6
# shared-module poisoning: replacing a function in a curated namespace
import math
def on_bar(ctx, bar):
    math.sqrt = lambda x: 0.0
