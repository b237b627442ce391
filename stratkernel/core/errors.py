"""Every exception stratkernel raises on purpose.

One base class, so ``except StratkernelError`` catches everything the runtime means to raise and
nothing it doesn't. The hierarchy::

    StratkernelError
    ├── ConfigError            a configuration value is wrong (names the field and what is allowed)
    ├── ValidationError        data entering the kernel is refused (names the field and the value);
    │                          also a ValueError, so generic callers can catch it as one
    ├── PluginError            a plugin failed to load or to register something
    │   └── DuplicateNameError two plugins registered the same kind/name
    ├── StrategyError          a strategy (plugin or user script) failed; carries kind, message, line
    │                          kind is one of: "load", "runtime", "limit", "policy"
    ├── BrokerError            a broker plugin could not do what was asked
    │   ├── BrokerConnectionError   the venue is unreachable (network, terminal gone); retryable
    │   └── OrderRejectedError      the venue refused an order (insufficient funds, invalid order...)
    ├── StoreError             the SQLite store is unusable (wrong schema version, corrupt file)
    └── AuthError              a credential or token is refused (API)

A risk-gate *denial* is not an exception: it is a :class:`~stratkernel.core.model.Decision` value
with a reason code, returned to the caller and written to the audit log.
"""

from __future__ import annotations

from typing import Any, Literal

StrategyErrorKind = Literal["load", "runtime", "limit", "policy"]


class StratkernelError(Exception):
    """Base class of every error stratkernel raises on purpose."""


class ConfigError(StratkernelError):
    """A configuration value is missing or not allowed."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"config {field}: {message}")


class ValidationError(StratkernelError, ValueError):
    """Data entering the kernel was refused.

    ``field`` and ``value`` say exactly what was wrong, so the message can be shown to the person or
    program that sent it.
    """

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field = field
        self.value = value
        self.reason = message
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}={shown}: {message}")


class PluginError(StratkernelError):
    """A plugin failed to import, has a wrong hook, or registered something invalid."""

    def __init__(self, plugin: str, message: str, distribution: str | None = None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.reason = message
        where = f"{plugin} ({distribution})" if distribution else plugin
        super().__init__(f"plugin {where}: {message}")


class DuplicateNameError(PluginError):
    """Two plugins registered the same name for the same kind of component."""


class StrategyError(StratkernelError):
    """A strategy failed. ``kind`` is load, runtime, limit or policy; ``line`` is the script's line."""

    def __init__(
        self,
        kind: StrategyErrorKind,
        message: str,
        *,
        line: int | None = None,
        strategy: str | None = None,
    ) -> None:
        self.kind = kind
        self.message = message
        self.line = line
        self.strategy = strategy
        where = f" (line {line})" if line is not None else ""
        who = f"{strategy}: " if strategy else ""
        super().__init__(f"{who}{kind} error{where}: {message}")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "line": self.line, "strategy": self.strategy}


class BrokerError(StratkernelError):
    """A broker plugin could not do what was asked."""


class BrokerConnectionError(BrokerError):
    """The venue is unreachable; the operation may be retried."""


class OrderRejectedError(BrokerError):
    """The venue refused an order. ``code`` is a stable reason code such as ``insufficient_funds``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class StoreError(StratkernelError):
    """The store cannot be used (schema from a newer version, corrupt file)."""


class AuthError(StratkernelError):
    """A credential or token was refused."""
