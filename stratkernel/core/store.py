"""The SQLite store (aiosqlite, WAL, versioned migrations).

What survives a restart, including ``kill -9``: orders (written *before* they reach the broker, so a
crash never forgets an order it may have sent), fills (keyed by the venue's fill id, so a replayed fill
is ignored), positions (updated in the same transaction as the fill), equity snapshots, the audit log,
risk state, strategy state and backtest runs.

WAL with ``synchronous=NORMAL``: a committed transaction survives the process being killed; only an
OS crash or power loss can lose the last few.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from .errors import StoreError
from .model import Decision, Fill, Order, OrderRequest, OrderStatus, OrderType, Position, Side

MIGRATIONS: list[str] = [
    # 1: the kernel's tables
    """
    CREATE TABLE orders (
        id TEXT PRIMARY KEY,
        strategy TEXT NOT NULL,
        source TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        type TEXT NOT NULL,
        qty REAL NOT NULL,
        limit_price REAL, stop_price REAL, stop_loss REAL, take_profit REAL,
        reduce_only INTEGER NOT NULL DEFAULT 0,
        client_id TEXT NOT NULL DEFAULT '',
        tag TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        filled_qty REAL NOT NULL DEFAULT 0,
        avg_fill_price REAL NOT NULL DEFAULT 0,
        parent_id TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL DEFAULT 'entry',
        broker_order_id TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        created_ts INTEGER NOT NULL,
        updated_ts INTEGER NOT NULL
    );
    CREATE INDEX orders_status ON orders(status);
    CREATE INDEX orders_strategy ON orders(strategy, created_ts);
    CREATE TABLE fills (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        strategy TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty REAL NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL DEFAULT 0,
        role TEXT NOT NULL DEFAULT 'entry',
        ts INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX fills_order ON fills(order_id);
    CREATE INDEX fills_seq ON fills(seq);
    CREATE TABLE positions (
        strategy TEXT NOT NULL,
        symbol TEXT NOT NULL,
        qty REAL NOT NULL,
        avg_price REAL NOT NULL,
        realized_pnl REAL NOT NULL,
        updated_ts INTEGER NOT NULL,
        PRIMARY KEY (strategy, symbol)
    );
    CREATE TABLE equity (
        ts INTEGER NOT NULL,
        cash REAL NOT NULL,
        equity REAL NOT NULL,
        gross_exposure REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX equity_ts ON equity(ts);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        approved INTEGER NOT NULL,
        code TEXT NOT NULL,
        rule TEXT NOT NULL,
        message TEXT NOT NULL,
        strategy TEXT NOT NULL,
        source TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty REAL NOT NULL,
        order_id TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_ts ON audit(ts);
    CREATE TABLE risk_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_ts INTEGER NOT NULL
    );
    CREATE TABLE strategies (
        name TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        kind TEXT NOT NULL,
        version TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        updated_ts INTEGER NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_type ON events(type, ts);
    CREATE TABLE backtest_runs (
        id TEXT PRIMARY KEY,
        created_ts INTEGER NOT NULL,
        strategy TEXT NOT NULL,
        params TEXT NOT NULL,
        data_ref TEXT NOT NULL,
        status TEXT NOT NULL,
        progress REAL NOT NULL DEFAULT 0,
        summary TEXT,
        error TEXT
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """Async access to the database. Open with ``await Store.open(path)``; close with ``await close()``."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._fill_seq = 0

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        p = Path(path)
        if str(p) != ":memory:":
            p.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(str(p), isolation_level=None)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
        except Exception as exc:  # aiosqlite raises sqlite3 errors
            raise StoreError(f"cannot open database {p}: {exc}") from exc
        store = cls(db, p)
        try:
            await store.migrate("kernel", MIGRATIONS)
        except BaseException:
            await db.close()
            raise
        async with db.execute("SELECT COALESCE(MAX(seq), 0) FROM fills") as cur:
            row = await cur.fetchone()
            store._fill_seq = int(row[0]) if row else 0
        return store

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self, namespace: str, steps: list[str]) -> int:
        """Apply the missing steps of a migration set. Other components (the API's user tables) keep
        their own namespace. A database from a newer version is refused, not guessed at."""
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(namespace TEXT NOT NULL, version INTEGER NOT NULL, applied_ts INTEGER NOT NULL, "
            "PRIMARY KEY (namespace, version))"
        )
        async with self.db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE namespace = ?", (namespace,)
        ) as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > len(steps):
            raise StoreError(
                f"{self.path}: schema {namespace!r} is at version {current}, newer than this stratkernel "
                f"knows ({len(steps)}); upgrade stratkernel or use another database"
            )
        for version in range(current + 1, len(steps) + 1):
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _split_sql(steps[version - 1]):
                    await self.db.execute(stmt)
                await self.db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (namespace, version, now_ms())
                )
                await self.db.execute("COMMIT")
            except Exception:
                await self.db.execute("ROLLBACK")
                raise
        return len(steps)

    # -- orders ---------------------------------------------------------------------------------
    async def upsert_order(self, order: Order) -> None:
        r = order.request
        await self.db.execute(
            """INSERT INTO orders (id, strategy, source, symbol, side, type, qty, limit_price, stop_price,
                   stop_loss, take_profit, reduce_only, client_id, tag, status, filled_qty, avg_fill_price,
                   parent_id, role, broker_order_id, reason, created_ts, updated_ts)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(id) DO UPDATE SET status=excluded.status, filled_qty=excluded.filled_qty,
                   avg_fill_price=excluded.avg_fill_price, broker_order_id=excluded.broker_order_id,
                   reason=excluded.reason, updated_ts=excluded.updated_ts""",
            (
                order.id,
                r.strategy,
                r.source,
                r.symbol,
                r.side.value,
                r.type.value,
                r.qty,
                r.limit_price,
                r.stop_price,
                r.stop_loss,
                r.take_profit,
                int(r.reduce_only),
                r.client_id,
                r.tag,
                order.status.value,
                order.filled_qty,
                order.avg_fill_price,
                order.parent_id,
                order.role,
                order.broker_order_id,
                order.reason,
                order.created_ts or now_ms(),
                order.updated_ts or now_ms(),
            ),
        )

    async def orders(
        self, *, open_only: bool = False, strategy: str | None = None, limit: int = 1000, offset: int = 0
    ) -> list[Order]:
        sql = "SELECT * FROM orders"
        where: list[str] = []
        args: list[Any] = []
        if open_only:
            where.append("status IN ('pending','accepted','partially_filled')")
        if strategy:
            where.append("strategy = ?")
            args.append(strategy)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_ts, rowid LIMIT ? OFFSET ?"
        args += [limit, offset]
        self.db.row_factory = aiosqlite.Row
        try:
            async with self.db.execute(sql, args) as cur:
                rows = await cur.fetchall()
        finally:
            self.db.row_factory = None
        return [_order_from_row(r) for r in rows]

    # -- fills (one transaction: fill, position, order progress) ---------------------------------
    async def record_fill(self, fill: Fill, position: Position, order: Order | None) -> bool:
        """Record a fill and the position it produced atomically. Returns False if already known."""
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            self._fill_seq += 1
            cur = await self.db.execute(
                "INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    fill.id,
                    fill.order_id,
                    fill.strategy,
                    fill.symbol,
                    fill.side.value,
                    fill.qty,
                    fill.price,
                    fill.fee,
                    fill.role,
                    fill.ts,
                    self._fill_seq,
                ),
            )
            if cur.rowcount == 0:
                await self.db.execute("ROLLBACK")
                self._fill_seq -= 1
                return False
            await self.db.execute(
                """INSERT INTO positions VALUES (?,?,?,?,?,?)
                   ON CONFLICT(strategy, symbol) DO UPDATE SET qty=excluded.qty, avg_price=excluded.avg_price,
                   realized_pnl=excluded.realized_pnl, updated_ts=excluded.updated_ts""",
                (
                    fill.strategy,
                    fill.symbol,
                    position.qty,
                    position.avg_price,
                    position.realized_pnl,
                    fill.ts,
                ),
            )
            if order is not None:
                await self.db.execute(
                    "UPDATE orders SET status=?, filled_qty=?, avg_fill_price=?, updated_ts=? WHERE id=?",
                    (order.status.value, order.filled_qty, order.avg_fill_price, fill.ts, order.id),
                )
            await self.db.execute("COMMIT")
        except Exception:
            await self.db.execute("ROLLBACK")
            raise
        return True

    async def fills(
        self, *, strategy: str | None = None, limit: int = 1_000_000, offset: int = 0
    ) -> list[Fill]:
        sql = "SELECT id, order_id, symbol, side, qty, price, fee, ts, strategy, role FROM fills"
        args: list[Any] = []
        if strategy:
            sql += " WHERE strategy = ?"
            args.append(strategy)
        sql += " ORDER BY seq LIMIT ? OFFSET ?"
        args += [limit, offset]
        async with self.db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [Fill(r[0], r[1], r[2], Side(r[3]), r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows]

    async def positions(self) -> list[Position]:
        async with self.db.execute(
            "SELECT symbol, qty, avg_price, realized_pnl, strategy FROM positions WHERE abs(qty) > 1e-12"
        ) as cur:
            rows = await cur.fetchall()
        return [Position(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # -- audit, equity, events ------------------------------------------------------------------
    async def record_audit(self, decisions: Iterable[tuple[int, Decision]]) -> None:
        rows = [
            (
                ts,
                int(d.approved),
                d.code,
                d.rule,
                d.message,
                d.request.strategy,
                d.request.source,
                d.request.symbol,
                d.request.side.value,
                d.request.qty,
                d.order_id,
                json.dumps(d.details, default=str),
            )
            for ts, d in decisions
        ]
        if rows:
            await self.db.executemany(
                "INSERT INTO audit (ts, approved, code, rule, message, strategy, source, symbol, side, qty, "
                "order_id, details) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )

    async def audit(
        self, *, limit: int = 100, offset: int = 0, denied_only: bool = False
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT * FROM audit"
            + (" WHERE approved = 0" if denied_only else "")
            + " ORDER BY id DESC LIMIT ? OFFSET ?"
        )
        return await self._dicts(sql, (limit, offset))

    async def snapshot_equity(self, ts: int, cash: float, equity: float, gross: float) -> None:
        await self.db.execute("INSERT INTO equity VALUES (?,?,?,?)", (ts, cash, equity, gross))

    async def equity_curve(self, *, since: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        return await self._dicts("SELECT * FROM equity WHERE ts >= ? ORDER BY ts LIMIT ?", (since, limit))

    async def record_event(self, ts: int, type_: str, data: dict[str, Any]) -> None:
        await self.db.execute(
            "INSERT INTO events (ts, type, data) VALUES (?,?,?)", (ts, type_, json.dumps(data, default=str))
        )

    async def events(self, *, type_: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if type_:
            rows = await self._dicts(
                "SELECT * FROM events WHERE type = ? ORDER BY id DESC LIMIT ?", (type_, limit)
            )
        else:
            rows = await self._dicts("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        for r in rows:
            r["data"] = json.loads(r["data"])
        return rows

    # -- key/value state ------------------------------------------------------------------------
    async def save_risk_state(self, state: dict[str, Any]) -> None:
        ts = now_ms()
        await self.db.executemany(
            "INSERT INTO risk_state VALUES (?,?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value, "
            "updated_ts=excluded.updated_ts",
            [(k, json.dumps(v, default=str), ts) for k, v in state.items()],
        )

    async def load_risk_state(self) -> dict[str, Any]:
        async with self.db.execute("SELECT key, value FROM risk_state") as cur:
            return {k: json.loads(v) for k, v in await cur.fetchall()}

    async def save_strategy(
        self,
        name: str,
        *,
        ref: str,
        kind: str,
        version: str,
        status: str,
        params: dict[str, Any],
        state: dict[str, Any],
        error: dict[str, Any] | None,
    ) -> None:
        await self.db.execute(
            """INSERT INTO strategies VALUES (?,?,?,?,?,?,?,?,?)
               ON CONFLICT(name) DO UPDATE SET ref=excluded.ref, kind=excluded.kind, version=excluded.version,
               status=excluded.status, params=excluded.params, state=excluded.state, error=excluded.error,
               updated_ts=excluded.updated_ts""",
            (
                name,
                ref,
                kind,
                version,
                status,
                json.dumps(params),
                json.dumps(state),
                json.dumps(error) if error else None,
                now_ms(),
            ),
        )

    async def strategies(self) -> list[dict[str, Any]]:
        rows = await self._dicts("SELECT * FROM strategies ORDER BY name", ())
        for r in rows:
            r["params"] = json.loads(r["params"])
            r["state"] = json.loads(r["state"])
            r["error"] = json.loads(r["error"]) if r["error"] else None
        return rows

    async def set_meta(self, key: str, value: Any) -> None:
        await self.db.execute(
            "INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    async def get_meta(self, key: str, default: Any = None) -> Any:
        async with self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else default

    # -- backtest runs --------------------------------------------------------------------------
    async def save_backtest(
        self,
        run_id: str,
        *,
        strategy: str,
        params: dict[str, Any],
        data_ref: str,
        status: str,
        progress: float = 0.0,
        summary: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        await self.db.execute(
            """INSERT INTO backtest_runs VALUES (?,?,?,?,?,?,?,?,?)
               ON CONFLICT(id) DO UPDATE SET status=excluded.status, progress=excluded.progress,
               summary=excluded.summary, error=excluded.error""",
            (
                run_id,
                now_ms(),
                strategy,
                json.dumps(params),
                data_ref,
                status,
                progress,
                json.dumps(summary) if summary is not None else None,
                json.dumps(error) if error else None,
            ),
        )

    async def backtests(self, *, run_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if run_id:
            rows = await self._dicts("SELECT * FROM backtest_runs WHERE id = ?", (run_id,))
        else:
            rows = await self._dicts("SELECT * FROM backtest_runs ORDER BY created_ts DESC LIMIT ?", (limit,))
        for r in rows:
            for k in ("params", "summary", "error"):
                r[k] = json.loads(r[k]) if r[k] else None
        return rows

    async def _dicts(self, sql: str, args: Iterable[Any]) -> list[dict[str, Any]]:
        async with self.db.execute(sql, tuple(args)) as cur:
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in await cur.fetchall()]


def _order_from_row(r: Any) -> Order:
    req = OrderRequest(
        symbol=r["symbol"],
        side=Side(r["side"]),
        qty=r["qty"],
        type=OrderType(r["type"]),
        limit_price=r["limit_price"],
        stop_price=r["stop_price"],
        stop_loss=r["stop_loss"],
        take_profit=r["take_profit"],
        reduce_only=bool(r["reduce_only"]),
        strategy=r["strategy"],
        source=r["source"],
        client_id=r["client_id"],
        tag=r["tag"],
    )
    return Order(
        id=r["id"],
        request=req,
        status=OrderStatus(r["status"]),
        filled_qty=r["filled_qty"],
        avg_fill_price=r["avg_fill_price"],
        created_ts=r["created_ts"],
        updated_ts=r["updated_ts"],
        broker_order_id=r["broker_order_id"],
        reason=r["reason"],
        parent_id=r["parent_id"],
        role=r["role"],
    )


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
