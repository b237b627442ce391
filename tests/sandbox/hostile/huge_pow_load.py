# expect: limit
x = 10 ** 10 ** 9
def on_bar(ctx, bar):
    pass
