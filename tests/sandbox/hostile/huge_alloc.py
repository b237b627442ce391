# expect: limit
def on_bar(ctx, bar):
    a = [0] * (10 ** 10)
