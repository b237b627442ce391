"""Strategy slots: the one wrapper around every call into strategy code.

A slot turns a strategy (a trusted plugin class or a sandboxed script) into what the kernel drives:
``start``, ``on_bar``, ``on_fill``, ``on_reject``, ``stop``. Each returns the order requests and
cancels the callback produced, or None. Any failure inside strategy code becomes a
:class:`StrategyError` (kind, message, script line); the slot is marked failed and the kernel moves on.
Requests from a failed call are dropped: nothing half-done reaches the gate.

Script slots run ahead in backtests: the worker processes a whole batch of bars per crossing and stops
at the first bar that produced requests, or just before the first bar at which one of the strategy's
working orders could fill (so it never sees a stale position).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .context import StrategyContext
from .data import BarSeries
from .errors import ConfigError, StrategyError, ValidationError
from .model import Bar, Fill, OrderRequest, OrderType, Side
from .strategy import Strategy, parse_params, resolve_params

if TYPE_CHECKING:
    from .kernel import Kernel

Requests = tuple[list[OrderRequest], list[str]]
BATCH = 65_536


class Slot:
    kind = "plugin"

    def __init__(self, kernel: Kernel, name: str, ref: str, symbol: str) -> None:
        self.kernel = kernel
        self.name = name
        self.ref = ref
        self.symbol = symbol
        self.version = ""
        self.params: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.status = "running"
        self.error: StrategyError | None = None
        self.failure_reported = False

    def fail(self, error: StrategyError) -> None:
        error.strategy = error.strategy or self.name
        self.error = error
        self.status = "failed"
        self.kernel._failures_pending = True
        self.close()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "kind": self.kind,
            "symbol": self.symbol,
            "version": self.version,
            "status": self.status,
            "params": self.params,
            "error": self.error.as_dict() if self.error else None,
            "resource_use": self.resource_use(),
        }

    def resource_use(self) -> dict[str, Any] | None:
        """CPU and memory of the strategy's worker (None for in-process strategies)."""
        return None

    # default behaviours, overridden by subclasses
    def attach_series(self, series: BarSeries) -> None:
        return None

    def close(self) -> None:
        return None

    def start(self) -> Requests | None:
        raise TypeError(f"{type(self).__name__} must implement start()")

    def on_bar(self, i: int, bar: Bar) -> Requests | None:
        raise TypeError(f"{type(self).__name__} must implement on_bar()")

    async def on_live_bar(self, i: int, bar: Bar) -> Requests | None:
        return self.on_bar(i, bar)

    def on_fill(self, fill: Fill) -> Requests | None:
        raise TypeError(f"{type(self).__name__} must implement on_fill()")

    def on_reject(self, rejection: dict[str, Any]) -> Requests | None:
        raise TypeError(f"{type(self).__name__} must implement on_reject()")

    def stop(self) -> Requests | None:
        raise TypeError(f"{type(self).__name__} must implement stop()")


class PluginSlot(Slot):
    """A trusted, in-process strategy (a registered :class:`Strategy` subclass)."""

    kind = "plugin"

    def __init__(
        self,
        kernel: Kernel,
        name: str,
        ref: str,
        symbol: str,
        cls: type[Strategy],
        params: dict[str, Any],
        state: dict[str, Any] | None,
    ) -> None:
        super().__init__(kernel, name, ref, symbol)
        self.cls = cls
        try:
            self._file = inspect.getsourcefile(cls) or ""
        except (OSError, TypeError):  # defined in __main__ / -c: no file to point at
            self._file = ""
        try:
            src = inspect.getsource(cls)
        except (OSError, TypeError):
            src = cls.__qualname__
        self.version = hashlib.sha256(src.encode()).hexdigest()[:12]
        spec = parse_params(cls.PARAMS, where=f"{ref}.PARAMS")
        self.params = resolve_params(spec, params)
        self.strategy = cls()
        self.ctx = StrategyContext(
            kernel.port,
            name=name,
            symbol=symbol,
            params=self.params,
            state=state,
            log=kernel_log(kernel),
            max_orders_per_call=kernel.config.sandbox.max_orders_per_bar,
        )
        self.state = self.ctx.state
        self._on_bar = self.strategy.on_bar

    def _error(self, exc: BaseException) -> StrategyError:
        if isinstance(exc, StrategyError):
            return exc
        line = None
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == self._file:
                line = frame.lineno
                break
        limit = isinstance(exc, MemoryError | RecursionError)
        return StrategyError(
            "limit" if limit else "runtime", f"{type(exc).__name__}: {exc}", line=line, strategy=self.name
        )

    def _call(self, fn: Any, *args: Any) -> Requests | None:
        ctx = self.ctx
        try:
            fn(ctx, *args)
            ctx.check_state()
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as exc:
            ctx.take_requests()
            self.fail(self._error(exc))
            return None
        if ctx.requests or ctx.cancels:
            return ctx.take_requests()
        return None

    def start(self) -> Requests | None:
        return self._call(self.strategy.on_start)

    def on_bar(self, i: int, bar: Bar) -> Requests | None:
        ctx = self.ctx
        try:
            self._on_bar(ctx, bar)
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as exc:
            ctx.take_requests()
            self.fail(self._error(exc))
            return None
        if ctx.requests or ctx.cancels:
            return ctx.take_requests()
        return None

    def on_fill(self, fill: Fill) -> Requests | None:
        self.ctx.invalidate()
        return self._call(self.strategy.on_fill, fill)

    def on_reject(self, rejection: dict[str, Any]) -> Requests | None:
        return self._call(self.strategy.on_reject, rejection)

    def stop(self) -> Requests | None:
        res = self._call(self.strategy.on_stop)
        if self.status == "running":
            self.status = "stopped"
        return res


