# expect: policy
# line: 4
# import tricks: importlib, sys.modules
import importlib
def on_bar(ctx, bar):
    importlib.import_module("os")
