"""Untrusted code: the RestrictedPython policy, the V8 runner, the worker process, hot reload."""
