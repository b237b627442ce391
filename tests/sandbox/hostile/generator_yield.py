# expect: policy
# line: 4
def gen():
    yield 1
def on_bar(ctx, bar):
    pass
