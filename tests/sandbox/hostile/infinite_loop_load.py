# expect: limit
# runs forever at load time: killed by the parent on the load budget
while True:
    pass
def on_bar(ctx, bar):
    pass
