# expect: runtime limit
# C-level recursion in repr() of a deeply nested list
def on_bar(ctx, bar):
    x = []
    for i in range(1000000):
        x = [x]
    ctx.log(repr(x))
