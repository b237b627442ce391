"""Hot reload in a live kernel: a good new version is swapped in with the state carried over; a broken
one is refused with its line and the old version keeps running."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stratkernel.core.config import KernelConfig
from stratkernel.core.kernel import Kernel
from stratkernel.sandbox.reload import ScriptWatcher
from stratkernel.testing import make_series, plugin_host

V1 = """
def on_start(ctx):
    ctx.state["starts"] = ctx.state.get("starts", 0) + 1

def on_bar(ctx, bar):
    ctx.state["v1_bars"] = ctx.state.get("v1_bars", 0) + 1
    ctx.log("v1", ctx.bar_index, len(ctx.history("close", 1000)))
"""
V2 = V1.replace('"v1_bars"', '"v2_bars"').replace('"v1"', '"v2"')
BROKEN = V1 + "\ndef on_fill(ctx, fill):\n    x = ().__class__\n"


async def live_kernel(script: Path) -> tuple[Kernel, list]:
    kernel = Kernel(KernelConfig(strategies=[], symbols=["TEST"]), plugin_host(), mode="live")
    await kernel.setup()
    kernel.add_strategy("s", str(script), symbol="TEST")
    events: list = []
    kernel.subscribe(events.append)
    await kernel.start_live()
    return kernel, events


def logs(events: list) -> list[str]:
    return [e.data["line"] for e in events if e.type == "strategy_log"]


async def test_reload_swaps_versions_between_bars_and_keeps_state(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(V1)
    kernel, events = await live_kernel(script)
    try:
        bars = make_series(8)
        for i in range(4):
            await kernel.on_live_bar(bars.bar(i))
        assert logs(events)[-1] == "v1 3 4"

        script.write_text(BROKEN)
        watcher = ScriptWatcher(kernel, tmp_path)
        (report,) = await watcher.reload_path(script)
        assert report["ok"] is False
        assert report["error"]["kind"] == "policy" and report["error"]["line"] == 10
        assert kernel.slots["s"].status == "running"
        await kernel.on_live_bar(bars.bar(4))
        assert logs(events)[-1] == "v1 4 5"  # the old version still runs

        script.write_text(V2)
        (report,) = await watcher.reload_path(script)
        assert report["ok"] is True, report
        slot = kernel.slots["s"]
        assert slot.version == report["version"] != report["previous"]
        for i in range(5, 8):
            await kernel.on_live_bar(bars.bar(i))
        assert logs(events)[-3:] == ["v2 5 6", "v2 6 7", "v2 7 8"]  # indices continue, history carried
        assert slot.state == {"starts": 2, "v1_bars": 5, "v2_bars": 3}
        reloads = [e.data for e in events if e.type == "strategy_reloaded"]
        assert [r["ok"] for r in reloads] == [False, True]
        assert (await watcher.reload_path(script))[0].get("unchanged") is True
    finally:
        await kernel.stop_slots()
        for s in kernel.slots.values():
            s.close()


async def test_watcher_picks_up_a_saved_file(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(V1)
    kernel, events = await live_kernel(script)
    stop = asyncio.Event()
    task = asyncio.create_task(ScriptWatcher(kernel, tmp_path, debounce_ms=50).run(stop))
    try:
        await asyncio.sleep(0.3)  # let the watcher start
        script.write_text(V2)
        for _ in range(100):
            if any(e.type == "strategy_reloaded" for e in events):
                break
            await asyncio.sleep(0.1)
        reloads = [e.data for e in events if e.type == "strategy_reloaded"]
        assert reloads and reloads[-1]["ok"] is True
        await kernel.on_live_bar(make_series(1).bar(0))
        assert logs(events)[-1] == "v2 0 1"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        for s in kernel.slots.values():
            s.close()
