# expect: policy
# line: 8
# frames through a caught exception's traceback
def on_bar(ctx, bar):
    try:
        1 / 0
    except ZeroDivisionError as e:
        tb = e.__traceback__
        ctx.log(str(tb.tb_frame.f_back.f_globals))
