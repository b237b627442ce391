"""The store: migrations, idempotent fills, refusal of a newer schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratkernel.core.errors import StoreError
from stratkernel.core.model import Fill, Order, OrderRequest, OrderStatus, Position, Side
from stratkernel.core.store import Store


async def test_fill_is_recorded_once_with_its_position(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    try:
        order = Order("o1", OrderRequest("X", Side.BUY, 2, strategy="s"), OrderStatus.PENDING, created_ts=1)
        await store.upsert_order(order)
        order.status, order.filled_qty, order.avg_fill_price = OrderStatus.FILLED, 2, 10.0
        fill = Fill("f1", "o1", "X", Side.BUY, 2, 10.0, 0.01, 5, "s")
        assert await store.record_fill(fill, Position("X", 2, 10.0, 0, "s"), order)
        assert not await store.record_fill(fill, Position("X", 4, 10.0, 0, "s"), order)  # replayed
        assert [f.id for f in await store.fills()] == ["f1"]
        assert await store.positions() == [Position("X", 2, 10.0, 0.0, "s")]
        (o,) = await store.orders()
        assert o.status is OrderStatus.FILLED and o.filled_qty == 2
        assert await store.orders(open_only=True) == []
    finally:
        await store.close()
    reopened = await Store.open(tmp_path / "s.db")  # migrations are not re-applied
    try:
        assert len(await reopened.fills()) == 1
    finally:
        await reopened.close()


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    await store.db.execute("INSERT INTO schema_migrations VALUES ('kernel', 99, 0)")
    await store.close()
    with pytest.raises(StoreError, match="newer than this stratkernel"):
        await Store.open(tmp_path / "s.db")


async def test_wal_mode(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    try:
        async with store.db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
    finally:
        await store.close()
