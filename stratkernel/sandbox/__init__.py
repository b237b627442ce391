"""Untrusted code: the RestrictedPython policy, the V8 runner, the worker process, hot reload.

``from stratkernel.sandbox import ScriptHost, SandboxLimits, CallResult`` (loaded lazily: the sandbox
worker imports modules of this package and must not pull in the kernel or numpy).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CallResult", "IndicatorProvider", "SandboxLimits", "ScriptHost"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import host

        return getattr(host, name)
    raise AttributeError(f"module 'stratkernel.sandbox' has no attribute {name!r}")
