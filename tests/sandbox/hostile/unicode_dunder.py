# expect: policy
# line: 5
# identifiers are NFKC-normalized by the parser: fullwidth letters spell "__class__" after all
def on_bar(ctx, bar):
    c = (1).__ｃｌａｓｓ__
