"""Hot reload of user scripts while ``stratkernel run`` is up: :class:`ScriptWatcher`.

The runtime starts ``ScriptWatcher(kernel, scripts_dir, sandbox_config).run(stop)`` as a task. It
watches ``scripts_dir`` with watchfiles and, per script name (the file stem):

* a **new** ``<name>.py``/``<name>.js`` is loaded in a sandbox and started;
* a **changed** one is built and loaded in a fresh sandbox *outside* the kernel lock (compile, PARAMS,
  validation), then, under ``kernel.lock`` (so between two events, never inside one), given the bars
  so far and the old slot's ``ctx.state`` and started; only if ``on_start`` succeeds does it replace the
  old slot, otherwise the old version keeps running and the error (with its line) is reported;
* a **deleted** one is stopped; its positions are kept or flattened (reduce-only market orders through
  the kernel's gate) per ``sandbox.on_delete``;
* ``<name>.params.json`` (a JSON object) overrides that script's parameters; changing, adding or
  removing it reloads the script the same way, without a code change.

Editors' save patterns: changes are grouped by watchfiles (``step``/``debounce``), a file that is
empty is treated as "being written" (nothing happens until it has content), a file that vanishes is
re-checked after a grace period before it counts as deleted (write-temp-then-rename, delete-then-
write), and editor temp/backup files (``.*``, ``*~``, ``#*#``, ``4913``, ``*.swp``, ``*.tmp``) are ignored.
A version equal to the last one applied (same content hash and parameters) is not reloaded.

Every outcome is an event ``strategy_reloaded`` on the kernel's stream (``strategy``, ``old_version``,
``new_version``, ``outcome`` = started | reloaded | failed | stopped, ``reason``, ``error``), a row in
the store's event log and a log line naming the script, the old and new content hash and the outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratkernel.core.errors import StrategyError
from stratkernel.core.model import OrderRequest, OrderType, Side

if TYPE_CHECKING:
    from stratkernel.core.config import SandboxConfig
    from stratkernel.core.kernel import Kernel

log = logging.getLogger("stratkernel.reload")

SCRIPT_SUFFIXES = (".py", ".js")
PARAMS_SUFFIX = ".params.json"
MAX_PARAMS_BYTES = 65536


def script_name(path: Path) -> str | None:
    """The strategy name a changed file belongs to, or None for files the watcher ignores."""
    name = path.name
    if (
        not name
        or name.startswith((".", "#", "~"))
        or name.endswith(("~", ".swp", ".swx", ".tmp", ".bak"))
        or name == "4913"
    ):
        return None
    if name.endswith(PARAMS_SUFFIX):
        stem = name[: -len(PARAMS_SUFFIX)]
    elif path.suffix in SCRIPT_SUFFIXES:
        stem = path.stem
    else:
        return None
    return stem if stem and all(c.isalnum() or c in "_-" for c in stem) else None


def bars_so_far(kernel: Kernel, symbol: str) -> Any:
    """The live bars the kernel has seen for ``symbol``, as a BarSeries (None before the first bar).

    A script host started in a running live kernel must get these (``host.set_series``) before its
    first ``append_bar``, so its bar index matches the kernel's; the watcher does that on every swap.
    """
    return kernel.live_series(symbol)


@dataclass
class ReloadEvent:
    """One reload outcome, as emitted on the kernel's event stream."""

    strategy: str
    outcome: str
    reason: str
    old_version: str | None
    new_version: str | None
    error: dict[str, Any] | None = None
    at: float = field(default_factory=time.perf_counter)
    #: perf_counter marks of the steps (seen, loaded, swapped), for the reload benchmark
    marks: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # ``ok``/``version``/``previous`` are the same facts under the names the first reload API used
        return {
            "strategy": self.strategy,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "outcome": self.outcome,
            "reason": self.reason,
            "error": self.error,
            "ok": self.outcome != "failed",
            "version": self.new_version,
            "previous": self.old_version,
            **({"unchanged": True} if self.outcome == "unchanged" else {}),
        }


