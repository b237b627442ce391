"""``KernelService``: everything the API (and other front ends) may do with a running kernel.

Routes call this facade, never the kernel's internals, so every manual order takes the same gate
path as a strategy's, and every operator action is audited. Backtest jobs run in their own
subprocess, so a long backtest never slows live trading.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .events import Event
from .kernel import Kernel
from .model import TradingState, order_request_from_untrusted
from .plugins import PluginHost
from .store import Store, now_ms

MAX_LOG_LINES = 500
SCRIPT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class KernelService:
    def __init__(self, kernel: Kernel, store: Store, plugins: PluginHost) -> None:
        self.kernel = kernel
        self.store = store
        self.plugins = plugins
        self.started = time.time()
        self._logs: dict[str, collections.deque[dict[str, Any]]] = {}
        self.jobs: dict[str, BacktestJob] = {}
        kernel.subscribe(self._on_event)

    def _on_event(self, ev: Event) -> None:
        if ev.type == "strategy_log":
            name = str(ev.data.get("strategy", ""))
            buf = self._logs.setdefault(name, collections.deque(maxlen=MAX_LOG_LINES))
            buf.append({"ts": ev.ts, "line": ev.data.get("line", "")})

    def subscribe(self, callback: Any) -> Any:
        return self.kernel.subscribe(callback)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        k = self.kernel
        return {
            "mode": k.mode,
            "trading_state": k.trading_state.value,
            "state_reason": k.state_reason,
            "equity": k.portfolio.equity(),
            "cash": k.portfolio.cash,
            "stats": dict(k.stats),
            "strategies": len(k.slots),
            "uptime_s": round(time.time() - self.started, 1),
        }

    def plugins_report(self) -> dict[str, Any]:
        return self.plugins.report()

    # -- strategies -----------------------------------------------------------------------------
    async def strategies(self) -> list[dict[str, Any]]:
        rows = {r["name"]: r for r in await self.store.strategies()}
        out = []
        for name, slot in self.kernel.slots.items():
            out.append(slot.info())
            rows.pop(name, None)
        for name, row in rows.items():
            out.append(
                {
                    "name": name,
                    "ref": row["ref"],
                    "kind": row["kind"],
                    "symbol": None,
                    "version": row["version"],
                    "status": row["status"],
                    "params": row["params"],
                    "error": row["error"],
                    "resource_use": None,
                }
            )
        return out

    def logs(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._logs.get(name, ()))[-limit:]

    async def upload_script(
        self, name: str, source: str, *, language: str = "python", start: bool = True
    ) -> dict[str, Any]:
        """Validate a script in a sandbox first; only a script that loads is written and (re)started."""
        if not name or set(name) - SCRIPT_NAME_CHARS or len(name) > 64:
            raise ValidationError("name", name, "use 1-64 letters, digits, '_' or '-'")
        if language not in ("python", "javascript"):
            raise ValidationError("language", language, "must be 'python' or 'javascript'")
        ext = ".py" if language == "python" else ".js"
        from .slots import host_from_source

        scripts = Path(self.kernel.config.sandbox.scripts_dir)
        path = scripts / f"{name}{ext}"
        host = host_from_source(self.kernel, name, source, f"{name}{ext}", self.kernel.config.symbols[0])
        try:
            await asyncio.to_thread(host.load, None)
        finally:
            host.close()
        scripts.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(source, encoding="utf-8")
        tmp.replace(path)  # atomic: a watcher never sees half a file
        if start:
            await self.start_strategy(name, ref=str(path))
        return {"name": name, "path": str(path), "version": host.version}

    async def start_strategy(
        self, name: str, *, ref: str | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        async with self.kernel.lock:
            return await self._start_strategy(name, ref=ref, params=params)

    async def _start_strategy(
        self, name: str, *, ref: str | None, params: dict[str, Any] | None
    ) -> dict[str, Any]:
        k = self.kernel
        old = k.slots.get(name)
        if ref is None:
            if old is None:
                raise ValidationError("name", name, "unknown strategy")
            ref = old.ref
        state = old.state if old is not None else None
        if old is not None and old.status == "running":
            res = old.stop()
            if res:
                await k._process(old, *res)
            old.close()
            del k.slots[name]
        slot = k.add_strategy(
            name,
            ref,
            symbol=old.symbol if old else None,
            params=params if params is not None else (old.params if old else {}),
            state=state,
        )
        if slot.status == "running":
            res = slot.start()
            if res:
                await k._process(slot, *res)
        await k._settle_failures()
        await k.drain()
        return slot.info()

    async def stop_strategy(self, name: str) -> dict[str, Any]:
        async with self.kernel.lock:
            return await self._stop_strategy(name)

    async def _stop_strategy(self, name: str) -> dict[str, Any]:
        k = self.kernel
        slot = k.slots.get(name)
        if slot is None:
            raise ValidationError("name", name, "unknown strategy")
        if slot.status == "running":
            res = slot.stop()
            if res:
                await k._process(slot, *res)
            slot.close()
            await k.drain()
        await self.store.save_strategy(
            slot.name,
            ref=slot.ref,
            kind=slot.kind,
            version=slot.version,
            status=slot.status,
            params=slot.params,
            state=slot.state,
            error=slot.error.as_dict() if slot.error else None,
        )
        return slot.info()

    async def set_params(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.start_strategy(name, params=params)

    # -- orders and portfolio -------------------------------------------------------------------
    async def submit_order(self, raw: dict[str, Any], *, user: str) -> dict[str, Any]:
        req = order_request_from_untrusted(
            raw, strategy="", source=f"api:{user}", default_symbol=self.kernel.config.symbols[0]
        )
        async with self.kernel.lock:  # between two live events: one drain at a time on the store
            decision = await self.kernel.submit(req)
        return decision.as_dict()

    async def cancel_order(self, order_id: str) -> bool:
        async with self.kernel.lock:
            return await self.kernel.cancel(order_id)

    async def orders(
        self, *, open_only: bool = False, strategy: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        orders = await self.store.orders(open_only=open_only, strategy=strategy, limit=limit, offset=offset)
        from .kernel import order_event

        return [{**order_event(o), "created_ts": o.created_ts, "updated_ts": o.updated_ts} for o in orders]

    async def fills(
        self, *, strategy: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        fills = await self.store.fills(strategy=strategy, limit=limit, offset=offset)
        return [
            {
                "id": f.id,
                "order_id": f.order_id,
                "strategy": f.strategy,
                "symbol": f.symbol,
                "side": f.side.value,
                "qty": f.qty,
                "price": f.price,
                "fee": f.fee,
                "role": f.role,
                "ts": f.ts,
            }
            for f in fills
        ]

    def positions(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.kernel.portfolio.strategy_positions()]

    async def equity(self, *, since: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        return await self.store.equity_curve(since=since, limit=limit)

    async def audit(
        self, *, limit: int = 100, offset: int = 0, denied_only: bool = False
    ) -> list[dict[str, Any]]:
        rows = await self.store.audit(limit=limit, offset=offset, denied_only=denied_only)
        for r in rows:
            r["details"] = json.loads(r["details"])
            r["approved"] = bool(r["approved"])
        return rows

    # -- risk -----------------------------------------------------------------------------------
    def risk(self) -> dict[str, Any]:
        k = self.kernel
        state = {"trading_state": k.trading_state.value, "reason": k.state_reason}
        state.update(k.risk_snapshot())
        return {"state": state, "limits": k.config.risk.model_dump(mode="json")}

    async def halt(self, reason: str, *, user: str) -> dict[str, Any]:
        async with self.kernel.lock:
            if (
                self.kernel.risk is not None
            ):  # the kill switch: flattens first when [risk] halt_flattens is set
                await self.kernel.risk.kill_switch(reason, source=f"api:{user}")
            else:
                await self.kernel.set_trading_state(TradingState.HALTED, reason, source=f"api:{user}")
        return self.risk()

    async def resume(self, reason: str, *, user: str) -> dict[str, Any]:
        async with self.kernel.lock:
            await self.kernel.set_trading_state(TradingState.ACTIVE, reason, source=f"api:{user}")
        return self.risk()

    async def flatten(self, reason: str, *, user: str) -> list[dict[str, Any]]:
        k = self.kernel
        async with k.lock:
            await k.set_trading_state(TradingState.REDUCING, reason, source=f"api:{user}")
            decisions = await k.flatten(source=f"api:{user}")
            await k.set_trading_state(TradingState.HALTED, f"flattened: {reason}", source=f"api:{user}")
        return [d.as_dict() for d in decisions]

    async def set_limits(self, changes: dict[str, Any], *, user: str) -> dict[str, Any]:
        k = self.kernel
        from pydantic import ValidationError as PydanticError

        from .config import config_error_from
        from .risk import RiskConfig

        merged = {**k.config.risk.model_dump(), **changes}
        try:
            new = RiskConfig(**merged)
        except PydanticError as exc:
            raise config_error_from(exc) from None
        k.config = k.config.model_copy(update={"risk": new})
        assert k.gateway is not None
        k.rebuild_rules()
        await self.store.record_event(now_ms(), "risk_limits", {"user": user, "changes": changes})
        k.emit("risk_state", {"event": "limits_changed", "user": user, "changes": changes})
        return self.risk()

    # -- backtests ------------------------------------------------------------------------------
    async def submit_backtest(
        self, *, strategy: str, data: str, params: dict[str, Any] | None = None, user: str = ""
    ) -> dict[str, Any]:
        job = BacktestJob(uuid.uuid4().hex[:12], strategy, data, params or {})
        self.jobs[job.id] = job
        await self.store.save_backtest(
            job.id, strategy=strategy, params=job.params, data_ref=data, status="running"
        )
        job.task = asyncio.create_task(self._run_job(job))
        return job.info()

    async def _run_job(self, job: BacktestJob) -> None:
        await job.run()
        await self.store.save_backtest(
            job.id,
            strategy=job.strategy,
            params=job.params,
            data_ref=job.data,
            status=job.status,
            progress=job.progress,
            summary=job.summary,
            error=job.error,
        )

    def backtest_jobs(self) -> list[dict[str, Any]]:
        return [job.info() for job in self.jobs.values()]

    def scripts_dir(self) -> str:
        return str(self.kernel.config.sandbox.scripts_dir)

    def backtest(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise ValidationError("job_id", job_id, "unknown backtest job")
        return job.info()

    async def cancel_backtest(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise ValidationError("job_id", job_id, "unknown backtest job")
        job.cancel()
        if job.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        return job.info()


class BacktestJob:
    """One backtest in its own process (``python -m stratkernel.core.jobs``), reporting progress."""

    def __init__(self, job_id: str, strategy: str, data: str, params: dict[str, Any]) -> None:
        self.id = job_id
        self.strategy = strategy
        self.data = data
        self.params = params
        self.status = "running"
        self.progress = 0.0
        self.summary: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "strategy": self.strategy,
            "data": self.data,
            "params": self.params,
            "status": self.status,
            "progress": round(self.progress, 4),
            "summary": self.summary,
            "error": self.error,
        }

    async def run(self) -> None:
        spec = json.dumps({"strategy": self.strategy, "data": self.data, "params": self.params})
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stratkernel.core.jobs",
            spec,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("P "):
                with contextlib.suppress(ValueError):
                    self.progress = float(line[2:])
            elif line.startswith("R "):
                result = json.loads(line[2:])
                self.summary = result.get("summary")
                self.error = result.get("error")
        code = await self._proc.wait()
        if self.status == "cancelled":
            return
        if code == 0 and self.summary is not None:
            self.status = "failed" if self.summary.get("failure") else "done"
            self.progress = 1.0
        else:
            self.status = "error"
            if self.error is None:
                err = (
                    (await self._proc.stderr.read()).decode(errors="replace")[-500:]
                    if self._proc.stderr
                    else ""
                )
                self.error = {"message": f"backtest process exited with {code}", "detail": err}

    def cancel(self) -> None:
        if self.status == "running" and self._proc is not None and self._proc.returncode is None:
            self.status = "cancelled"
            self._proc.kill()


__all__ = ["BacktestJob", "KernelService"]
