"""Hot reload inside a real ``stratkernel run`` runtime, driven by real file writes.

A Runtime (real SQLite store, paper broker, a fast synthetic feed, API off) runs with its ScriptWatcher;
the tests write, rename, truncate, break, fix and delete files in its scripts folder the way editors do
and watch the kernel's event stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from stratkernel.core.config import KernelConfig
from stratkernel.core.runtime import Runtime

JS = """
function onStart(ctx) {
  ctx.state.starts = (ctx.state.starts || 0) + 1;
}
function onBar(ctx, bar) {
  ctx.state.n = (ctx.state.n || 0) + 1;
  ctx.log("VERSION", ctx.state.n, ctx.state.starts, ctx.params.tag);
}
const PARAMS = { tag: { default: "plain", choices: ["plain", "fancy"] } };
"""
PY = """
PARAMS = {"tag": {"default": "plain", "choices": ["plain", "fancy"]}}

def on_start(ctx):
    ctx.state["starts"] = ctx.state.get("starts", 0) + 1

def on_bar(ctx, bar):
    ctx.state["n"] = ctx.state.get("n", 0) + 1
    ctx.log("VERSION", ctx.state["n"], ctx.state["starts"], ctx.params["tag"])
"""
BUYER = """
function onBar(ctx, bar) {
  if (!ctx.state.bought) {
    ctx.state.bought = true;
    ctx.buy(1, { stopLoss: bar.close * 0.5 });
  }
  ctx.log("holding", ctx.position.qty);
}
"""


def version(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:12]


class Live:
    """A running Runtime plus its event log."""

    def __init__(self, runtime: Runtime, scripts: Path) -> None:
        self.runtime = runtime
        self.scripts = scripts
        self.events: list[Any] = []

    @property
    def kernel(self) -> Any:
        return self.runtime.kernel

    def reloads(self, name: str | None = None) -> list[dict[str, Any]]:
        return [
            e.data
            for e in self.events
            if e.type == "strategy_reloaded" and (name is None or e.data["strategy"] == name)
        ]

    def logs(self, name: str) -> list[str]:
        return [
            e.data["line"] for e in self.events if e.type == "strategy_log" and e.data["strategy"] == name
        ]

    async def until(self, cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        for _ in range(int(timeout / 0.02)):
            value = cond()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; reloads: {self.reloads()}")

    async def next_log(self, name: str, marker: str) -> list[str]:
        """Wait until a new log line of ``name`` starts with ``marker``; return its parts."""
        seen = len(self.logs(name))
        line = await self.until(
            lambda: next((x for x in self.logs(name)[seen:] if x.startswith(marker)), None),
            f"{name}: {marker}",
        )
        return line.split()

    async def reload_count(self, name: str, count: int) -> dict[str, Any]:
        await self.until(lambda: len(self.reloads(name)) >= count, f"reload #{count} of {name}")
        return self.reloads(name)[count - 1]


@pytest.fixture
async def live(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Live]:
    on_delete = getattr(request, "param", "keep")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    cfg = KernelConfig(
        data_dir=str(tmp_path / "data"),
        symbols=["SYNTH-USD"],
        strategies=[],
        data={"source": "synthetic", "options": {"interval_ms": 60_000, "speed": 3000.0, "seed": 3}},
        sandbox={
            "scripts_dir": str(scripts),
            "load_scripts": True,
            "on_delete": on_delete,
            "call_timeout_s": 2.0,
        },
        api={"enabled": False},
    )
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await asyncio.wait_for(runtime.ready.wait(), 30)
    lv = Live(runtime, scripts)
    assert runtime.kernel is not None
    runtime.kernel.subscribe(lv.events.append)
    await asyncio.sleep(0.5)  # the watcher task starts watching
    try:
        yield lv
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.parametrize(("ext", "template"), [(".js", JS), (".py", PY)])
async def test_new_changed_and_editor_save_patterns(live: Live, ext: str, template: str) -> None:
    path = live.scripts / f"strat{ext}"
    v1 = template.replace("VERSION", "v1")
    path.write_text(v1)  # a new file: loaded and started
    ev = await live.reload_count("strat", 1)
    assert ev["outcome"] == "started" and ev["new_version"] == version(v1) and ev["old_version"] is None
    parts = await live.next_log("strat", "v1")
    assert parts[2] == "1" and parts[3] == "plain"

    # 1. write in place
    v2 = template.replace("VERSION", "v2")
    path.write_text(v2)
    ev = await live.reload_count("strat", 2)
    assert (ev["outcome"], ev["old_version"], ev["new_version"]) == ("reloaded", version(v1), version(v2))
    n_before = int(live.logs("strat")[-1].split()[1])
    parts = await live.next_log("strat", "v2")
    assert int(parts[1]) > n_before and parts[2] == "2"  # ctx.state carried over; on_start ran again

    # 2. write a temp file, then rename it over the script (vim/VS Code/JetBrains "safe write")
    v3 = template.replace("VERSION", "v3")
    tmp = live.scripts / f".strat{ext}.swp"
    tmp.write_text(v3)
    os.replace(tmp, path)
    ev = await live.reload_count("strat", 3)
    assert ev["outcome"] == "reloaded" and ev["new_version"] == version(v3)
    await live.next_log("strat", "v3")

    # 3. a burst of writes: the last one wins, never a half-seen version
    for k in range(5):
        path.write_text(template.replace("VERSION", f"v4{k}"))
        await asyncio.sleep(0.005)
    await live.until(
        lambda: live.reloads("strat")[-1]["new_version"] == version(template.replace("VERSION", "v44")),
        "the burst's last version",
    )
    await live.next_log("strat", "v44")
    assert all(r["outcome"] == "reloaded" for r in live.reloads("strat")[3:])

    # 4. a file briefly empty (truncate, then write) is not a broken version
    with open(path, "w"):
        pass
    await asyncio.sleep(0.15)
    v5 = template.replace("VERSION", "v5")
    path.write_text(v5)
    await live.until(lambda: live.reloads("strat")[-1]["new_version"] == version(v5), "v5")
    assert not [r for r in live.reloads("strat") if r["outcome"] == "failed"]
    await live.next_log("strat", "v5")
    assert live.kernel.slots["strat"].status == "running"


@pytest.mark.parametrize(
    ("ext", "broken", "line"),
    [
        (".js", JS.replace("VERSION", "broken").replace("ctx.state.n = ", "ctx.state.n = ;"), 6),
        (
            ".js",
            JS.replace("VERSION", "broken").replace("ctx.state.starts = ", "null.x; ctx.state.starts = "),
            3,
        ),
        (
            ".py",
            PY.replace("VERSION", "broken").replace(
                'ctx.state["starts"] = ', 'ctx.state["starts"] = 1 / 0 + '
            ),
            5,
        ),
        (".py", PY.replace("VERSION", "broken") + "\nx = ().__class__\n", 11),
    ],
)
async def test_broken_version_keeps_the_old_one_and_a_fix_recovers(
    live: Live, ext: str, broken: str, line: int
) -> None:
    path = live.scripts / f"strat{ext}"
    template = JS if ext == ".js" else PY
    path.write_text(template.replace("VERSION", "good1"))
    await live.reload_count("strat", 1)
    await live.next_log("strat", "good1")
    path.write_text(broken)
    ev = await live.reload_count("strat", 2)
    assert ev["outcome"] == "failed" and ev["ok"] is False
    assert ev["error"]["line"] == line, ev
    assert ev["new_version"] == version(broken) and ev["old_version"] == version(
        template.replace("VERSION", "good1")
    )
    await live.next_log("strat", "good1")  # the old version keeps handling bars
    assert live.kernel.slots["strat"].version == version(template.replace("VERSION", "good1"))
    fixed = template.replace("VERSION", "fixed")
    path.write_text(fixed)
    ev = await live.reload_count("strat", 3)
    assert ev["outcome"] == "reloaded" and ev["new_version"] == version(fixed)
    await live.next_log("strat", "fixed")
    stored = await live.runtime.store.events(type_="strategy_reloaded")  # type: ignore[union-attr]
    assert [
        json.loads(r["data"])["outcome"] if isinstance(r["data"], str) else r["data"]["outcome"]
        for r in reversed(stored)
    ][-3:] == ["started", "failed", "reloaded"]


async def test_params_override_file_reloads_without_a_code_change(live: Live) -> None:
    path = live.scripts / "strat.js"
    path.write_text(JS.replace("VERSION", "p"))
    await live.reload_count("strat", 1)
    parts = await live.next_log("strat", "p")
    assert parts[3] == "plain"
    (live.scripts / "strat.params.json").write_text(json.dumps({"tag": "fancy"}))
    ev = await live.reload_count("strat", 2)
    assert ev["outcome"] == "reloaded" and ev["reason"] == "params" and ev["new_version"] == ev["old_version"]
    parts = await live.next_log("strat", "p")
    assert parts[3] == "fancy"
    assert live.kernel.slots["strat"].params == {"tag": "fancy"}
    (live.scripts / "strat.params.json").write_text(json.dumps({"tag": "nope"}))
    ev = await live.reload_count("strat", 3)
    assert ev["outcome"] == "failed" and "tag" in ev["error"]["message"]
    parts = await live.next_log("strat", "p")
    assert parts[3] == "fancy"  # refused values leave the running version alone


@pytest.mark.parametrize("live", ["keep", "flatten"], indirect=True)
async def test_deleted_script_is_stopped_by_policy(live: Live) -> None:
    policy = live.kernel.config.sandbox.on_delete
    path = live.scripts / "buyer.js"
    path.write_text(BUYER)
    await live.reload_count("buyer", 1)
    await live.until(lambda: any(line == "holding 1" for line in live.logs("buyer")), "the position")
    path.unlink()
    ev = await live.reload_count("buyer", 2)
    assert ev["outcome"] == "stopped" and ev["reason"] == f"deleted ({policy})"
    assert "buyer" not in live.kernel.slots

    def qty() -> float:
        return sum(p.qty for p in live.kernel.portfolio.strategy_positions("buyer"))

    if policy == "flatten":
        await live.until(lambda: qty() == 0, "the flattening fill")
    else:
        await asyncio.sleep(0.3)
        assert qty() == 1
    rows = {r["name"]: r for r in await live.runtime.store.strategies()}  # type: ignore[union-attr]
    assert rows["buyer"]["status"] == "stopped" and rows["buyer"]["state"] == {"bought": True}
