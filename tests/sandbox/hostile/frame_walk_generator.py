# expect: policy
# line: 6
# GHSA (RestrictedPython): walking generator frames, gen.gi_frame.f_back.f_globals
def on_bar(ctx, bar):
    g = (x for x in [1, 2])
    f = g.gi_frame.f_back.f_globals
    ctx.log(str(f))
