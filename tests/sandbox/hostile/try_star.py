# expect: policy
# line: 5
# GHSA (RestrictedPython): try/except* exposes exception groups
def on_bar(ctx, bar):
    try:
        pass
    except* ValueError:
        pass
