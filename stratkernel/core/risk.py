"""Risk configuration, the rule set the kernel's gate runs, and the risk manager that keeps risk state.

Every rule is configurable and denies with a stable reason code. :class:`RiskManager` builds the
ordered rule list from :class:`RiskConfig` plus rules contributed by plugins (``register_risk_rules``),
and is told about fills and bars by the kernel so stateful rules (loss limits, cooldowns) can act.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .gateway import MaxOrderQtyRule, Rule, StopLossRule, TradingStateRule, ValidateRule
from .model import Bar, Fill, TradingState

if TYPE_CHECKING:
    from .kernel import Kernel


class RiskConfig(BaseModel):
    """Risk limits. Defaults are safe for a paper account; every value can be set in ``[risk]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Turn the whole gate off (benchmarks only; never live).")
    initial_state: TradingState = Field(TradingState.ACTIVE, description="Trading state at first start.")
    require_stop_loss: bool = Field(True, description="Opening orders must carry a stop_loss.")
    max_order_qty: float = Field(math.inf, gt=0, description="Maximum quantity of one order.")


def build_rules(config: RiskConfig, plugin_rules: list[Rule] | None = None) -> list[Rule]:
    rules: list[Rule] = [
        ValidateRule(),
        TradingStateRule(),
        StopLossRule(required=config.require_stop_loss),
        MaxOrderQtyRule(max_qty=config.max_order_qty),
    ]
    rules.extend(plugin_rules or [])
    return rules


class RiskManager:
    """Owns the rules and the risk state; the kernel calls it at fixed points.

    Call sites in the kernel: ``rules()`` at setup, ``on_fill`` for every new fill, ``on_bar`` for every
    bar when ``needs_bars`` is true (backtest and live), ``tick`` about every 250 ms live, ``snapshot``
    / ``restore`` for persistence (the kernel stores ``snapshot()`` in the ``risk_state`` table after
    any change reported by ``take_dirty``).
    """

    def __init__(self, config: RiskConfig, kernel: Kernel) -> None:
        self.config = config
        self.kernel = kernel
        self.needs_bars = False
        self._dirty = False

    def rules(self, plugin_rules: list[Rule]) -> list[Rule]:
        return build_rules(self.config, plugin_rules)

    def on_fill(self, fill: Fill) -> None:
        """Stateful rules learn about executions here (e.g. stop-loss hits for cooldowns)."""
        return None

    def on_bar(self, bar: Bar) -> None:
        """Mark-to-market checks (loss limits) run here when ``needs_bars`` is set."""
        return None

    async def tick(self) -> None:
        """Live housekeeping: recovery conditions, day boundaries."""
        return None

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None

    def take_dirty(self) -> bool:
        dirty, self._dirty = self._dirty, False
        return dirty

    def describe(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")
