# expect: limit
# C-level work no in-process timeout can interrupt
def on_bar(ctx, bar):
    x = 10 ** 10 ** 8
