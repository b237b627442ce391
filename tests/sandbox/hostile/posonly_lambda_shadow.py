# expect: policy
# line: 3
f = lambda _getattr_, /: (1).real
def on_bar(ctx, bar):
    f(lambda o, n: o)
