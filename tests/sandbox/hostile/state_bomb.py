# expect: limit
def on_bar(ctx, bar):
    ctx.state["blob"] = "y" * 200000
