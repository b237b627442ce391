"""Risk state across `kill -9` with a real `stratkernel run` process: a tripped loss limit stays
tripped (same reason, same baselines and peak, same lock) after the restart, `stratkernel risk show`
reports it, and only the operator's `stratkernel risk resume` ends it.

(Orders and fills across a crash are tested in test_restart.py; this file is about the risk state.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

CONFIG = """
symbols = ["SYNTH-USD"]
equity_snapshot_s = 0.5
[data]
source = "synthetic"
options = {interval_ms = 1000, speed = 200, seed = 11, vol = 0.004}
[broker]
name = "paper"
options = {fee_percent = 0.5}
[api]
enabled = false
[risk]
daily_loss_pct = 0.05
max_drawdown_pct = 20.0
loss_recovery = "operator"
stop_cooldown_minutes = 30
timezone = "Europe/London"
[[strategies]]
name = "fast"
strategy = "sma_cross"
params = {fast = 2, slow = 3, qty = 100.0, stop_pct = 1.0}
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STRATKERNEL_")}


def _start(cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stratkernel.cli", "run", "--config", "c.toml"],
            cwd=cwd,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _risk(db: Path) -> dict[str, Any]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM risk_state")}
    except sqlite3.OperationalError:
        return {}


def _wait(what: str, fn: Any, timeout: float = 60.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=5) as con:
        return int(con.execute(sql).fetchone()[0])


@pytest.mark.slow
def test_a_tripped_loss_limit_survives_kill_9_and_needs_the_operator(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    db = tmp_path / ".stratkernel" / "stratkernel.db"
    log = tmp_path / "run.log"
    proc = _start(tmp_path, log)
    try:
        before = _wait(
            "the loss limit to trip", lambda: (r := _risk(db)).get("trading_state") == "halted" and r
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert before["halt_kind"] == "loss_limit"
    assert before["state_reason"].startswith("daily_loss")
    lock = before["loss"]["lock"]
    assert lock["metric"] == "daily_loss" and lock["until"] is None and lock["loss"] >= 0.0005
    assert before["loss"]["day_base"] and before["loss"]["peak"] and before["loss"]["next_day"]
    equity_rows = _count(db, "SELECT COUNT(*) FROM equity")

    proc = _start(tmp_path, log)
    try:
        # running again: equity snapshots continue, bars flow, and the halt holds
        _wait(
            "the restarted kernel to snapshot equity",
            lambda: _count(db, "SELECT COUNT(*) FROM equity") > equity_rows + 3,
        )
        after = _risk(db)
        assert after["trading_state"] == "halted" and after["state_reason"] == before["state_reason"]
        assert after["halt_kind"] == "loss_limit"
        for key in ("day_base", "week_base", "peak", "next_day", "next_week", "lock"):
            assert after["loss"][key] == before["loss"][key], key  # restored, not re-measured
        assert (
            after["cooldowns"] == before["cooldowns"]
            or after["cooldowns"]["symbols"].keys() >= before["cooldowns"]["symbols"].keys()
        )
        entries_while_halted = _count(db, "SELECT COUNT(*) FROM audit WHERE approved = 1")

        shown = subprocess.run(
            [sys.executable, "-m", "stratkernel.cli", "risk", "show", "--config", "c.toml", "--json"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        state = json.loads(shown.stdout)["state"]
        assert state["trading_state"] == "halted" and state["halt_kind"] == "loss_limit"
        assert state["loss"]["lock"]["metric"] == "daily_loss"
        text = subprocess.run(
            [sys.executable, "-m", "stratkernel.cli", "risk", "show", "--config", "c.toml"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert (
            "trading state: halted" in text and "LOSS LOCK: daily_loss" in text and "equity peak:" in text
        ), text
        assert "daily_loss_pct: 0.05" in text
        assert _count(db, "SELECT COUNT(*) FROM audit WHERE approved = 1") == entries_while_halted

        resumed = subprocess.run(
            [
                sys.executable,
                "-m",
                "stratkernel.cli",
                "risk",
                "resume",
                "--config",
                "c.toml",
                "--reason",
                "checked",
            ],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        _wait(
            "the operator's resume to end the loss lock",
            lambda: (
                _count(
                    db,
                    "SELECT COUNT(*) FROM events WHERE type = 'risk_state' AND data LIKE '%loss_recovered%' "
                    "AND data LIKE '%operator resume%'",
                )
                > 0
            ),
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert "trading state is halted" in text, text[-3000:]
