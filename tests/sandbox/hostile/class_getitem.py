# expect: policy
# line: 5
# type subscripting (__class_getitem__ / GenericAlias objects)
def on_bar(ctx, bar):
    alias = list[int]
    ctx.log(str(alias))
