# expect: ok runtime
# a codec lookup imports a module lazily: the worker can no longer open files, so it fails contained
def on_bar(ctx, bar):
    ctx.log(str("abc".encode("cp1006")))
