"""The order gateway: every rule denies with a reason code, every decision is audited, and nothing reaches
the broker without the gate's ticket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stratkernel.core.config import KernelConfig
from stratkernel.core.errors import BrokerError
from stratkernel.core.kernel import Kernel
from stratkernel.core.model import Bar, Order, OrderRequest, OrderType, Side, TradingState
from stratkernel.core.risk import RiskConfig
from stratkernel.core.store import Store
from stratkernel.plugins.paper import PaperBroker
from stratkernel.testing import plugin_host


async def live_kernel(tmp_path: Path, **risk: Any) -> tuple[Kernel, Store]:
    cfg = KernelConfig(strategies=[], symbols=["X"], data_dir=str(tmp_path), risk=RiskConfig(**risk))
    store = await Store.open(tmp_path / "k.db")
    kernel = Kernel(cfg, plugin_host(), store=store, mode="live")
    await kernel.setup()
    await kernel.on_live_bar(Bar(1_700_000_000_000, 100, 101, 99, 100, 10, "X"))
    return kernel, store


def req(side: str = "buy", qty: float = 1.0, **kw: Any) -> OrderRequest:
    return OrderRequest("X", Side(side), qty, source="test", **kw)


async def test_each_basic_rule_denies_with_its_code_and_is_audited(tmp_path: Path) -> None:
    kernel, store = await live_kernel(tmp_path, max_order_qty=5)
    try:
        cases = [
            (req(stop_loss=95.0), True, "ok"),
            (req(), False, "stop_loss_missing"),
            (req(stop_loss=105.0), False, "stop_loss_wrong_side"),
            (req("sell", stop_loss=95.0), False, "stop_loss_wrong_side"),
            (req(qty=6, stop_loss=95.0), False, "max_order_qty"),
            (OrderRequest("NOPE", Side.BUY, 1, stop_loss=1.0, source="test"), False, "unknown_symbol"),
            (req(type=OrderType.LIMIT, stop_loss=95.0), False, "invalid_order"),
        ]
        for r, approved, code in cases:
            d = await kernel.submit(r)
            assert (d.approved, d.code) == (approved, code), r
            assert d.message
        rows = await store.audit(limit=100)
        assert [r["code"] for r in reversed(rows)] == [c[2] for c in cases]
        assert all(r["source"] == "test" for r in rows)
    finally:
        await store.close()


async def test_halted_denies_everything_and_reducing_only_reductions(tmp_path: Path) -> None:
    kernel, store = await live_kernel(tmp_path)
    try:
        assert (await kernel.submit(req(qty=2, stop_loss=90.0))).approved
        await kernel.on_live_bar(Bar(1_700_000_060_000, 100, 101, 99, 100, 10, "X"))
        assert kernel.portfolio.position("X").qty == 2
        await kernel.set_trading_state(TradingState.REDUCING, "test")
        assert (await kernel.submit(req(qty=1, stop_loss=90.0))).code == "reducing_only"
        assert (
            await kernel.submit(req("sell", qty=3, stop_loss=110.0))
        ).code == "reducing_only"  # would flip
        assert (await kernel.submit(req("sell", qty=1))).approved  # reduces: no stop needed
        await kernel.set_trading_state(TradingState.HALTED, "kill switch")
        assert (await kernel.submit(req("sell", qty=1))).code == "halted"
        assert (await store.load_risk_state())["trading_state"] == "halted"
    finally:
        await store.close()


async def test_broker_refuses_orders_without_a_gate_ticket(tmp_path: Path) -> None:
    kernel, store = await live_kernel(tmp_path)
    try:
        broker = kernel._broker
        assert broker is not None
        forged = Order("forged-1", req(stop_loss=90.0))
        with pytest.raises(BrokerError, match="not approved"):
            await broker.submit(forged)
        # a ticket is for exactly one approved request and is used once
        d = kernel.gateway.decide(req(stop_loss=90.0), "o-1")  # type: ignore[union-attr]
        assert d.approved
        swapped = Order("o-1", req(qty=1000, stop_loss=90.0))
        with pytest.raises(BrokerError):
            await broker.submit(swapped)
    finally:
        await store.close()


def _reachable(root: object, depth: int = 6) -> list[object]:
    """Everything reachable from ``root`` through attributes, dicts and lists (not closures or frames)."""
    seen: set[int] = set()
    out: list[object] = []
    frontier = [root]
    for _ in range(depth):
        nxt = []
        for obj in frontier:
            if id(obj) in seen or isinstance(obj, str | int | float | bytes | type(None)):
                continue
            seen.add(id(obj))
            out.append(obj)
            if isinstance(obj, dict):
                nxt.extend(obj.values())
            elif isinstance(obj, list | tuple | set):
                nxt.extend(obj)
            else:
                for name in dir(obj):
                    if name.startswith("__"):
                        continue
                    try:
                        nxt.append(getattr(obj, name))
                    except Exception:
                        continue
        frontier = nxt
    return out


async def test_no_raw_broker_reachable_from_strategy_context(tmp_path: Path) -> None:
    kernel, store = await live_kernel(tmp_path)
    try:
        slot = kernel.add_strategy("s", "sma_cross", symbol="X", params={})
        reachable = _reachable(slot.ctx)  # type: ignore[attr-defined]
        assert not any(isinstance(o, PaperBroker) for o in reachable)
        assert not any(type(o).__name__ == "GatedBroker" for o in reachable)
    finally:
        await store.close()


async def test_a_broker_that_raises_rejects_the_order_and_the_kernel_goes_on(tmp_path: Path) -> None:
    from stratkernel.core.errors import OrderRejectedError
    from stratkernel.core.model import OrderStatus

    kernel, store = await live_kernel(tmp_path)
    try:
        raw = kernel._broker._get()  # type: ignore[union-attr]

        async def refuse(order: Order) -> None:
            raise OrderRejectedError("insufficient_funds", "not enough USD")

        raw.submit = refuse
        d = await kernel.submit(req(stop_loss=90.0))
        assert d.approved  # the gate approved; the venue refused
        (order,) = [o for o in kernel.orders.values()]
        assert order.status is OrderStatus.REJECTED and order.reason.startswith("insufficient_funds")
        (row,) = await store.orders()
        assert row.status is OrderStatus.REJECTED
    finally:
        await store.close()
