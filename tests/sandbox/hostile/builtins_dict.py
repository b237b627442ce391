# expect: policy
# line: 3
opener = __builtins__["open"]
def on_bar(ctx, bar):
    pass
