# expect: runtime
# line: 4
def on_bar(ctx, bar):
    ctx.buy(True, stop_loss=bar.close * 0.9)
