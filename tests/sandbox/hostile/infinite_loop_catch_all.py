# expect: limit
# catches everything it can and keeps looping: only a kill from outside stops it
def on_bar(ctx, bar):
    n = 0
    while True:
        try:
            n = n + 1
        except Exception:
            pass
