# expect: policy
# line: 4
def on_bar(ctx, bar):
    eval("1 + 1")
