# expect: limit
def on_bar(ctx, bar):
    while True:
        pass
