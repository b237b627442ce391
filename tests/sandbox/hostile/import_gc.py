# expect: policy
# line: 3
import gc
def on_bar(ctx, bar):
    ctx.log(str(gc.get_objects()[0]))
