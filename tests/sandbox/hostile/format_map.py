# expect: policy
# line: 5
# str.format_map with an attribute field
def on_bar(ctx, bar):
    ctx.log("{a.__class__}".format_map({"a": ctx}))
