"""Crash safety with a real process: `kill -9` mid-run, restart, and nothing is lost or repeated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """
symbols = ["SYNTH-USD"]
equity_snapshot_s = 0.5
[data]
source = "synthetic"
options = {interval_ms = 1000, speed = 400, seed = 5, vol = 0.004}
[api]
enabled = false
[[strategies]]
name = "fast"
strategy = "sma_cross"
params = {fast = 2, slow = 3, qty = 1.0, stop_pct = 0.5}
"""


def _start(cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATKERNEL_")}
    return subprocess.Popen(
        [sys.executable, "-m", "stratkernel.cli", "run", "--config", "c.toml"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as con:
        try:
            return int(con.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _wait_for(db: Path, sql: str, at_least: int, timeout: float = 60.0) -> int:
    end = time.monotonic() + timeout
    n = 0
    while time.monotonic() < end:
        n = _count(db, sql)
        if n >= at_least:
            return n
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {sql!r} >= {at_least} (have {n})")


def _check_consistent(db: Path) -> dict[str, float]:
    with sqlite3.connect(db) as con:
        # every position equals the sum of its recorded fills (same transaction)
        for strategy, symbol, qty in con.execute("SELECT strategy, symbol, qty FROM positions"):
            total = con.execute(
                "SELECT COALESCE(SUM(CASE side WHEN 'buy' THEN qty ELSE -qty END), 0) FROM fills "
                "WHERE strategy=? AND symbol=?",
                (strategy, symbol),
            ).fetchone()[0]
            assert abs(total - qty) < 1e-9, (strategy, symbol, total, qty)
        # no order was filled beyond its quantity (a repeated fill would show here)
        over = con.execute(
            "SELECT o.id, o.qty, SUM(f.qty) FROM orders o JOIN fills f ON f.order_id = o.id "
            "GROUP BY o.id HAVING SUM(f.qty) > o.qty + 1e-9"
        ).fetchall()
        assert over == []
        dup = con.execute(
            "SELECT order_id, COUNT(*) FROM fills WHERE role = 'entry' GROUP BY order_id HAVING COUNT(*) > 1"
        ).fetchall()
        assert dup == []
        return {"fills": con.execute("SELECT COUNT(*) FROM fills").fetchone()[0]}


@pytest.mark.slow
def test_kill_9_mid_run_then_restart_loses_and_repeats_nothing(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    db = tmp_path / ".stratkernel" / "stratkernel.db"
    proc = _start(tmp_path)
    try:
        _wait_for(db, "SELECT COUNT(*) FROM fills", 30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _check_consistent(db)
    with sqlite3.connect(db) as con:
        open_before = [
            r[0]
            for r in con.execute(
                "SELECT id FROM orders WHERE status IN ('pending','accepted','partially_filled') AND type = 'market'"
            )
        ]
    proc = _start(tmp_path)
    try:
        _wait_for(db, "SELECT COUNT(*) FROM fills", before["fills"] + 10)
        proc.send_signal(signal.SIGINT)  # a clean stop this time
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "restored" in text and "stopped:" in text
    after = _check_consistent(db)
    assert after["fills"] >= before["fills"] + 10
    with sqlite3.connect(db) as con:
        for (
            oid
        ) in open_before:  # market orders in flight at the crash were adopted and executed, not forgotten
            status = con.execute("SELECT status FROM orders WHERE id=?", (oid,)).fetchone()[0]
            assert status in ("filled", "cancelled"), (oid, status)
        assert con.execute("SELECT COUNT(*) FROM equity").fetchone()[0] > 0
        assert con.execute("SELECT status FROM strategies WHERE name='fast'").fetchone()[0] == "stopped"


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_the_database_holding_what_happened(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    db = tmp_path / ".stratkernel" / "stratkernel.db"
    proc = _start(tmp_path)
    try:
        _wait_for(db, "SELECT COUNT(*) FROM fills", 5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    assert _count(db, "SELECT COUNT(*) FROM audit") >= _count(
        db, "SELECT COUNT(*) FROM fills WHERE role='entry'"
    )
    _check_consistent(db)
