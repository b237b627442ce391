# expect: runtime
# line: 4
def on_bar(ctx, bar):
    v = ctx.indicator("sma", [1, 2, 3])
