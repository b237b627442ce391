# expect: policy
# line: 4
def on_bar(ctx, bar):
    os = __import__("os")
    os.system("id")
