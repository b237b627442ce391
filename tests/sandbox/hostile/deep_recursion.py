# expect: runtime
# line: 4
def f(n):
    return f(n + 1)
def on_bar(ctx, bar):
    f(0)
