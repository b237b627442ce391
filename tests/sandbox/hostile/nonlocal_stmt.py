# expect: policy
# line: 6
def on_bar(ctx, bar):
    x = 1
    def inner():
        nonlocal x
        x = 2
