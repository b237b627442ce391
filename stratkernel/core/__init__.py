"""The kernel: model, hookspecs, plugins, kernel loop, risk gate, portfolio, store, clock."""
