# expect: limit
# catching the limit error does not make it go away, and no order reaches the kernel
def on_bar(ctx, bar):
    for i in range(50):
        try:
            ctx.buy(1, stop_loss=bar.close * 0.9)
        except Exception:
            pass
