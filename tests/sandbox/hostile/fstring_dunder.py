# expect: policy
# line: 4
def on_bar(ctx, bar):
    ctx.log(f"{ctx.__class__}")
