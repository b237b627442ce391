# expect: policy
# line: 4
# classes are refused outright (descriptors, __getattr__, __class_getitem__ start there)
class Bar2:
    def value(self):
        return 1
def on_bar(ctx, bar):
    pass
