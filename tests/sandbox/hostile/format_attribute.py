# expect: policy
# line: 4
# GHSA (RestrictedPython): str.format reaches attributes: "{0.__class__}".format(x)
leak = "{0.__class__.__mro__}".format(1)
def on_bar(ctx, bar):
    pass
