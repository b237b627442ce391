"""``stratkernel run --reload``: the supervisor restarts the kernel process on a config change and the
new process resumes from the store (positions, working orders, risk state, strategy state)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from stratkernel.core import devreload

BUYER = """
function onBar(ctx, bar) {
  if (!ctx.state.bought) {
    ctx.state.bought = true;
    ctx.buy(1, { stopLoss: bar.close * 0.5 });
  }
}
"""


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


def until(cond: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_watched_paths_cover_the_package_plugins_and_config(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    dirs, files = devreload.watched_paths(str(cfg))
    assert devreload.PACKAGE_DIR in dirs
    assert cfg.resolve() in files
    accept = devreload._relevant(files, dirs)
    assert accept(None, str(devreload.PACKAGE_DIR / "core" / "kernel.py"))
    assert not accept(None, str(devreload.PACKAGE_DIR / "core" / "__pycache__" / "kernel.cpython-311.pyc"))
    assert accept(None, str(cfg))
    assert not accept(None, str(tmp_path / "other.toml"))


def test_restart_on_config_change_resumes_from_the_store(tmp_path: Path) -> None:
    script = tmp_path / "buyer.js"
    script.write_text(BUYER)
    data = tmp_path / "data"
    cfg = tmp_path / "kernel.toml"
    cfg.write_text(f"""
data_dir = "{data}"
symbols = ["SYNTH-USD"]
equity_snapshot_s = 0.2

[api]
enabled = false

[data]
source = "synthetic"
options = {{ interval_ms = 60000, speed = 1200.0, seed = 5 }}

[sandbox]
scripts_dir = "{tmp_path / "scripts"}"

[[strategies]]
name = "buyer"
strategy = "{script}"
""")
    db = data / "stratkernel.db"
    children: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*a: Any, **kw: Any) -> subprocess.Popen[bytes]:
        proc = real_popen(*a, **kw)
        children.append(proc)
        return proc

    stop = threading.Event()
    result: list[int] = []
    devreload.subprocess.Popen = popen  # type: ignore[assignment,misc]  # observe the children, nothing else
    try:
        th = threading.Thread(
            target=lambda: result.append(
                devreload.run_with_reload(["run", "--config", str(cfg)], str(cfg), stop=stop)
            )
        )
        th.start()
        try:
            until(
                lambda: query(db, "SELECT qty FROM positions WHERE strategy='buyer' AND qty > 0"),
                "the entry fill",
            )
            stops = until(
                lambda: query(
                    db,
                    "SELECT id FROM orders WHERE strategy='buyer' AND role='stop_loss' "
                    "AND status IN ('accepted','open','working','pending','new')",
                ),
                "the working stop-loss",
            )
            # halt trading through the control channel, as `stratkernel risk halt` does
            con = sqlite3.connect(db)
            con.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('control', ?)",
                (json.dumps({"command": "halt", "reason": "test", "user": "t"}),),
            )
            con.commit()
            con.close()
            until(
                lambda: any("halted" in str(v) for (v,) in query(db, "SELECT value FROM risk_state")), "halt"
            )

            cfg.write_text(cfg.read_text() + "\n# touched\n")  # a config change: restart
            until(lambda: len(children) >= 2, "the restart")
            assert children[0].wait(timeout=30) == 0  # the first kernel shut down cleanly on SIGINT
            since = int(time.time() * 1000)
            until(lambda: query(db, "SELECT ts FROM equity WHERE ts > ?", since), "the new kernel running")
            assert children[1].poll() is None

            assert query(db, "SELECT qty FROM positions WHERE strategy='buyer'") == [(1.0,)]
            still = query(db, "SELECT id, status FROM orders WHERE strategy='buyer' AND role='stop_loss'")
            assert [row[0] for row in still] == [row[0] for row in stops]
            assert all(status in ("accepted", "open", "working", "pending", "new") for _, status in still)
            assert any("halted" in str(v) for (v,) in query(db, "SELECT value FROM risk_state"))
            (state,) = query(db, "SELECT state FROM strategies WHERE name='buyer'")[0]
            assert json.loads(state) == {"bought": True}
            entries = query(db, "SELECT id FROM orders WHERE strategy='buyer' AND role='entry'")
            assert len(entries) == 1  # the restarted script did not buy again
        finally:
            stop.set()
            th.join(60)
    finally:
        devreload.subprocess.Popen = real_popen  # type: ignore[misc]
        for proc in children:
            if proc.poll() is None:
                proc.kill()
    assert result == [0]
    assert all(proc.poll() is not None for proc in children)
