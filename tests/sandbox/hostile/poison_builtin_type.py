# expect: policy
# line: 4
def on_bar(ctx, bar):
    str.upper = lambda s: "pwned"
