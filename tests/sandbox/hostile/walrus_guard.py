# expect: policy
# line: 4
def on_bar(ctx, bar):
    if (_getattr_ := getattr):
        pass
