"""Hot reload of user scripts in a live kernel.

:class:`ScriptWatcher` watches the scripts folder (watchfiles). When a loaded script's file changes:

1. the new version is compiled under the policy and loaded in a *fresh* sandbox worker, outside the
   kernel's lock, so a slow or broken version never holds up trading;
2. a version that fails (syntax, policy, load error, ``on_start`` failure) is reported — event
   ``strategy_reloaded`` with ``ok: false`` and the error with its line — and the old version keeps
   running untouched;
3. a good version is swapped in under the kernel's lock, i.e. between two events, never in the middle
   of one: it is given the bars seen so far (so its bar indices match the kernel's), starts with the old
   version's ``ctx.state`` and parameters, and the old worker is closed (its ``on_stop`` is not called:
   the strategy does not stop, it changes version).

A deleted file leaves the loaded version running (``sandbox.on_delete = "keep"``); flattening on delete
is not implemented here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import StrategyError, StratkernelError

log = logging.getLogger("stratkernel.reload")

SCRIPT_SUFFIXES = (".py", ".js")


class ScriptWatcher:
    """Watch ``scripts_dir`` and reload changed scripts of ``kernel`` (see the module docstring)."""

    def __init__(self, kernel: Any, scripts_dir: Path, config: Any = None, *, debounce_ms: int = 300) -> None:
        self.kernel = kernel
        self.scripts_dir = Path(scripts_dir)
        self.config = config
        self.debounce_ms = debounce_ms

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set."""
        from watchfiles import Change, awatch

        if not self.scripts_dir.is_dir():
            log.warning("scripts folder %s does not exist: hot reload is off", self.scripts_dir)
            return
        async for changes in awatch(
            self.scripts_dir, stop_event=stop, debounce=self.debounce_ms, recursive=False
        ):
            for change, raw in sorted(changes, key=lambda c: c[1]):
                path = Path(raw)
                if path.suffix not in SCRIPT_SUFFIXES:
                    continue
                if change == Change.deleted:
                    self._deleted(path)
                    continue
                try:
                    await self.reload_path(path)
                except Exception:  # the watcher must outlive any single bad reload
                    log.exception("reloading %s failed", path)

    def _slots_for(self, path: Path) -> list[Any]:
        target = path.resolve()
        return [
            s
            for s in list(self.kernel.slots.values())
            if getattr(s, "kind", "") == "script" and Path(s.ref).resolve() == target
        ]

    def _deleted(self, path: Path) -> None:
        for slot in self._slots_for(path):
            log.warning(
                "script %s was deleted; strategy %s keeps running its loaded version", path, slot.name
            )
            self.kernel.emit(
                "strategy_reloaded",
                {
                    "strategy": slot.name,
                    "ok": False,
                    "version": slot.version,
                    "message": "file deleted; the loaded version keeps running",
                },
            )

    async def reload_path(self, path: Path) -> list[dict[str, Any]]:
        """Reload every strategy that runs ``path``; return one report per strategy."""
        return [await self.reload_slot(slot, path) for slot in self._slots_for(path)]

    async def reload_slot(self, old: Any, path: Path) -> dict[str, Any]:
        from stratkernel.core.slots import ScriptSlot, make_host

        kernel = self.kernel
        name = old.name
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return self._report(
                name, old, False, error=StrategyError("load", f"cannot read {path.name}: {exc}")
            )
        version = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        if version == old.version and old.status == "running":
            return {"strategy": name, "ok": True, "unchanged": True, "version": version}
        # 1. validate and load the new version in a fresh worker, outside the kernel lock
        host = None
        try:
            host = make_host(kernel, name, path, old.symbol)
            await asyncio.to_thread(host.load, dict(old.params))
        except StrategyError as exc:
            if host is not None:
                host.close()
            return self._report(name, old, False, error=exc, version=version)
        except (StratkernelError, OSError) as exc:
            if host is not None:
                host.close()
            return self._report(name, old, False, error=StrategyError("load", str(exc)), version=version)
        # 2. swap between two events
        async with kernel.lock:
            bars = kernel.indicators._bars.get(old.symbol) or []
            try:
                if bars:
                    await asyncio.to_thread(host.set_series, _series_of(old.symbol, bars))
            except StrategyError as exc:
                host.close()
                return self._report(name, old, False, error=exc, version=version)
            new = ScriptSlot(kernel, name, old.ref, old.symbol, host, dict(old.state))
            new.params_from_host()
            requests = new.start()
            if new.status != "running" or new.error is not None:
                error = new.error or StrategyError("runtime", "on_start failed")
                new.close()
                return self._report(name, old, False, error=error, version=version)
            kernel.slots[name] = new
            old.close()
            if requests:
                await kernel._process(new, *requests)
            await kernel.drain()
        return self._report(name, old, True, version=version)

    def _report(
        self, name: str, old: Any, ok: bool, *, error: StrategyError | None = None, version: str = ""
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"strategy": name, "ok": ok, "version": version, "previous": old.version}
        if error is not None:
            data["error"] = error.as_dict()
            log.error("reload of %s refused, the previous version keeps running: %s", name, error)
        else:
            log.info("reloaded %s: %s -> %s", name, old.version, version)
        self.kernel.emit("strategy_reloaded", data)
        return data


def _series_of(symbol: str, bars: list[Any]) -> BarSeries:
    cols = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in bars], dtype=np.float64)
    ts = np.fromiter((b.ts for b in bars), dtype=np.int64, count=len(bars))
    return BarSeries(
        symbol,
        ts,
        cols[:, 0].copy(),
        cols[:, 1].copy(),
        cols[:, 2].copy(),
        cols[:, 3].copy(),
        cols[:, 4].copy(),
    )
