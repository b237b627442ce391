# expect: policy
# line: 3
classes = ().__class__.__bases__[0].__subclasses__()
def on_bar(ctx, bar):
    pass
