"""The JavaScript hostile corpus: every script in hostile_js/ ends in a refusal or a contained failure.

Same rules as the Python corpus (test_hostile.py): ``// expect: <kinds>`` (``ok`` = runs to the end,
contained; otherwise the allowed StrategyError kinds) and optionally ``// line: N``. Everything runs in
real confined V8 workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sandbox_support import FAST_LIMITS, make_series, snapshot

from stratkernel.core.context import IndicatorEngine
from stratkernel.core.errors import StrategyError
from stratkernel.core.plugins import PluginHost
from stratkernel.sandbox.host import CallResult, SandboxLimits
from stratkernel.sandbox.js_host import JsScriptHost

HOSTILE = Path(__file__).with_name("hostile_js")
FILES = sorted(HOSTILE.glob("*.js"))


def header(source: str, key: str) -> str | None:
    m = re.search(rf"^// {key}: (.+)$", source, re.M)
    return m.group(1).strip() if m else None


@pytest.fixture
def make_js(plugins: PluginHost) -> Iterator[Callable[..., JsScriptHost]]:
    made: list[JsScriptHost] = []

    def build(
        source: str,
        *,
        name: str = "s",
        filename: str = "script.js",
        n: int = 40,
        limits: SandboxLimits = FAST_LIMITS,
    ) -> JsScriptHost:
        series = make_series(n)
        engine = IndicatorEngine(plugins.registry)
        engine.attach_series(series)
        host = JsScriptHost(
            source,
            name=name,
            filename=filename,
            limits=limits,
            indicators=engine.provider(series.symbol),
            symbol=series.symbol,
        )
        made.append(host)
        return host

    yield build
    for host in made:
        host.close()


def drive(host: JsScriptHost, n: int) -> tuple[StrategyError | None, list[CallResult]]:
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


def test_corpus_is_there() -> None:
    assert len(FILES) >= 40
    for f in FILES:
        assert header(f.read_text(), "expect"), f"{f.name} has no '// expect:' header"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_hostile_js_is_refused_or_contained(path: Path, make_js: Callable[..., JsScriptHost]) -> None:
    source = path.read_text()
    expect = (header(source, "expect") or "").split()
    line = header(source, "line")
    host = make_js(source, name=path.stem, filename=path.name)
    error, results = drive(host, 40)
    if expect == ["ok"]:
        assert error is None, f"{path.name}: {error}"
        assert host.alive
        assert all(not r.orders for r in results), "a contained script placed no orders"
    else:
        assert error is not None, f"{path.name} was neither refused nor stopped"
        assert error.kind in expect, f"{path.name}: {error!r}"
        if line is not None:
            assert error.line == int(line), f"{path.name}: {error!r}"
        assert error.strategy == path.stem
        assert not host.alive
        assert all(not r.orders for r in results if r.error is not None)
    for r in results:
        lim = host.limits
        assert len(r.logs) <= lim.max_log_lines_per_call + 1
        assert sum(len(x) for x in r.logs) <= lim.max_log_bytes_per_call + 200
    host.close()
    assert not host.alive


def test_good_script_keeps_running_beside_hostile_ones(make_js: Callable[..., JsScriptHost]) -> None:
    good = make_js(
        "function onBar(ctx, bar) {\n  if (ctx.barIndex === 5) ctx.buy(1, { stopLoss: bar.close * 0.9 });\n}\n"
    )
    good.load()
    good.set_series(make_series(40))
    assert good.start(snapshot(), None).error is None
    for bad_name in ("infinite_loop_call.js", "memory_creep.js", "array_buffer_growth.js", "promise_loop.js"):
        bad = make_js((HOSTILE / bad_name).read_text(), name="bad")
        error, _ = drive(bad, 40)
        assert error is not None and error.kind == "limit" and not bad.alive
    res = good.run(0, 40, snapshot())
    assert res.error is None and res.upto == 5 and len(res.orders) == 1
    assert good.alive


def test_worker_process_is_gone_after_a_limit(make_js: Callable[..., JsScriptHost]) -> None:
    host = make_js((HOSTILE / "infinite_loop_call.js").read_text())
    host.load()
    assert host._proc is not None
    pid = host._proc.pid
    host.set_series(make_series(10))
    res = host.run(0, 10, snapshot())
    assert res.error is not None and res.error.kind == "limit"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_worker_is_confined(make_js: Callable[..., JsScriptHost]) -> None:
    host = make_js("function onBar(ctx, bar) {}\n")
    host.load()
    assert host.confinement.get("seccomp") == "ok"
    assert host.confinement.get("RLIMIT_NPROC") == "ok"
    assert host.v8_version.startswith("8.")
