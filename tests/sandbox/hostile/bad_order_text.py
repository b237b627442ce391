# expect: runtime
# line: 4
def on_bar(ctx, bar):
    ctx.buy(1, stop_loss=bar.close * 0.9, tag="x" * 1000)
