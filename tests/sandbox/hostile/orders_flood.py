# expect: limit
# line: 6
# more order requests in one callback than allowed
def on_bar(ctx, bar):
    for i in range(50):
        ctx.buy(1, stop_loss=bar.close * 0.9)
