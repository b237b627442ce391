"""Kernel events: what happened, as plain data, for the store, the API stream, notifiers and plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = frozenset(
    {
        "order",  # an order changed status (accepted, filled, cancelled, rejected)
        "fill",  # an execution
        "denial",  # the risk gate refused a request
        "risk_state",  # trading state changed (ACTIVE / REDUCING / HALTED), with the reason
        "risk_warning",  # a loss limit is at 80% or 90%
        "strategy_failed",  # a strategy or script was stopped with a StrategyError
        "strategy_reloaded",  # a script was reloaded (or a reload was refused)
        "strategy_log",  # ctx.log output
        "kernel",  # start, stop, reconcile
        "heartbeat",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    ts: int
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "ts": self.ts, "data": self.data}