class ScriptSlot(Slot):
    """A user script running in a sandbox worker (see :mod:`stratkernel.sandbox`)."""

    kind = "script"

    def __init__(
        self, kernel: Kernel, name: str, ref: str, symbol: str, host: Any, state: dict[str, Any] | None
    ) -> None:
        super().__init__(kernel, name, ref, symbol)
        self.host = host
        self.version = host.version
        self.state = dict(state or {})
        self._series: BarSeries | None = None
        self._ran_upto = -1
        self._pending_at = -1
        self._pending: Requests | None = None
        self._cpu_ms = 0
        self._rss_mb = 0.0

    def resource_use(self) -> dict[str, Any] | None:
        return {"cpu_ms": self._cpu_ms, "peak_rss_mb": round(self._rss_mb, 1)}

    def params_from_host(self) -> None:
        self.params = dict(getattr(self.host, "params", {}) or {})

    # the snapshot a worker sees: plain data only
    def snapshot(self) -> dict[str, Any]:
        k = self.kernel
        positions = {
            p.symbol: {
                "symbol": p.symbol,
                "qty": p.qty,
                "avg_price": p.avg_price,
                "realized_pnl": p.realized_pnl,
            }
            for p in k.portfolio.strategy_positions(self.name)
        }
        return {"positions": positions, "account": k.portfolio.account().as_dict()}

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Call the host; anything it raises (a bug, a dead worker) fails this strategy, not the kernel."""
        try:
            return fn(*args)
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except StrategyError as exc:
            self.fail(exc)
        except Exception as exc:
            self.fail(
                StrategyError(
                    "runtime", f"sandbox host error: {type(exc).__name__}: {exc}", strategy=self.name
                )
            )
        return None

    def _result(self, res: Any) -> Requests | None:
        if res is None:  # the host call itself failed (see _guard)
            return None
        self._cpu_ms = max(self._cpu_ms, int(getattr(res, "cpu_ms", 0) or 0))
        self._rss_mb = max(self._rss_mb, float(getattr(res, "rss_mb", 0.0) or 0.0))
        if res.state is not None:
            self.state = res.state
        for line in res.logs:
            kernel_log(self.kernel)(self.name, line)
        if res.error is not None:
            self.fail(res.error)
            return None
        if res.orders or res.cancels:
            return list(res.orders), list(res.cancels)
        return None

    def attach_series(self, series: BarSeries) -> None:
        self._series = series
        self._high = series.high
        self._low = series.low
        self.host.set_series(series)

    def start(self) -> Requests | None:
        return self._result(self._guard(self.host.start, self.snapshot(), self.state))

    def _horizon(self, i: int) -> int:
        series = self._series
        assert series is not None
        n = len(series)
        end = min(n, i + BATCH)
        triggers = self.kernel.working_triggers(self.name)
        if triggers is None:
            return i + 1
        for side, otype, price in triggers:
            if otype is OrderType.MARKET or price is None:
                return i + 1
            arr, below = (
                (self._low, True) if (side is Side.BUY) == (otype is OrderType.LIMIT) else (self._high, False)
            )
            # look in growing windows: a trigger is usually near, and scanning 65k bars per batch is not free
            lo, width = i + 1, 256
            while lo < end:
                hi = min(end, lo + width)
                window = arr[lo:hi]
                hit = np.flatnonzero(window <= price if below else window >= price)
                if hit.size:
                    end = lo + int(hit[0])
                    break
                lo, width = hi, width * 8
        return end

    def on_bar(self, i: int, bar: Bar) -> Requests | None:
        if i <= self._ran_upto:
            if i == self._pending_at:
                pending, self._pending, self._pending_at = self._pending, None, -1
                return pending
            return None
        res = self._guard(self.host.run, i, self._horizon(i), self.snapshot())
        out = self._result(res)
        if res is None:
            return None
        if out is None:
            if self.status == "running":
                self._ran_upto = max(res.upto, i)
            return None
        self._ran_upto = res.upto
        if res.upto == i:
            return out
        self._pending_at, self._pending = res.upto, out
        return None

    async def on_live_bar(self, i: int, bar: Bar) -> Requests | None:
        host = self.host
        snap = self.snapshot()

        def step() -> Any:
            host.append_bar(bar)
            return host.run(i, i + 1, snap)

        return self._result(await asyncio.to_thread(self._guard, step))

    def on_fill(self, fill: Fill) -> Requests | None:
        return self._result(self._guard(self.host.fill, fill, self.snapshot()))

    def on_reject(self, rejection: dict[str, Any]) -> Requests | None:
        return self._result(self._guard(self.host.reject, rejection, self.snapshot()))

    def stop(self) -> Requests | None:
        res = self._result(self._guard(self.host.stop, self.snapshot()))
        if self.status == "running":
            self.status = "stopped"
        return res

    def close(self) -> None:
        self.host.close()


def kernel_log(kernel: Kernel) -> Any:
    import logging

    logger = logging.getLogger("stratkernel.strategy")

    def _log(name: str, line: str) -> None:
        logger.info("[%s] %s", name, line)
        kernel.emit("strategy_log", {"strategy": name, "line": line})

    return _log


def make_slot(
    kernel: Kernel, name: str, ref: str, *, symbol: str, params: dict[str, Any], state: dict[str, Any] | None
) -> Slot:
    """A registered strategy name gives a PluginSlot; a ``.py``/``.js`` path gives a ScriptSlot."""
    reg = kernel.plugins.registry
    if reg.has("strategy", ref):
        cls = reg.get("strategy", ref).obj
        try:
            return PluginSlot(kernel, name, ref, symbol, cls, params, state)
        except ValidationError as exc:
            raise ConfigError(f"strategies.{name}.params", str(exc)) from None
    path = Path(ref)
    if path.suffix in (".py", ".js"):
        if not path.is_file():
            raise ConfigError(f"strategies.{name}.strategy", f"script not found: {path}")
        host = make_host(kernel, name, path, symbol)
        slot = ScriptSlot(kernel, name, str(path), symbol, host, state)
        try:
            host.load(params)
        except StrategyError as exc:
            slot.fail(exc)
            slot.failure_reported = False
            return slot
        slot.params_from_host()
        return slot
    known = ", ".join(reg.names("strategy")) or "none"
    raise ConfigError(
        f"strategies.{name}.strategy",
        f"{ref!r} is neither a registered strategy ({known}) nor a .py/.js script path",
    )


def make_host(kernel: Kernel, name: str, path: Path, symbol: str) -> Any:
    return host_from_source(kernel, name, path.read_text(encoding="utf-8"), path.name, symbol)


def host_from_source(kernel: Kernel, name: str, source: str, filename: str, symbol: str) -> Any:
    """A sandbox host for a Python or JavaScript script (by ``filename``'s extension), not yet loaded."""
    from stratkernel.sandbox.host import SandboxLimits

    cfg = kernel.config.sandbox
    limits = SandboxLimits(
        call_timeout_s=cfg.call_timeout_s,
        load_timeout_s=cfg.load_timeout_s,
        memory_mb=cfg.memory_mb,
        max_orders_per_bar=cfg.max_orders_per_bar,
    )
    provider = kernel.indicators.provider(symbol)
    if filename.endswith(".js"):
        from stratkernel.sandbox.js_host import JsScriptHost

        return JsScriptHost(
            source, name=name, filename=filename, limits=limits, indicators=provider, symbol=symbol
        )
    from stratkernel.sandbox.host import ScriptHost

    return ScriptHost(source, name=name, filename=filename, limits=limits, indicators=provider, symbol=symbol)


__all__ = ["BATCH", "PluginSlot", "ScriptSlot", "Slot", "make_slot"]
