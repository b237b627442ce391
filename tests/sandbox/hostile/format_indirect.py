# expect: policy
# line: 6
# getting at str.format without writing ".format" after a literal
def on_bar(ctx, bar):
    s = str
    f = s.format
    ctx.log(f("{0.__init__.__globals__}", ctx))
