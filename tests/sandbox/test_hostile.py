"""The hostile corpus: every script in hostile/ must end in a refusal or a contained failure.

Each file says what must happen in its header: ``# expect: <kinds>`` (``ok`` = runs to the end,
contained; otherwise the StrategyError kinds allowed) and optionally ``# line: N`` (the script line
the error must name). A canary file with a secret sits next to the test; no hostile script may get
its content into anything the host returns.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from sandbox_support import make_series, snapshot

from stratkernel.core.errors import StrategyError
from stratkernel.sandbox.host import CallResult, ScriptHost

HOSTILE = Path(__file__).with_name("hostile")
FILES = sorted(HOSTILE.glob("*.py"))


def header(source: str, key: str) -> str | None:
    m = re.search(rf"^# {key}: (.+)$", source, re.M)
    return m.group(1).strip() if m else None


def drive(host: ScriptHost, n: int) -> tuple[StrategyError | None, list[CallResult]]:
    """Load and run a script the way the kernel would; return the first failure and all results."""
    try:
        host.load()
    except StrategyError as exc:
        return exc, []
    host.set_series(make_series(n))
    snap = snapshot()
    results = [host.start(snap, None)]
    if results[-1].error:
        return results[-1].error, results
    i = 0
    while i < n:
        res = host.run(i, n, snap)
        results.append(res)
        if res.error:
            return res.error, results
        i = res.upto + 1
    results.append(host.reject({"id": "r1", "code": "test", "message": "refused by the test"}, snap))
    if results[-1].error:
        return results[-1].error, results
    results.append(host.stop(snap))
    return results[-1].error, results


@pytest.fixture
def canary(tmp_path: Path) -> tuple[Path, str]:
    secret = "CANARY-" + secrets.token_hex(16)
    path = tmp_path / "canary.txt"
    path.write_text(secret)
    path.chmod(0o600)
    return path, secret


def test_corpus_is_there() -> None:
    assert len(FILES) >= 60
    for f in FILES:
        assert header(f.read_text(), "expect"), f"{f.name} has no '# expect:' header"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_hostile_script_is_refused_or_contained(
    path: Path, make_host: Callable[..., ScriptHost], canary: tuple[Path, str]
) -> None:
    canary_path, secret = canary
    source = path.read_text().replace("{{CANARY}}", str(canary_path))
    expect = (header(source, "expect") or "").split()
    line = header(source, "line")
    host = make_host(source, name=path.stem, filename=path.name)
    error, results = drive(host, 40)

    if expect == ["ok"]:
        assert error is None, f"{path.name}: {error}"
        assert host.alive
    elif "ok" in expect and error is None:
        assert host.alive
    else:
        assert error is not None, f"{path.name} was neither refused nor stopped"
        assert error.kind in expect, f"{path.name}: {error!r}"
        if line is not None:
            assert error.line == int(line), f"{path.name}: {error!r}"
        assert error.strategy == path.stem
        assert not host.alive
        assert all(not r.orders for r in results if r.error is not None)
    # whatever happened: no secret in anything the host handed back, the logs stayed within the caps
    for r in results:
        lim = host.limits
        assert len(r.logs) <= lim.max_log_lines_per_call + 1
        assert sum(len(x) for x in r.logs) <= lim.max_log_bytes_per_call + 200
        blob = " ".join(r.logs) + (str(r.error) if r.error else "") + str(r.state)
        assert secret not in blob
    assert error is None or secret not in str(error)
    host.close()
    assert not host.alive


def test_kernel_and_other_scripts_keep_running(make_host: Callable[..., ScriptHost]) -> None:
    good_src = (
        "def on_bar(ctx, bar):\n    if ctx.bar_index == 5:\n        ctx.buy(1, stop_loss=bar.close * 0.9)\n"
    )
    good = make_host(good_src, name="good")
    good.load()
    good.set_series(make_series(40))
    assert good.start(snapshot(), None).error is None
    for bad_name in ("infinite_loop_call.py", "huge_alloc.py", "deep_recursion.py", "huge_pow.py"):
        bad = make_host((HOSTILE / bad_name).read_text(), name="bad")
        error, _ = drive(bad, 40)
        assert error is not None and not bad.alive
    res = good.run(0, 40, snapshot())
    assert res.error is None and res.upto == 5 and len(res.orders) == 1
    assert good.alive


def test_worker_processes_do_not_outlive_their_host(make_host: Callable[..., ScriptHost]) -> None:
    host = make_host((HOSTILE / "infinite_loop_call.py").read_text())
    host.load()
    assert host._proc is not None
    pid = host._proc.pid
    host.set_series(make_series(10))
    res = host.run(0, 10, snapshot())
    assert res.error is not None and res.error.kind == "limit"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
