"""The command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from stratkernel.testing import make_series

REPO = Path(__file__).resolve().parents[2]


def _csv(path: Path, n: int = 3000) -> Path:
    s = make_series(n, seed=4)
    rows = ["ts,open,high,low,close,volume"]
    rows += [
        f"{t},{o!r},{h!r},{lo!r},{c!r},{v!r}"
        for t, o, h, lo, c, v in zip(
            s.ts.tolist(),
            s.open.tolist(),
            s.high.tolist(),
            s.low.tolist(),
            s.close.tolist(),
            s.volume.tolist(),
            strict=True,
        )
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stratkernel.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_backtest_json_summary(tmp_path: Path) -> None:
    data = _csv(tmp_path / "bars.csv")
    out = _run(
        "backtest", "sma_cross", "--data", str(data), "--json", "-p", "fast=5", "-p", "slow=20", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["bars"] == 3000 and summary["params"]["fast"] == 5
    for key in ("trades", "pnl", "return_pct", "max_drawdown_pct", "sharpe", "bars_per_s"):
        assert key in summary
    assert summary["trades"] > 10 and summary["failure"] is None
    assert np.isfinite(summary["return_pct"])


def test_backtest_strategy_failure_exits_2_and_kernel_error_exits_1(tmp_path: Path) -> None:
    data = _csv(tmp_path / "bars.csv", 500)
    script = tmp_path / "broken.py"
    script.write_text("def on_bar(ctx, bar):\n    x = 1\n    return x / 0\n")
    out = _run("backtest", str(script), "--data", str(data), "--json", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    failure = json.loads(out.stdout)["failure"]
    assert failure["kind"] == "runtime" and failure["line"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,open,high,low,close,volume\n1700000000000,10,9,11,10,1\n")
    out = _run("backtest", "sma_cross", "--data", str(bad), cwd=tmp_path)
    assert out.returncode == 1
    assert "high" in out.stderr and "low" in out.stderr
    out = _run("backtest", "sma_cross", "--data", str(data), "-p", "fast=0", cwd=tmp_path)
    assert out.returncode == 1 and "params.fast" in out.stderr


def test_risk_commands_reach_a_store(tmp_path: Path) -> None:
    out = _run("risk", "halt", "--reason", "testing", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = _run("risk", "show", "--json", cwd=tmp_path)
    shown = json.loads(out.stdout)
    assert shown["pending_command"]["command"] == "halt"
    assert shown["limits"]["require_stop_loss"] is True
