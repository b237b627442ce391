# expect: policy
# line: 4
# lambda default arguments evaluated in the defining scope
f = lambda g=globals: g()
def on_bar(ctx, bar):
    f()
