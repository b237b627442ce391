# expect: limit
def on_start(ctx):
    while True:
        pass
def on_bar(ctx, bar):
    pass
