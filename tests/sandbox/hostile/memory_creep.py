# expect: limit
# a slow leak across calls: 8 MiB more on every bar, kept alive in a module-level list
keep = []
def on_bar(ctx, bar):
    keep.append(b"x" * (8 * 1024 * 1024))
