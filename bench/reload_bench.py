"""Benchmark: hot-reload latency, from a script file write to the new version handling the next event.

Starts a real live Runtime (SQLite store in a temp folder, paper broker, synthetic feed at one bar per
``bar_ms`` milliseconds, API off) with its ScriptWatcher, then rewrites a script ``edits`` times. Each
version logs its generation number on every bar; the latency of an edit is the time from just before
the write to the first log line of the new generation (received on the kernel's event stream). It
therefore includes the watcher's grouping of changes, loading and validating the new version in a
fresh sandbox, the swap under the kernel lock and the wait for the next bar (at most ``bar_ms``).

``python -m bench.reload_bench [edits] [js|py] [gap_s]``; ``bench/__main__.py`` calls :func:`bench_reload`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

JS = """
let seen = 0;
function onBar(ctx, bar) {
  seen += 1;
  ctx.state.bars = (ctx.state.bars || 0) + 1;
  ctx.log("gen GEN", seen);
}
"""
PY = """
def on_bar(ctx, bar):
    ctx.state["bars"] = ctx.state.get("bars", 0) + 1
    ctx.log("gen GEN")
"""


async def _bench(edits: int, language: str, bar_ms: float, gap_s: float) -> dict[str, Any]:
    from stratkernel.core.config import KernelConfig
    from stratkernel.core.runtime import Runtime

    template, ext = (JS, ".js") if language == "js" else (PY, ".py")
    with tempfile.TemporaryDirectory(prefix="stratkernel-reload-bench-") as tmp:
        root = Path(tmp)
        scripts = root / "scripts"
        scripts.mkdir()
        path = scripts / f"bench{ext}"
        path.write_text(template.replace("GEN", "0"))
        cfg = KernelConfig(
            data_dir=str(root / "data"),
            symbols=["SYNTH-USD"],
            strategies=[],
            equity_snapshot_s=60.0,
            data={"source": "synthetic", "options": {"interval_ms": 60_000, "speed": 60_000 / bar_ms}},
            sandbox={"scripts_dir": str(scripts), "load_scripts": True},
            api={"enabled": False},
        )
        runtime = Runtime(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await asyncio.wait_for(runtime.ready.wait(), 60)
        assert runtime.kernel is not None
        first_seen: dict[int, float] = {}
        reload_outcomes: list[str] = []

        def on_event(ev: Any) -> None:
            if ev.type == "strategy_log" and ev.data["line"].startswith("gen "):
                gen = int(ev.data["line"].split()[1])
                first_seen.setdefault(gen, time.perf_counter())
            elif ev.type == "strategy_reloaded":
                reload_outcomes.append(ev.data["outcome"])

        runtime.kernel.subscribe(on_event)
        watcher = _watcher(runtime)
        await asyncio.sleep(0.6)  # the watcher is watching
        latencies: list[float] = []
        steps: dict[str, list[float]] = {"detect": [], "load": [], "swap": [], "next_bar": []}
        try:
            for gen in range(1, edits + 1):
                t0 = time.perf_counter()
                path.write_text(template.replace("GEN", str(gen)))
                for _ in range(1000):
                    if gen in first_seen:
                        break
                    await asyncio.sleep(0.002)
                else:
                    raise RuntimeError(f"edit {gen} was not picked up within 2 s: {reload_outcomes}")
                latencies.append((first_seen[gen] - t0) * 1000.0)
                ev = watcher.history[-1] if watcher is not None and watcher.history else None
                if ev is not None and ev.marks:
                    steps["detect"].append((ev.marks["seen"] - t0) * 1000.0)
                    steps["load"].append((ev.marks["loaded"] - ev.marks["seen"]) * 1000.0)
                    steps["swap"].append((ev.marks["swapped"] - ev.marks["loaded"]) * 1000.0)
                    steps["next_bar"].append((first_seen[gen] - ev.marks["swapped"]) * 1000.0)
                await asyncio.sleep(
                    gap_s
                )  # time between two saves (the warm spare worker restarts meanwhile)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, max(0, round(0.95 * len(latencies)) - 1))]
    return {
        "language": language,
        "edits": edits,
        "bar_ms": bar_ms,
        "gap_s": gap_s,
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(latencies[-1], 1),
        "min_ms": round(latencies[0], 1),
        "reloads": reload_outcomes.count("reloaded"),
        "failed": reload_outcomes.count("failed"),
        **{f"{k}_p50_ms": round(statistics.median(v), 1) for k, v in steps.items() if v},
    }


def _watcher(runtime: Any) -> Any:
    """The runtime's ScriptWatcher (for the per-step marks), found through its task's coroutine."""
    for task in runtime._tasks:
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is not None and "self" in frame.f_locals and hasattr(frame.f_locals["self"], "history"):
            return frame.f_locals["self"]
    return None


def bench_reload(
    edits: int = 20, *, language: str = "js", bar_ms: float = 5.0, gap_s: float = 0.5
) -> dict[str, Any]:
    """p50/p95 milliseconds from a file write to the new version handling the next bar.

    ``gap_s`` is the pause between one edit being picked up and the next write. Below the time a
    worker takes to start (~0.1-0.3 s here) some edits find no warm spare and pay the process start.
    """
    return asyncio.run(_bench(edits, language, bar_ms, gap_s))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    edits = int(args[0]) if args else 20
    langs = [args[1]] if len(args) > 1 else ["js", "py"]
    gap = float(args[2]) if len(args) > 2 else 0.5
    for lang in langs:
        print(bench_reload(edits, language=lang, gap_s=gap))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
