# expect: policy
# line: 6
# type.__dict__ / chr()-built names: the dunder never gets through
def on_bar(ctx, bar):
    name = chr(95) * 2 + "dict" + chr(95) * 2
    d = ctx.params.__dict__