class ScriptWatcher:
    """Watches ``scripts_dir`` and applies new, changed and deleted scripts to a running kernel."""

    def __init__(
        self,
        kernel: Kernel,
        scripts_dir: Path,
        config: SandboxConfig | None = None,
        *,
        step_ms: int = 30,
        debounce_ms: int = 400,
        vanish_grace_s: float = 0.25,
    ) -> None:
        self.kernel = kernel
        self.scripts_dir = Path(scripts_dir)
        self.config = config if config is not None else kernel.config.sandbox
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.vanish_grace_s = vanish_grace_s
        self.history: list[ReloadEvent] = []
        self.ready = asyncio.Event()
        #: name -> (content hash, params json) last applied or attempted, so a re-save of the same
        #: content does nothing and a broken version is not retried until it changes
        self._applied: dict[str, tuple[str, str]] = {}
        self._lock = asyncio.Lock()
        self._seen = 0.0

    # ---- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        self.scripts_dir.mkdir(parents=True, exist_ok=True)
        for name, slot in self.kernel.slots.items():  # what the runtime loaded at start is "applied"
            path = self._script_path(name)
            if path is not None and Path(slot.ref).resolve() == path.resolve():
                self._applied[name] = (slot.version, self._params_key(self._read_params(name)[0]))
        log.info("watching %s for script changes", self.scripts_dir)
        watcher = awatch(
            self.scripts_dir,
            stop_event=stop,
            step=self.step_ms,
            debounce=self.debounce_ms,
            recursive=False,
            watch_filter=lambda _change, p: script_name(Path(p)) is not None,
        )
        spares = self._keep_spares()
        self.ready.set()
        try:
            await self._watch(watcher)
        finally:
            for cls in spares:
                cls.drop_spare()

    def _keep_spares(self) -> list[Any]:
        """Keep a Python and a JS worker started ahead of time: a reload then skips the process start."""
        try:
            from stratkernel.sandbox.js_host import JsScriptHost, WarmScriptHost
        except ImportError:
            return []
        kept = []
        for cls, filename in ((WarmScriptHost, "spare.py"), (JsScriptHost, "spare.js")):
            probe = self._host("spare", "", filename, self.kernel.config.symbols[0])
            cls.keep_spare(probe.limits, probe.indicators, probe.symbol)
            kept.append(cls)
        return kept

    def _host(self, name: str, source: str, filename: str, symbol: str) -> Any:
        """A (not yet loaded) host for ``filename``'s language, able to take a warm spare worker."""
        from stratkernel.core.slots import host_from_source

        host = host_from_source(self.kernel, name, source, filename, symbol)
        if filename.endswith(".py"):
            try:
                from stratkernel.sandbox.js_host import WarmScriptHost
            except ImportError:
                return host
            host = WarmScriptHost(
                source,
                name=name,
                filename=filename,
                limits=host.limits,
                indicators=host.indicators,
                symbol=symbol,
            )
        return host

    async def _watch(self, watcher: Any) -> None:
        async for changes in watcher:
            names = sorted({n for _, p in changes if (n := script_name(Path(p))) is not None})
            for name in names:
                try:
                    await self.sync(name)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not end hot reload for every other script
                    log.exception("reload of %s failed unexpectedly", name)

    # ---- one script -----------------------------------------------------------------------------

    def _script_path(self, name: str) -> Path | None:
        for suffix in SCRIPT_SUFFIXES:
            p = self.scripts_dir / f"{name}{suffix}"
            if p.is_file():
                return p
        return None

    def _read_params(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """The override file's object (None if there is none) and a problem with it (or None)."""
        p = self.scripts_dir / f"{name}{PARAMS_SUFFIX}"
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"{p.name}: {exc.strerror}"
        if not text.strip():
            return None, "empty"
        if len(text) > MAX_PARAMS_BYTES:
            return None, f"{p.name}: larger than {MAX_PARAMS_BYTES} bytes"
        try:
            value = json.loads(text)
        except ValueError as exc:
            return None, f"{p.name}: not valid JSON ({exc})"
        if not isinstance(value, dict):
            return None, f"{p.name}: must be a JSON object of parameter values"
        return value, None

    @staticmethod
    def _params_key(params: dict[str, Any] | None) -> str:
        return json.dumps(params, sort_keys=True)

    def _config_params(self, name: str) -> dict[str, Any]:
        for sc in self.kernel.config.strategies:
            if sc.name == name:
                return dict(sc.params)
        return {}

    async def sync(self, name: str) -> ReloadEvent | None:
        """Bring the kernel in line with what ``scripts_dir`` holds for ``name`` now."""
        self._seen = time.perf_counter()
        async with self._lock:
            path = self._script_path(name)
            if path is None:
                # write-temp-then-rename and delete-then-write pass through "missing": look again
                await asyncio.sleep(self.vanish_grace_s)
                path = self._script_path(name)
                if path is None:
                    return await self._deleted(name)
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                return self._report(
                    ReloadEvent(
                        name,
                        "failed",
                        "unreadable",
                        self._current_version(name),
                        None,
                        {"kind": "load", "message": f"{path.name}: {exc}", "line": None},
                    )
                )
            if not source.strip():
                log.debug("%s is empty (being written?); waiting for content", path.name)
                return None
            overrides, problem = self._read_params(name)
            if problem == "empty":
                return None
            version = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:12]
            key = (version, self._params_key(overrides))
            if self._applied.get(name) == key:
                cur = self._current_version(name)
                return ReloadEvent(name, "unchanged", "same content", cur, version)
            self._applied[name] = key
            old_version = self._current_version(name)
            if problem is not None:
                return self._report(
                    ReloadEvent(
                        name,
                        "failed",
                        "params",
                        old_version,
                        version,
                        {"kind": "load", "message": problem, "line": None},
                    )
                )
            # Base values: what the running version uses (config, API or an earlier override file), else
            # the config's; the override file goes on top. Removing the file keeps the current values.
            old = self.kernel.slots.get(name)
            base = dict(old.params) if old is not None else self._config_params(name)
            params = {**base, **(overrides or {})}
            return await self._apply(name, path, source, version, params, old_version)

    async def reload_path(self, path: Path) -> list[dict[str, Any]]:
        """Apply what ``path`` (a script or its params file) holds now; the outcomes as event dicts."""
        name = script_name(Path(path))
        if name is None:
            return []
        ev = await self.sync(name)
        return [] if ev is None else [ev.as_dict()]

    def _current_version(self, name: str) -> str | None:
        slot = self.kernel.slots.get(name)
        return slot.version if slot is not None else None

    async def _apply(
        self,
        name: str,
        path: Path,
        source: str,
        version: str,
        params: dict[str, Any],
        old_version: str | None,
    ) -> ReloadEvent:
        from stratkernel.core.slots import ScriptSlot

        kernel = self.kernel
        old = kernel.slots.get(name)
        reason = "new" if old is None else ("params" if old.version == version else "changed")
        symbol = old.symbol if old is not None else kernel.config.symbols[0]
        host = self._host(name, source, path.name, symbol)
        # 1. compile and validate in the sandbox, outside the lock: events keep flowing meanwhile
        try:
            await asyncio.to_thread(host.load, params)
        except StrategyError as exc:
            host.close()
            return self._report(ReloadEvent(name, "failed", reason, old_version, version, exc.as_dict()))
        loaded = time.perf_counter()
        saved_state = None
        if old is None and kernel.store is not None:
            for row in await kernel.store.strategies():
                if row["name"] == name:
                    saved_state = row.get("state")
        # 2. swap between two events
        async with kernel.lock:
            old = kernel.slots.get(name)
            state = old.state if old is not None else saved_state
            try:
                bars = self._history(symbol)
                if bars is not None:
                    await asyncio.to_thread(host.set_series, bars)
            except StrategyError as exc:
                host.close()
                return self._report(ReloadEvent(name, "failed", reason, old_version, version, exc.as_dict()))
            slot = ScriptSlot(kernel, name, str(path), symbol, host, state)
            slot.params_from_host()
            res = slot.start()
            if slot.status != "running":
                err = slot.error.as_dict() if slot.error else None
                slot.close()
                if old is None:
                    kernel.slots[name] = slot  # visible as failed (status, error) until the file is fixed
                return self._report(ReloadEvent(name, "failed", reason, old_version, version, err))
            if old is not None:
                old.close()  # no on_stop: the strategy goes on, only its code changed
            kernel.slots[name] = slot
            if res:
                await kernel._process(slot, *res)
                await kernel.drain()
            await self._save(slot)
        return self._report(
            ReloadEvent(
                name,
                "started" if old is None else "reloaded",
                reason,
                old_version,
                version,
                marks={"seen": self._seen, "loaded": loaded, "swapped": time.perf_counter()},
            )
        )

    def _history(self, symbol: str) -> Any:
        return bars_so_far(self.kernel, symbol)

    async def _deleted(self, name: str) -> ReloadEvent | None:
        kernel = self.kernel
        self._applied.pop(name, None)
        slot = kernel.slots.get(name)
        if (
            slot is None
            or slot.kind != "script"
            or Path(slot.ref).parent.resolve() != self.scripts_dir.resolve()
        ):
            return None
        policy = self.config.on_delete
        async with kernel.lock:
            if slot.status == "running":
                res = slot.stop()
                if res:
                    await kernel._process(slot, *res)
                if policy == "flatten":
                    await self._flatten(name)
                await kernel.drain()
            slot.close()
            slot.status = "stopped" if slot.status != "failed" else slot.status
            await self._save(slot)
            del kernel.slots[name]
        return self._report(ReloadEvent(name, "stopped", f"deleted ({policy})", slot.version, None))

    async def _flatten(self, name: str) -> None:
        kernel = self.kernel
        cancels = list(kernel.open_order_ids(name))
        requests = []
        for i, pos in enumerate(kernel.portfolio.strategy_positions(name)):
            if pos.is_flat:
                continue
            requests.append(
                OrderRequest(
                    pos.symbol,
                    Side.SELL if pos.qty > 0 else Side.BUY,
                    abs(pos.qty),
                    OrderType.MARKET,
                    reduce_only=True,
                    strategy=name,
                    source="reload",
                    client_id=f"deleted{i}",
                    tag="deleted",
                )
            )
        for oid in cancels:
            await kernel.cancel(oid, strategy=name)
        if requests:
            await kernel._process(kernel.slots.get(name), requests, [])

    async def _save(self, slot: Any) -> None:
        store = self.kernel.store
        if store is None:
            return
        await store.save_strategy(
            slot.name,
            ref=slot.ref,
            kind=slot.kind,
            version=slot.version,
            status=slot.status,
            params=slot.params,
            state=slot.state,
            error=slot.error.as_dict() if slot.error else None,
        )

    def _report(self, ev: ReloadEvent) -> ReloadEvent:
        self.history.append(ev)
        data = ev.as_dict()
        err = ev.error or {}
        where = f" (line {err['line']})" if err.get("line") else ""
        text = f": {err.get('kind')} error{where}: {err.get('message')}" if ev.error else ""
        (log.warning if ev.outcome == "failed" else log.info)(
            "reload %s: %s -> %s %s (%s)%s",
            ev.strategy,
            ev.old_version or "-",
            ev.new_version or "-",
            ev.outcome,
            ev.reason,
            text,
        )
        self.kernel.emit("strategy_reloaded", data)
        store = self.kernel.store
        if store is not None:
            task = asyncio.get_running_loop().create_task(
                store.record_event(self.kernel.now_ms(), "strategy_reloaded", data)
            )
            self._pending_writes.add(task)
            task.add_done_callback(self._pending_writes.discard)
        return ev

    _pending_writes: set[asyncio.Task[Any]] = set()
