# expect: limit
def on_bar(ctx, bar):
    s = "x" * (2 ** 34)
