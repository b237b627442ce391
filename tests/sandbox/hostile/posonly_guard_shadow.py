# expect: policy
# line: 5
# GHSA-ffg3-p8fm-mjx2 (RestrictedPython < 8.3): a positional-only parameter named like a guard hook
# shadowed the guard inside the function
def sneaky(_write_, /):
    d = {}
    d["x"] = 1
def on_bar(ctx, bar):
    sneaky(lambda o: o)
