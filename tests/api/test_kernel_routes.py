"""Kernel routes against a real live kernel (paper broker, synthetic data, SQLite store) via its facade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stratkernel.core.config import KernelConfig
from stratkernel.core.runtime import Runtime

from .conftest import Api

GOOD_SCRIPT = """
PARAMS = {"qty": {"default": 1.0, "min": 0.1, "max": 10.0}}

def on_bar(ctx, bar):
    ctx.log("bar " + str(bar.close))
"""

BROKEN_SCRIPT = """
def on_bar(ctx, bar):
    return ctx.position.qty +
"""


@pytest.fixture
async def kapi(tmp_path: Path, api_factory: Any) -> AsyncIterator[tuple[Api, Runtime]]:
    cfg = KernelConfig(data_dir=str(tmp_path / "k"), sandbox={"scripts_dir": str(tmp_path / "scripts")})
    runtime = Runtime(cfg)
    kernel = await runtime.start()
    # Users live in the kernel's own database file, next to its tables.
    api: Api = await api_factory(service=runtime.service, db_path=cfg.db_path)
    try:
        yield api, runtime
    finally:
        await kernel.shutdown()
        await runtime._close()


async def test_viewer_reads_everything(kapi: tuple[Api, Runtime]) -> None:
    api, _ = kapi
    h = await api.bearer("vic")
    for path in [
        "/status",
        "/plugins",
        "/strategies",
        "/positions",
        "/risk",
        "/orders",
        "/fills",
        "/equity",
        "/audit",
        "/backtests",
        "/strategies/sma_cross/logs",
    ]:
        r = await api.client.get(path, headers=h)
        assert r.status_code == 200, (path, r.text)
    strategies = (await api.client.get("/strategies", headers=h)).json()
    assert strategies[0]["name"] == "sma_cross" and strategies[0]["status"] == "running"
    assert len(strategies[0]["version"]) > 0
    risk = (await api.client.get("/risk", headers=h)).json()
    assert risk["state"]["trading_state"] == "active"
    # An unlimited limit (inf in the kernel) is valid JSON: null.
    assert risk["limits"]["max_order_qty"] is None  # the default is unlimited


async def test_manual_orders_pass_the_risk_gate(kapi: tuple[Api, Runtime]) -> None:
    api, _runtime = kapi
    h_tom = await api.bearer("tom")
    r = await api.client.post("/orders", headers=h_tom, json={"side": "buy", "qty": 1.0})
    assert r.status_code == 200
    decision = r.json()
    assert decision["approved"] is False and decision["code"] == "stop_loss_missing"
    audit = (await api.client.get("/audit", headers=h_tom, params={"denied_only": True})).json()
    assert audit[0]["source"] == "api:tom" and audit[0]["code"] == "stop_loss_missing"


@pytest.mark.parametrize(
    "body",
    [
        {"side": "buy", "qty": -1},
        {"side": "buy", "qty": "1"},
        {"side": "hold", "qty": 1},
        {"side": "buy", "qty": 1e300},
        {"side": "buy", "qty": 1, "type": "limit", "limit_price": 0},
        {"side": "buy", "qty": 1, "leverage": 100},
        {"side": "buy", "qty": 1, "symbol": "x" * 100},
    ],
)
async def test_bad_orders_are_refused_before_the_gate(
    kapi: tuple[Api, Runtime], body: dict[str, Any]
) -> None:
    api, _runtime = kapi
    h_tom = await api.bearer("tom")
    before = (await api.client.get("/audit", headers=h_tom)).json()
    r = await api.client.post("/orders", headers=h_tom, json=body)
    assert r.status_code == 422
    assert r.json()["error"]["code"] in {"validation_error", "invalid_value"}
    assert (await api.client.get("/audit", headers=h_tom)).json() == before


async def test_viewer_cannot_trade_or_halt_and_nothing_changes(kapi: tuple[Api, Runtime]) -> None:
    api, runtime = kapi
    h_vic = await api.bearer("vic")
    audit_before = (await api.client.get("/audit", headers=h_vic)).json()
    for method, path, body in [
        ("POST", "/orders", {"side": "buy", "qty": 1.0, "stop_loss": 1.0}),
        ("POST", "/risk/halt", {"reason": "x"}),
        ("POST", "/risk/flatten", {"reason": "x"}),
        ("POST", "/strategies/sma_cross/stop", None),
        ("PUT", "/strategies/evil/script", {"source": GOOD_SCRIPT}),
        ("POST", "/backtests", {"strategy": "sma_cross", "data": "synthetic:bars=100"}),
    ]:
        r = await api.client.request(method, path, headers=h_vic, json=body)
        assert r.status_code == 403, (path, r.text)
    assert runtime.kernel is not None
    assert runtime.kernel.trading_state.value == "active"
    assert runtime.kernel.slots["sma_cross"].status == "running"
    assert "evil" not in runtime.kernel.slots
    assert (await api.client.get("/audit", headers=h_vic)).json() == audit_before


async def test_halt_by_trader_resume_by_admin_only(kapi: tuple[Api, Runtime]) -> None:
    api, runtime = kapi
    h_tom, h_ada = await api.bearer("tom"), await api.bearer("ada")
    r = await api.client.post("/risk/halt", headers=h_tom, json={"reason": "news"})
    assert r.status_code == 200 and r.json()["state"]["trading_state"] == "halted"
    assert (await api.client.post("/risk/resume", headers=h_tom, json={"reason": "go"})).status_code == 403
    assert runtime.kernel is not None and runtime.kernel.trading_state.value == "halted"
    r = await api.client.post("/risk/resume", headers=h_ada, json={"reason": "go"})
    assert r.status_code == 200 and r.json()["state"]["trading_state"] == "active"


async def test_limits_change_is_admin_only_and_validated(kapi: tuple[Api, Runtime]) -> None:
    api, _runtime = kapi
    h_tom, h_ada = await api.bearer("tom"), await api.bearer("ada")
    assert (
        await api.client.patch("/risk/limits", headers=h_tom, json={"changes": {"max_order_qty": 5}})
    ).status_code == 403
    r = await api.client.patch("/risk/limits", headers=h_ada, json={"changes": {"max_order_qty": 5}})
    assert r.status_code == 200, r.text
    assert r.json()["limits"]["max_order_qty"] == 5
    r = await api.client.patch("/risk/limits", headers=h_ada, json={"changes": {"no_such_limit": 5}})
    assert r.status_code == 422


async def test_strategy_lifecycle_and_unknown_names(kapi: tuple[Api, Runtime]) -> None:
    api, _ = kapi
    h = await api.bearer("tom")
    r = await api.client.post("/strategies/sma_cross/stop", headers=h)
    assert r.status_code == 200 and r.json()["status"] != "running"
    r = await api.client.put(
        "/strategies/sma_cross/params", headers=h, json={"params": {"fast": 5, "slow": 20}}
    )
    assert r.status_code == 200 and r.json()["params"]["fast"] == 5
    r = await api.client.post("/strategies/nope/stop", headers=h)
    assert r.status_code == 404
    r = await api.client.post("/strategies/bad name/stop", headers=h)
    assert r.status_code in (404, 422)


async def test_script_upload_is_validated_in_the_sandbox(kapi: tuple[Api, Runtime], tmp_path: Path) -> None:
    api, _runtime = kapi
    h = await api.bearer("tom")
    r = await api.client.put("/strategies/broken/script", headers=h, json={"source": BROKEN_SCRIPT})
    assert r.status_code == 422, r.text
    assert "line" in r.json()["error"]["message"]
    assert not (tmp_path / "scripts" / "broken.py").exists()
    r = await api.client.put("/strategies/mine/script", headers=h, json={"source": GOOD_SCRIPT})
    assert r.status_code == 201, r.text
    assert (tmp_path / "scripts" / "mine.py").read_text() == GOOD_SCRIPT
    names = [s["name"] for s in (await api.client.get("/strategies", headers=h)).json()]
    assert "mine" in names


async def test_backtest_job_runs_to_a_result(kapi: tuple[Api, Runtime]) -> None:
    api, _ = kapi
    h = await api.bearer("tom")
    r = await api.client.post(
        "/backtests", headers=h, json={"strategy": "sma_cross", "data": "synthetic:bars=500"}
    )
    assert r.status_code == 202, r.text
    job = r.json()
    for _ in range(600):
        info = (await api.client.get(f"/backtests/{job['id']}", headers=h)).json()
        if info["status"] != "running":
            break
        await asyncio.sleep(0.1)
    assert info["status"] == "done", info
    assert info["summary"]["bars"] == 500
    for bad in (
        {"strategy": "../etc/x.py", "data": "synthetic"},
        {"strategy": "sma_cross", "data": "/etc/passwd"},
        {"strategy": "sma_cross", "data": "../../secret.csv"},
    ):
        assert (await api.client.post("/backtests", headers=h, json=bad)).status_code == 422
    assert (await api.client.get("/backtests/abcdef", headers=h)).status_code == 404


async def test_without_a_kernel_the_routes_answer_503(api: Api) -> None:
    r = await api.client.get("/status", headers=await api.bearer("vic"))
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "unavailable"
