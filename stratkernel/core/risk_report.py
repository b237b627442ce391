"""Human-readable lines for the persisted risk state (``stratkernel risk show``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _when(ms: Any) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _money(v: Any) -> str:
    return "-" if v is None else f"{float(v):,.2f}"


def state_lines(state: dict[str, Any]) -> list[str]:
    """The loss-limit baselines, peak and lock, and the cooldowns and locks per symbol."""
    out: list[str] = []
    if state.get("halt_kind"):
        out.append(
            f"  halt kind: {state['halt_kind']} (resuming it needs the operator/admin unless a recovery "
            "condition is configured)"
        )
    loss = state.get("loss") or {}
    if loss:
        out.append(
            f"  day baseline: {_money(loss.get('day_base'))} since {_when(loss.get('day_start'))}, "
            f"next day at {_when(loss.get('next_day'))}"
        )
        out.append(
            f"  week baseline: {_money(loss.get('week_base'))} since {_when(loss.get('week_start'))}, "
            f"next week at {_when(loss.get('next_week'))}"
        )
        out.append(f"  equity peak: {_money(loss.get('peak'))}")
        for metric, level in sorted((loss.get("warned") or {}).items()):
            out.append(f"  warned: {metric} at {float(level) * 100:.0f}% of its limit")
        lock = loss.get("lock")
        if lock:
            until = _when(lock.get("until")) if lock.get("until") else "an operator's resume"
            out.append(f"  LOSS LOCK: {lock.get('reason')} (since {_when(lock.get('since'))}; until {until})")
    cd = state.get("cooldowns") or {}
    if cd.get("global_until"):
        out.append(f"  all entries locked until {_when(cd['global_until'])}")
    for sym, st in sorted((cd.get("symbols") or {}).items()):
        line = f"  {sym}: last stop-loss {_when(st.get('last_ts'))}"
        if st.get("locked_until"):
            line += f", locked until {_when(st['locked_until'])}"
        out.append(line)
    other = {
        k: v
        for k, v in state.items()
        if k not in ("trading_state", "state_reason", "halt_kind", "loss", "cooldowns")
    }
    out.extend(f"  {k}: {v}" for k, v in other.items())
    return out
