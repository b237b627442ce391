# expect: runtime
# line: 4
def on_bar(ctx, bar):
    raise ValueError("x" * 10000000)
