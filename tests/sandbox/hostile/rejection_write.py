# expect: policy
# line: 4
def on_reject(ctx, rejection):
    rejection["code"] = "ok"
def on_bar(ctx, bar):
    pass
