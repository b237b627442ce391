"""The kernel's side of a sandboxed JavaScript script: :class:`JsScriptHost`.

Same public API, semantics and failure model as :class:`~stratkernel.sandbox.host.ScriptHost` (it is a
subclass: the budgets, the RSS cap, the heartbeat watch, the framed protocol and the validation of
everything the worker sends back are the Python host's code, unchanged). What differs is the worker
(:mod:`.js_worker`: a V8 isolate through py-mini-racer instead of RestrictedPython) and that there is
no source policy check in the kernel: the JavaScript realm is locked down inside the worker instead
(frozen intrinsics, no eval/Function/WebAssembly/Atomics, glue unreachable from the script). See
docs/javascript.md.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from pathlib import Path
from typing import Any, ClassVar

from stratkernel.core.errors import StrategyError

from .host import CallResult, IndicatorProvider, SandboxLimits, ScriptHost, _Kill

__all__ = [
    "CallResult",
    "IndicatorProvider",
    "JsScriptHost",
    "SandboxLimits",
    "SpareWorker",
    "WarmScriptHost",
]

JS_WORKER = Path(__file__).with_name("js_worker.py")
MAX_SOURCE_BYTES = 1_000_000
_PAGE = os.sysconf("SC_PAGE_SIZE")


class SpareWorker:
    """Mixin for a ScriptHost subclass: one started-but-unused worker kept warm in the background.

    A spare is a worker with no script yet (for JS: a bare, confined isolate). ``keep_spare`` turns it
    on (hot reload does), the next host of that class whose limits match takes the spare in its
    ``_spawn`` instead of starting a process, and a new spare is started behind it. A spare nobody takes
    dies with its parent (its pipe closes). Subclasses provide ``_spawn_worker`` (the real start).
    """

    _spare: ClassVar[Any] = None
    _spare_lock: ClassVar[threading.Lock] = threading.Lock()
    _spare_wanted: ClassVar[SandboxLimits | None] = None
    _spare_queue: ClassVar[queue.SimpleQueue[tuple[IndicatorProvider, str]] | None] = None
    _SPARE_ATTRS: ClassVar[tuple[str, ...]] = ("_proc", "_reader", "_wfd", "_beat", "_page", "confinement")

    def _spawn_worker(self) -> None:
        raise TypeError(f"{type(self).__name__} must define _spawn_worker")

    @classmethod
    def keep_spare(cls, limits: SandboxLimits, indicators: IndicatorProvider, symbol: str) -> None:
        """Keep one worker with ``limits`` started in the background from now on."""
        cls._spare_wanted = limits
        cls._refill(indicators, symbol)

    @classmethod
    def drop_spare(cls) -> None:
        cls._spare_wanted = None
        with cls._spare_lock:
            spare, cls._spare = cls._spare, None
        if spare is not None:
            spare.close()

    @classmethod
    def _refill(cls, indicators: IndicatorProvider, symbol: str) -> None:
        if cls._spare_wanted is None:
            return
        # One long-lived thread starts the spares: the worker's parent-death signal (PR_SET_PDEATHSIG)
        # fires when the *thread* that started it ends, so a short-lived thread would kill its spare.
        with cls._spare_lock:
            if cls.__dict__.get("_spare_queue") is None:
                cls._spare_queue = queue.SimpleQueue()
                threading.Thread(
                    target=cls._spare_loop,
                    args=(cls._spare_queue,),
                    name=f"{cls.__name__}-spare",
                    daemon=True,
                ).start()
            assert cls._spare_queue is not None
            cls._spare_queue.put((indicators, symbol))

    @classmethod
    def _spare_loop(cls, requests: queue.SimpleQueue[tuple[IndicatorProvider, str]]) -> None:
        while True:
            indicators, symbol = requests.get()
            limits = cls._spare_wanted
            if limits is None:
                continue
            shell: Any = cls(
                "",
                name="spare",
                filename="spare",
                limits=limits,  # type: ignore[call-arg]
                indicators=indicators,
                symbol=symbol,
            )
            try:
                shell._spawn_worker()
            except (_Kill, StrategyError, OSError):
                shell.close()
                continue
            with cls._spare_lock:
                if cls._spare_wanted is None:
                    old = shell
                else:
                    old, cls._spare = cls._spare, shell
            if old is not None:
                old.close()

    def _take_spare(self) -> bool:
        cls = type(self)
        me: Any = self
        with cls._spare_lock:
            spare = cls._spare
            if spare is None or spare.limits != me.limits or not spare.alive:
                return False
            cls._spare = None
        for attr in self._SPARE_ATTRS:
            setattr(self, attr, getattr(spare, attr))
        spare._proc, spare._beat, spare._page = None, None, None  # now ours: the shell must not close it
        cls._refill(me.indicators, me.symbol)
        return True


class JsScriptHost(SpareWorker, ScriptHost):
    """A JavaScript user script in its own confined worker process with its own V8 isolate.

    ``JsScriptHost(source, name=, filename=, limits=, indicators=, symbol=)``; then exactly the
    ScriptHost life cycle: ``load`` → ``set_series``/``append_bar`` → ``start`` → ``run``/``fill``/
    ``reject`` → ``stop`` → ``close``. Callbacks are ``onStart``/``onBar``/``onFill``/``onReject``/
    ``onStop`` in the script; ``callbacks`` lists them by their Python names (``on_bar``...).
    """

    language = "javascript"
    worker_script = JS_WORKER
    worker_label = "JavaScript sandbox"
    v8_version: str = ""

    _SPARE_ATTRS = (*SpareWorker._SPARE_ATTRS, "v8_version")

    load_grace_s = 1.0

    def _precheck(self) -> None:
        """Size and NUL checks; the V8 policy itself (no eval/Function, frozen realm) holds in the worker."""
        if len(self.source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
            raise StrategyError("load", f"the script is larger than {MAX_SOURCE_BYTES} bytes")
        if "\x00" in self.source:
            raise StrategyError("load", "the script contains a NUL character")

    def _spawn(self) -> None:
        if self._take_spare():
            return
        self._spawn_worker()

    def _spawn_worker(self) -> None:
        hello = self._start_worker()
        v8 = hello.get("v8")
        self.v8_version = v8[:40] if type(v8) is str else ""

    def _death_error(self) -> StrategyError:
        err = super()._death_error()
        proc = self._proc
        code = proc.returncode if proc is not None else None
        # V8 aborts the process when its heap limit (--max-old-space-size) is hit; it has no other
        # reason to abort in normal operation, so that death is reported as the memory limit.
        if code is not None and -code in (signal.SIGABRT, signal.SIGTRAP, signal.SIGILL):
            return StrategyError("limit", "the V8 worker aborted: memory limit (V8 heap) or another V8 limit")
        return err


class WarmScriptHost(SpareWorker, ScriptHost):
    """The Python :class:`ScriptHost`, unchanged except that it can take a warm spare worker.

    Hot reload builds its Python hosts with this class, so a reload skips the worker's process start
    (the Python worker's start-up, imports and compiler warm-up: ~100-150 ms).
    """

    def _spawn_worker(self) -> None:
        ScriptHost._spawn(self)

    def _spawn(self) -> None:
        if not self._take_spare():
            self._spawn_worker()
