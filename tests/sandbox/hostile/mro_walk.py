# expect: policy
# line: 4
def on_bar(ctx, bar):
    base = ValueError.mro()[-1]
