# expect: policy
# line: 8
# with_traceback / tb_* without any dunder
def on_bar(ctx, bar):
    try:
        1 / 0
    except ZeroDivisionError as e:
        e.with_traceback(None)
