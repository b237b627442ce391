# expect: policy
# line: 3
_getattr_ = lambda o, n: 1
def on_bar(ctx, bar):
    pass
