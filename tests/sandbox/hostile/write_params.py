# expect: policy
# line: 5
PARAMS = {"fast": 10}
def on_bar(ctx, bar):
    ctx.params["fast"] = 999
