# expect: ok
# f-strings with !r and nested format specs only call repr()/format() on values: harmless
def on_bar(ctx, bar):
    width = 12
    ctx.log(f"{bar.close!r} {bar.close:{width}.3f} {ctx.symbol!s:>{width}}")
