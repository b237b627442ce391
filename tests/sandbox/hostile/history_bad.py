# expect: runtime
# line: 4
def on_bar(ctx, bar):
    ctx.history("close", 10 ** 9)
