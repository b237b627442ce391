"""Risk configuration and the rule set the kernel's gate runs.

Every rule is configurable and denies with a stable reason code. This module builds the ordered rule
list from :class:`RiskConfig` plus rules contributed by plugins (``register_risk_rules``).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .gateway import MaxOrderQtyRule, Rule, StopLossRule, TradingStateRule, ValidateRule
from .model import TradingState


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


def describe(config: RiskConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")
