# expect: policy
# line: 3
from operator import attrgetter
def on_bar(ctx, bar):
    ctx.log(attrgetter("_rt")(ctx))
