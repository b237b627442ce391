# expect: runtime
# line: 4
def on_bar(ctx, bar):
    ctx.sell(1e300, stop_loss=bar.close * 1.1)
