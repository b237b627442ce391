# expect: policy
# line: 3
class Evil(metaclass=abs):
    pass
def on_bar(ctx, bar):
    pass
