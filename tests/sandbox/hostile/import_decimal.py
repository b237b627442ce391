# expect: policy
# line: 4
# host state (the decimal context, the global random generator) is out of reach
import decimal
import random
def on_bar(ctx, bar):
    decimal.getcontext().prec = 1
    random.seed(1)
