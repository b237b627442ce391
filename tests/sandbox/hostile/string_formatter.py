# expect: policy
# line: 4
# GHSA-hp3v-5vw7-fx9w (RestrictedPython < 8.4): string.Formatter resolves fields with real getattr
import string
def on_bar(ctx, bar):
    ctx.log(string.Formatter().vformat("{0.__class__}", (ctx,), {}))
