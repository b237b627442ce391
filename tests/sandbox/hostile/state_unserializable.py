# expect: runtime
def on_bar(ctx, bar):
    ctx.state["fn"] = on_bar
