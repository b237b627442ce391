# expect: ok
# logs and prints are capped per call (lines and bytes), not fatal
def on_bar(ctx, bar):
    for i in range(10000):
        ctx.log("x" * 100000)
        print("flood", i)
