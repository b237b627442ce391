# expect: policy
# line: 4
def on_bar(ctx, bar):
    ctx._rt.orders.append({"side": "buy", "qty": 1})
