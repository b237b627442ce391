# expect: policy
# line: 4
def on_bar(ctx, bar):
    raise SystemExit(0)
