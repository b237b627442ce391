# expect: runtime
# line: 4
def on_bar(ctx, bar):
    v = ctx.indicator("no_such_indicator", 14)
