# expect: policy
# line: 4
# fork bomb attempt
import os
def on_bar(ctx, bar):
    while True:
        os.fork()
