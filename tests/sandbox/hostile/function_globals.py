# expect: policy
# line: 5
# reaching the module globals (and the guards) through a function
def on_bar(ctx, bar):
    g = on_bar.__globals__
