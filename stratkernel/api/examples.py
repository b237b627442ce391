"""Example response bodies for the OpenAPI document, keyed by (method, path).

Taken from a real ``stratkernel run`` (paper broker, synthetic data, ``sma_cross``). Request bodies
carry their examples on their pydantic models; these fill in the responses whose bodies are plain
JSON objects produced by the kernel facade.
"""

from __future__ import annotations

from typing import Any

_ORDER = {
    "id": "o-1795319024-1", "client_id": "sk-sma_cross-1", "strategy": "sma_cross", "symbol": "SYNTH-USD",
    "side": "buy", "qty": 1.0, "type": "market", "status": "filled", "filled_qty": 1.0, "avg_price": 101.08,
    "created_ts": 1795319024021, "updated_ts": 1795319024022,
}  # fmt: skip
_RISK: dict[str, Any] = {
    "state": {"trading_state": "halted", "reason": "news at 14:30"},
    "limits": {"enabled": True, "initial_state": "active", "require_stop_loss": True, "max_order_qty": None},
}
_JOB = {
    "id": "3f9a1c2b7d4e", "strategy": "sma_cross", "data": "synthetic:bars=5000", "params": {"fast": 5},
    "status": "done", "progress": 1.0, "error": None,
    "summary": {"bars": 5000, "orders": 71, "fills": 71, "trades": 35, "pnl": 0.68, "max_drawdown_pct": 0.41},
}  # fmt: skip
_STRATEGY = {
    "name": "my_sma", "ref": "user_strategies/my_sma.py", "kind": "script", "symbol": "SYNTH-USD",
    "version": "c88401bf7bb8", "status": "running", "params": {"fast": 10, "slow": 30}, "error": None,
}  # fmt: skip
_USER = {"username": "bob", "role": "viewer", "created_at": 1767225600, "disabled": False}
_KEY = {
    "id": "3f9a1c2b7d4e", "name": "dashboard", "owner": "alice", "role": "viewer", "created_at": 1767225600,
    "last_used_at": None, "revoked": False,
}  # fmt: skip

RESPONSE_EXAMPLES: dict[tuple[str, str], Any] = {
    ("POST", "/users"): {"user": _USER, "password": "Wa2vK7i3xEWn064O9d3kKlPz"},
    ("GET", "/auth/audit"): [
        {
            "ts": 1767225600,
            "actor": "admin",
            "action": "user.add",
            "target": "bob",
            "detail": {"role": "viewer"},
        }
    ],
    ("POST", "/apikeys"): {
        "key": _KEY,
        "secret": "sk_3f9a1c2b7d4e_R4kwFX_pAoGuHsNKgn2EmU36YKahMNddZi4CC3LJKaM",
    },
    ("GET", "/plugins"): {
        "loaded": [
            {"name": "paper", "distribution": "stratkernel"},
            {"name": "synthetic", "distribution": "stratkernel"},
        ],
        "failed": [
            {
                "plugin": "broken_broker",
                "distribution": "stratkernel-broken",
                "reason": "ImportError: no module named x",
            }
        ],
    },
    ("PUT", "/strategies/{name}/script"): {
        "name": "my_sma",
        "path": "user_strategies/my_sma.py",
        "version": "c88401bf7bb8",
    },
    ("POST", "/strategies/{name}/start"): _STRATEGY,
    ("POST", "/strategies/{name}/stop"): {**_STRATEGY, "status": "stopped"},
    ("PUT", "/strategies/{name}/params"): {**_STRATEGY, "params": {"fast": 8, "slow": 21}},
    ("GET", "/strategies/{name}/logs"): [{"ts": 1795319024021, "line": "bar 101.08"}],
    ("GET", "/orders"): [_ORDER],
    ("DELETE", "/orders/{order_id}"): {"cancelled": True, "order_id": "o-1795319024-2"},
    ("GET", "/fills"): [
        {
            "id": "f-1",
            "order_id": _ORDER["id"],
            "strategy": "sma_cross",
            "symbol": "SYNTH-USD",
            "side": "buy",
            "qty": 1.0,
            "price": 101.08,
            "fee": 0.1,
            "role": "taker",
            "ts": 1795319024022,
        }
    ],
    ("GET", "/positions"): [
        {
            "symbol": "SYNTH-USD",
            "qty": 1.0,
            "avg_price": 101.08,
            "realized_pnl": 0.30,
            "strategy": "sma_cross",
        }
    ],
    ("GET", "/equity"): [{"ts": 1795319024021, "equity": 100000.68, "cash": 99899.6}],
    ("GET", "/audit"): [
        {
            "id": 1,
            "ts": 1795319024021,
            "approved": False,
            "code": "stop_loss_missing",
            "rule": "stop_loss",
            "message": "an opening order must carry a stop_loss",
            "strategy": "",
            "source": "api:alice",
            "symbol": "SYNTH-USD",
            "side": "buy",
            "qty": 1.0,
            "order_id": "",
            "details": {},
        }
    ],
    ("GET", "/risk"): {**_RISK, "state": {"trading_state": "active", "reason": ""}},
    ("POST", "/risk/halt"): _RISK,
    ("POST", "/risk/resume"): {**_RISK, "state": {"trading_state": "active", "reason": "back to normal"}},
    ("POST", "/risk/flatten"): [
        {
            "approved": True,
            "code": "ok",
            "message": "",
            "rule": "",
            "details": {},
            "order_id": "o-1795319030-9",
        }
    ],
    ("PATCH", "/risk/limits"): {**_RISK, "limits": {**_RISK["limits"], "max_order_qty": 10}},
    ("GET", "/backtests"): [_JOB],
    ("POST", "/backtests"): {**_JOB, "status": "running", "progress": 0.0, "summary": None},
    ("GET", "/backtests/{job_id}"): _JOB,
    ("DELETE", "/backtests/{job_id}"): {**_JOB, "status": "cancelled", "progress": 0.42, "summary": None},
}
