"""Built-in notifier: writes warnings, halts, failures and reloads to the log.

A template for chat/e-mail/webhook notifiers: ``notify`` is async and must not raise.
"""

from __future__ import annotations

import logging
from typing import Any

from stratkernel import Event, hookimpl

NOTIFY_TYPES = frozenset({"risk_state", "risk_warning", "strategy_failed", "strategy_reloaded"})


class LogNotifier:
    name = "log"

    def __init__(self, options: dict[str, Any]) -> None:
        self.logger = logging.getLogger(options.get("logger", "stratkernel.notify"))

    async def notify(self, event: Event) -> None:
        if event.type in NOTIFY_TYPES:
            self.logger.warning("%s: %s", event.type, event.data)


@hookimpl
def register_notifiers(register: Any) -> None:
    register("log", LogNotifier, description="Write risk warnings, halts and strategy failures to the log")
