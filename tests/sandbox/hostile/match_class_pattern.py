# expect: policy
# line: 4
def on_bar(ctx, bar):
    match bar:
        case tuple(real=r):
            ctx.log(r)
