# expect: policy
# line: 4
def on_bar(ctx, bar):
    rt = getattr(ctx, "_rt")
