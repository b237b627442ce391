# expect: policy
# line: 4
# decorators run arbitrary callables at definition time
@ctx_factory
def on_bar(ctx, bar):
    pass
