"""Render the configuration reference (docs/configuration.md) from the typed config models.

``python -m stratkernel.core.configdoc > docs/configuration.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from .config import ApiSection, BrokerConfig, DataConfig, KernelConfig, SandboxConfig, StrategyConfig
from .risk import RiskConfig

HEADER = """# Configuration reference

Generated from the typed models in `stratkernel/core/config.py` and `stratkernel/core/risk.py`
(`python -m stratkernel.core.configdoc > docs/configuration.md`; a test keeps it in sync).

Settings come from `stratkernel.toml` in the working directory (or `--config FILE`) and from the
environment: prefix `STRATKERNEL_`, `__` between levels, e.g. `STRATKERNEL_RISK__MAX_ORDER_QTY=5`.
The environment wins over the file. Unknown keys are refused, so a typo never silently does nothing.
Secrets (exchange keys, the MT5 password, the JWT secret) are never read from this file: see the
broker docs and docs/api.md.
"""


def _default(field: Any) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(table below)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "`" + json.dumps([v.model_dump(mode="json", exclude_defaults=True) for v in value]) + "`"
    try:
        return "`" + json.dumps(value, default=str) + "`"
    except TypeError:
        return f"`{value!r}`"


def _table(title: str, model: type[BaseModel]) -> str:
    lines = [f"\n## {title}\n", "| key | default | meaning |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {_default(field)} | {desc} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    parts = [HEADER]
    parts.append(_table("Top level", KernelConfig))
    parts.append(_table("[data]", DataConfig))
    parts.append(_table("[broker]", BrokerConfig))
    parts.append(_table("[[strategies]] (one table per strategy instance)", StrategyConfig))
    parts.append(_table("[risk] (every rule: docs/risk.md)", RiskConfig))
    parts.append(_table("[sandbox]", SandboxConfig))
    parts.append(_table("[api] (more API settings: docs/api.md)", ApiSection))
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
