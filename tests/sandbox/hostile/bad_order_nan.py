# expect: runtime
# line: 4
def on_bar(ctx, bar):
    ctx.buy(float("nan"), stop_loss=bar.close * 0.9)
