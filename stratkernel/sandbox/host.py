"""The kernel's side of a sandboxed Python script: :class:`ScriptHost`.

One ScriptHost owns one worker process (:mod:`.worker`) running one user script. The kernel plugs it
into a strategy slot: ``load`` → ``set_series`` (backtest) or ``append_bar`` (live) → ``start`` →
``run`` batches / ``fill`` / ``reject`` → ``stop`` → ``close``.

Guarantees the kernel can build on:

* The script never runs in the kernel process. The worker is confined (see docs/sandbox.md) and the
  parent enforces the wall-time budgets and the RSS cap by killing the worker's process group; it does
  not rely on anything inside the worker cooperating.
* Everything the worker sends back is untrusted: frames are size-capped, parsed as JSON (never
  pickled), orders go through :func:`~stratkernel.core.model.order_request_from_untrusted`, every other
  field is type- and size-checked. A worker that sends anything else is killed and reported.
* A failure (exception, broken budget, refusal, crash) comes back as ``CallResult.error`` (or, from
  ``load``, as a raised :class:`~stratkernel.core.errors.StrategyError`) with kind, message and the
  script's line. Orders of a failed call are dropped. After a failure the host is dead: build a new one.
* The worker dies with the kernel process (parent-death signal). Linux ties that signal to the thread
  that started the worker, so call ``load`` from a long-lived thread (main thread, executor threads).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stratkernel.core.data import BarSeries
from stratkernel.core.errors import StrategyError, ValidationError
from stratkernel.core.model import Bar, Fill, OrderRequest, order_request_from_untrusted
from stratkernel.core.strategy import Param, parse_params, resolve_params

from . import protocol
from .policy import compile_script

__all__ = ["CallResult", "IndicatorProvider", "SandboxLimits", "ScriptHost"]

WORKER = Path(__file__).with_name("worker.py")
_TICK_S = 0.02  # how often the parent looks at a busy worker's heartbeat and RSS
_RSS_EVERY_S = 0.02
_KINDS = ("load", "runtime", "limit", "policy")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class SandboxLimits:
    """Budgets of one script. All are enforced by the parent or by the OS, not by the script's goodwill.

    ``call_timeout_s``: wall time per callback (per bar). A ``run`` batch of k bars gets
    ``min(k * call_timeout_s, batch_timeout_s)`` in total, and no single bar may take longer than
    ``call_timeout_s`` (watched through a heartbeat page). ``load_timeout_s``: compiling and executing
    the module. ``memory_mb``: RSS cap, polled from /proc by the parent (RLIMIT_AS in the worker is set
    higher, as a backstop). ``cpu_seconds``: RLIMIT_CPU for the worker's whole life. The remaining
    caps are per host call (``start``, one ``run`` batch, ``fill``...).
    """

    call_timeout_s: float = 0.5
    batch_timeout_s: float = 10.0
    load_timeout_s: float = 5.0
    memory_mb: int = 512
    cpu_seconds: int = 3600
    max_orders_per_bar: int = 10
    max_log_lines_per_call: int = 100
    max_log_bytes_per_call: int = 16384
    max_state_bytes: int = 65536


class IndicatorProvider(Protocol):
    """Implemented by the kernel: serves ``ctx.indicator`` from the registered indicator plugins."""

    def resolve(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        """A canonical key for this indicator call; raises ValidationError for unknown names/params."""

    def values(self, key: str) -> np.ndarray:
        """float64 values for every bar the host has been given so far (NaN while warming up)."""


@dataclass
class CallResult:
    """What one host call produced. ``error`` set means the script failed and ``orders`` is empty."""

    upto: int
    orders: list[OrderRequest] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None
    error: StrategyError | None = None
    cpu_ms: int = 0  # the worker's total CPU time so far
    rss_mb: float = 0.0  # the highest worker RSS sampled so far (parent polls + worker reports)


class _Kill(Exception):
    """Internal: the worker must be killed for ``error``."""

    def __init__(self, error: StrategyError) -> None:
        self.error = error


class ScriptHost:
    """A user script in its own confined worker process. See the module docstring."""

    def __init__(
        self,
        source: str,
        *,
        name: str,
        filename: str = "<script>",
        limits: SandboxLimits = SandboxLimits(),
        indicators: IndicatorProvider,
        symbol: str,
    ) -> None:
        self.source = source
        self.name = name
        self.filename = filename
        self.limits = limits
        self.indicators = indicators
        self.symbol = symbol
        self.version = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        self.params_spec: dict[str, Param] = {}
        self.params: dict[str, Any] = {}
        self.callbacks: frozenset[str] = frozenset()
        self.confinement: dict[str, Any] = {}
        self.error: StrategyError | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: protocol.FrameReader | None = None
        self._wfd = -1
        self._beat: Any = None
        self._page: Any = None
        self._n = 0
        self._keys: set[str] = set()
        self._last_rss_check = 0.0
        self._peak_rss_mb = 0.0
        self._last_snapshot: Any = None
        self._loaded = False

    # ---- lifecycle ----------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self.error is None

    def load(self, params: dict[str, Any] | None = None) -> None:
        """Compile under the policy, start the worker, run the module, read and resolve PARAMS.

        Raises ``StrategyError`` (kind load, policy or limit); the worker is gone afterwards.
        """
        if self._loaded:
            raise StrategyError(
                "load",
                f"this host was already loaded; create a new {type(self).__name__}",
                strategy=self.name,
            )
        self._loaded = True
        try:
            self._precheck()
            self._spawn()
            hello = self._request_plain(
                {
                    "op": "load",
                    "source": self.source,
                    "filename": self.filename,
                    "name": self.name,
                    "symbol": self.symbol,
                },
                self.limits.load_timeout_s + self.load_grace_s,
            )
            if hello.get("ok") is not True:
                raise StrategyError(**self._error_fields(hello.get("error"), default_kind="load"))
            raw = _decode_json_text(hello.get("params_json"), "PARAMS", 65536)
            try:
                self.params_spec = parse_params(raw)
                self.params = resolve_params(self.params_spec, params)
            except ValidationError as exc:
                raise StrategyError("load", str(exc)) from None
            cbs = hello.get("callbacks")
            if type(cbs) is not list or not all(type(c) is str for c in cbs):
                raise _Kill(StrategyError("runtime", "worker sent a malformed load reply"))
            self.callbacks = frozenset(cbs)
            ok = self._request_plain({"op": "params", "values": self.params}, self.limits.load_timeout_s)
            if ok.get("ok") is not True:
                raise _Kill(StrategyError("runtime", "worker refused the parameters"))
        except _Kill as kill:
            self._fail(kill.error)
            raise self.error from None  # type: ignore[misc]
        except StrategyError as exc:
            err = StrategyError(exc.kind, exc.message, line=exc.line, strategy=self.name)
            self._fail(err)
            raise err from None

    def close(self) -> None:
        """Kill the worker and its process group (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._beat is not None:
            self._beat.release()
            self._beat = None
        if self._page is not None:
            self._page.close()
            self._page = None

    def __del__(self) -> None:  # a forgotten host must not leave a process behind
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> ScriptHost:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- data ---------------------------------------------------------------------------------------

    def set_series(self, series: BarSeries) -> None:
        """Backtest: send all bars once, as packed columns."""
        self._require_alive()
        n = len(series)
        parts = [np.ascontiguousarray(series.ts, dtype=np.int64).tobytes()]
        for col in (series.open, series.high, series.low, series.close, series.volume):
            parts.append(np.ascontiguousarray(col, dtype=np.float64).tobytes())
        blob = b"".join(parts)
        reply = self._request_plain(
            {"op": "series", "n": n}, self.limits.load_timeout_s + n * 1e-6, blob=blob
        )
        if reply.get("ok") is not True or reply.get("n") != n:
            self._fail(StrategyError("runtime", "worker did not accept the bar series", strategy=self.name))
            raise self.error  # type: ignore[misc]
        self._n = n

    def append_bar(self, bar: Bar) -> None:
        """Live: one more bar, plus the newest value of every indicator the script has used."""
        self._require_alive()
        self._n += 1
        ind: dict[str, float | None] = {}
        for key in self._keys:
            values = self.indicators.values(key)
            v = float(values[-1]) if len(values) else math.nan
            ind[key] = v if math.isfinite(v) else None
        msg = {
            "op": "append",
            "bar": [
                int(bar.ts),
                float(bar.open),
                float(bar.high),
                float(bar.low),
                float(bar.close),
                float(bar.volume),
            ],
            "ind": ind,
        }
        reply = self._request_plain(msg, self.limits.load_timeout_s)
        if reply.get("ok") is not True:
            self._fail(StrategyError("runtime", "worker did not accept the bar", strategy=self.name))
            raise self.error  # type: ignore[misc]

    # ---- callbacks ----------------------------------------------------------------------------------

    def start(self, snapshot: dict[str, Any], state: dict[str, Any] | None) -> CallResult:
        """``on_start(ctx)`` with ``ctx.state`` = the persisted state (or {})."""
        if state is not None and type(state) is not dict:
            raise ValidationError("state", type(state).__name__, "must be a dict")
        return self._call({"cb": "on_start", "snapshot": snapshot, "state": state or {}}, 1, always=True)

    def run(self, start: int, stop: int, snapshot: dict[str, Any]) -> CallResult:
        """``on_bar`` for bars [start, stop), stopping after the first bar that asked for anything.

        ``upto`` is the last bar whose callback completed: the bar with the requests, else ``stop-1``;
        ``start-1`` if none completed. A very long batch may also come back early (without requests,
        ``upto < stop-1``) after half of ``batch_timeout_s``, so callers loop ``start = upto + 1``.
        """
        if not 0 <= start <= stop <= self._n:
            raise ValidationError("run", (start, stop), f"bar range must lie within [0, {self._n}]")
        if start == stop:
            return CallResult(upto=start - 1)
        return self._call(
            {"cb": "on_bar", "start": start, "stop": stop, "snapshot": snapshot},
            stop - start,
            bars=(start, stop),
        )

    def fill(self, fill: Fill, snapshot: dict[str, Any]) -> CallResult:
        arg = {
            "id": fill.id,
            "order_id": fill.order_id,
            "symbol": fill.symbol,
            "side": str(fill.side),
            "qty": fill.qty,
            "price": fill.price,
            "fee": fill.fee,
            "ts": fill.ts,
            "strategy": fill.strategy,
            "role": fill.role,
        }
        return self._call({"cb": "on_fill", "snapshot": snapshot, "arg": arg}, 1)

    def reject(self, rejection: dict[str, Any], snapshot: dict[str, Any]) -> CallResult:
        arg = {k: str(rejection.get(k, "")) for k in ("id", "code", "message")}
        return self._call({"cb": "on_reject", "snapshot": snapshot, "arg": arg}, 1)

    def stop(self, snapshot: dict[str, Any]) -> CallResult:
        return self._call({"cb": "on_stop", "snapshot": snapshot}, 1)

    # ---- internals ----------------------------------------------------------------------------------

    def _require_alive(self) -> None:
        if self.error is not None:
            raise StrategyError(
                self.error.kind,
                f"script already failed: {self.error.message}",
                line=self.error.line,
                strategy=self.name,
            )
        if self._proc is None:
            raise StrategyError(
                "runtime", "script host is not loaded (call load() first)", strategy=self.name
            )

    # the worker program and its name in errors; the V8 host runs its own worker through the same start
    worker_script: Path = WORKER
    worker_label = "sandbox"
    load_grace_s = 0.0  # added to the load budget for the reply (the V8 worker needs a little more)

    def _precheck(self) -> None:
        """Refuse in the kernel what never needs a worker. Python: the policy compile, so a refusal is
        reported even if no worker starts."""
        compile_script(self.source, self.filename)

    def _spawn(self) -> None:
        self._start_worker()

    def _start_worker(self) -> dict[str, Any]:
        """Start the confined worker and read its hello (non-blocking writes, parent-enforced budgets)."""
        lim = asdict(self.limits)
        memfd = os.memfd_create("stratkernel-heartbeat", os.MFD_CLOEXEC)
        try:
            os.ftruncate(memfd, _PAGE)
            import mmap

            self._page = mmap.mmap(memfd, _PAGE)
            self._beat = memoryview(self._page).cast("q")
            debug = os.environ.get("STRATKERNEL_SANDBOX_DEBUG") == "1"
            self._proc = subprocess.Popen(
                [sys.executable, "-I", str(self.worker_script), str(memfd), json.dumps(lim)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None if debug else subprocess.DEVNULL,
                env={},
                close_fds=True,
                pass_fds=(memfd,),
                start_new_session=True,
                cwd="/",
            )
        finally:
            os.close(memfd)
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self._reader = protocol.FrameReader(self._proc.stdout.fileno(), protocol.MAX_WORKER_FRAME)
        self._wfd = self._proc.stdin.fileno()
        os.set_blocking(self._wfd, False)
        hello = self._recv(time.monotonic() + self.limits.load_timeout_s + 5.0, None)
        if hello.get("op") != "hello" or type(hello.get("confinement")) is not dict:
            raise _Kill(StrategyError("load", f"the {self.worker_label} worker did not start"))
        self.confinement = {str(k): str(v)[:200] for k, v in hello["confinement"].items()}
        return hello

    def _fail(self, error: StrategyError) -> None:
        if error.strategy is None:
            error = StrategyError(error.kind, error.message, line=error.line, strategy=self.name)
        if self.error is None:
            self.error = error
        self.close()

    def _send(self, msg: dict[str, Any], blob: bytes | None = None) -> None:
        """Write one message without ever blocking the kernel on a worker that stopped reading.

        The pipe is non-blocking; a worker that does not drain it within the budget is killed.
        """
        if blob is not None:
            msg = {**msg, "blob": len(blob)}
        parts: list[bytes] = [protocol.encode(msg)]
        if blob is not None:
            parts += [protocol.HEADER.pack(len(blob)), blob]
        deadline = (
            time.monotonic() + max(self.limits.load_timeout_s, 5.0) + (len(blob) * 1e-7 if blob else 0.0)
        )
        fd = self._wfd
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    try:
                        n = os.write(fd, view)
                    except BlockingIOError:
                        now = time.monotonic()
                        if now >= deadline:
                            raise _Kill(
                                StrategyError("limit", "the worker stopped reading its input")
                            ) from None
                        select.select([], [fd], [], min(_TICK_S, deadline - now))
                        continue
                    view = view[n:]
        except (BrokenPipeError, OSError):
            raise _Kill(self._death_error()) from None

    def _request_plain(
        self, msg: dict[str, Any], timeout_s: float, blob: bytes | None = None
    ) -> dict[str, Any]:
        """A request with a single reply and one overall deadline (load, series, append)."""
        try:
            self._send(msg, blob)
            what = {"load": "load", "params": "load", "series": "set_series", "append": "append_bar"}
            return self._recv(time.monotonic() + timeout_s, None, what=what.get(msg["op"], msg["op"]))
        except _Kill as kill:
            self._fail(kill.error)
            raise self.error from None  # type: ignore[misc]

    def _call(
        self, msg: dict[str, Any], k: int, *, bars: tuple[int, int] | None = None, always: bool = False
    ) -> CallResult:
        self._require_alive()
        cb = msg["cb"]
        if cb not in self.callbacks and not always:
            return CallResult(upto=-1 if bars is None else bars[1] - 1)
        lim = self.limits
        budget = min(k * lim.call_timeout_s, lim.batch_timeout_s) if k > 1 else lim.call_timeout_s
        msg = {"op": "call", **msg}
        # Only what ctx shows (positions, account) crosses, and only when it changed: the worker keeps
        # the last one. The open order list is not part of ctx and can be long, so it stays here.
        snap = msg.pop("snapshot", None)
        if snap is not None:
            shown = {"positions": snap.get("positions") or {}, "account": snap.get("account")}
            # compared as its JSON text: a kernel that mutates its snapshot in place is still seen to
            # change it, at a fraction of a deep copy's cost on every crossing
            text = json.dumps(shown, separators=(",", ":"), sort_keys=True)
            if text != self._last_snapshot:
                msg["snapshot"] = shown
                self._last_snapshot = text
        try:
            self._send(msg)
            reply = self._recv(time.monotonic() + budget, lim.call_timeout_s, what=cb)
            return self._result(reply, bars)
        except _Kill as kill:
            self._fail(kill.error)
            return CallResult(upto=-1 if bars is None else bars[0] - 1, error=self.error)

    def _recv(self, deadline: float, per_callback_s: float | None, what: str = "load") -> dict[str, Any]:
        """Wait for the worker's reply, serving its indicator requests, under the budgets."""
        reader, proc = self._reader, self._proc
        assert reader is not None and proc is not None
        fd = reader.fd
        beat = self._beat
        last_beat = beat[0] if beat is not None else 0
        last_change = time.monotonic()
        while True:
            if time.monotonic() >= deadline:  # also when frames keep coming (e.g. endless indicator requests)
                raise _Kill(StrategyError("limit", f"{what} exceeded its wall time budget"))
            try:
                frame = reader.next_frame() if reader.buf else None
            except protocol.ProtocolError as exc:
                raise _Kill(StrategyError("limit", f"worker protocol violation: {exc}")) from None
            if frame is None:
                now = time.monotonic()
                wait = min(_TICK_S, max(0.0, deadline - now))
                ready, _, _ = select.select([fd], [], [], wait)
                now = time.monotonic()
                if ready:
                    try:
                        reader.feed()
                    except protocol.Closed:
                        raise _Kill(self._death_error()) from None
                    except protocol.ProtocolError as exc:
                        raise _Kill(StrategyError("limit", f"worker protocol violation: {exc}")) from None
                    try:
                        frame = reader.next_frame()
                    except protocol.ProtocolError as exc:
                        raise _Kill(StrategyError("limit", f"worker protocol violation: {exc}")) from None
                if frame is None:
                    self._check_memory(now, force=not ready)
                    if per_callback_s is not None and beat is not None:
                        b = beat[0]
                        if b != last_beat:
                            last_beat, last_change = b, now
                        elif now - last_change > per_callback_s:
                            raise _Kill(
                                StrategyError(
                                    "limit",
                                    f"{what} took longer than {per_callback_s:g} s (wall time budget)",
                                )
                            )
                    if now >= deadline:
                        raise _Kill(StrategyError("limit", f"{what} exceeded its wall time budget"))
                    continue
            try:
                msg = protocol.decode(frame)
            except (ValueError, RecursionError) as exc:
                raise _Kill(StrategyError("limit", f"worker sent malformed data: {str(exc)[:100]}")) from None
            if type(msg) is not dict:
                raise _Kill(StrategyError("limit", "worker sent malformed data (not an object)"))
            if msg.get("op") == "ind":
                self._serve_indicator(msg)
                continue
            self._check_memory(time.monotonic(), force=False)
            return msg

    def _note_rss(self, rss_mb: float) -> float:
        """Peak RSS over every sample (the parent's polls and the worker's own reports)."""
        self._peak_rss_mb = max(self._peak_rss_mb, rss_mb)
        if rss_mb > self.limits.memory_mb:
            raise _Kill(
                StrategyError(
                    "limit", f"memory limit exceeded: RSS {rss_mb:.0f} MiB > {self.limits.memory_mb} MiB"
                )
            )
        return self._peak_rss_mb

    def _check_memory(self, now: float, *, force: bool) -> None:
        if not force and now - self._last_rss_check < _RSS_EVERY_S:
            return
        self._last_rss_check = now
        proc = self._proc
        if proc is None:
            return
        try:
            with open(f"/proc/{proc.pid}/statm", "rb") as fh:
                rss_mb = int(fh.read().split()[1]) * _PAGE / (1024 * 1024)
        except (OSError, IndexError, ValueError):
            return  # gone: the next read sees EOF and reports the death
        self._peak_rss_mb = max(self._peak_rss_mb, rss_mb)
        if rss_mb > self.limits.memory_mb:
            raise _Kill(
                StrategyError(
                    "limit", f"memory limit exceeded: RSS {rss_mb:.0f} MiB > {self.limits.memory_mb} MiB"
                )
            )

    def _death_error(self) -> StrategyError:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        if code is not None and code < 0:
            sig = -code
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            if sig in (signal.SIGKILL, signal.SIGXCPU):
                return StrategyError("limit", f"the worker was killed ({name}): CPU or memory limit")
            return StrategyError("runtime", f"the worker crashed ({name})")
        return StrategyError("runtime", f"the worker exited unexpectedly (exit code {code})")

    def _serve_indicator(self, msg: dict[str, Any]) -> None:
        name, args, kwargs = msg.get("name"), msg.get("args"), msg.get("kwargs")
        problem = None
        if type(name) is not str or len(name) > 64:
            problem = "indicator name must be a string"
        elif type(args) is not list or len(args) > 16 or type(kwargs) is not dict or len(kwargs) > 16:
            problem = "too many indicator parameters"
        elif not all(_scalar(a) for a in args) or not all(
            type(k) is str and _scalar(v) for k, v in kwargs.items()
        ):
            problem = "indicator parameters must be numbers, strings or booleans"
        if problem is not None:
            self._send({"error": problem})
            return
        try:
            key = self.indicators.resolve(name, args, kwargs)  # type: ignore[arg-type]
            values = np.ascontiguousarray(self.indicators.values(key), dtype=np.float64)
        except ValidationError as exc:
            self._send({"error": str(exc)[:300]})
            return
        except Exception as exc:  # a broken indicator plugin fails this script, not the kernel
            self._send({"error": f"indicator failed: {type(exc).__name__}: {str(exc)[:200]}"})
            return
        self._keys.add(key)
        self._send({"key": key, "n": int(values.shape[0])}, values.tobytes())

    def _error_fields(self, raw: Any, *, default_kind: str) -> dict[str, Any]:
        if type(raw) is not dict:
            return {"kind": default_kind, "message": "the script failed (no details)", "strategy": self.name}
        kind = raw.get("kind")
        message = raw.get("message")
        line = raw.get("line")
        return {
            "kind": kind if kind in _KINDS else default_kind,
            "message": message[:500] if type(message) is str else "the script failed",
            "line": line if type(line) is int and 0 < line < 10_000_000 else None,
            "strategy": self.name,
        }

    def _result(self, reply: dict[str, Any], bars: tuple[int, int] | None) -> CallResult:
        lim = self.limits
        bad = StrategyError("limit", "worker sent a malformed result")
        upto = reply.get("upto")
        lo, hi = (bars[0] - 1, bars[1] - 1) if bars is not None else (-1, -1)
        if type(upto) is not int or not lo <= upto <= hi:
            raise _Kill(bad)
        logs = reply.get("logs")
        if (
            type(logs) is not list
            or len(logs) > lim.max_log_lines_per_call + 1
            or not all(type(x) is str for x in logs)
            or sum(len(x) for x in logs) > lim.max_log_bytes_per_call + 200
        ):
            raise _Kill(bad)
        cpu_ms = reply.get("cpu_ms")
        rss_kb = reply.get("rss_kb")
        base: dict[str, Any] = {
            "upto": upto,
            "logs": logs,
            "cpu_ms": cpu_ms if type(cpu_ms) is int else 0,
            "rss_mb": self._note_rss(rss_kb / 1024 if type(rss_kb) is int and rss_kb > 0 else 0.0),
        }
        if reply.get("ok") is not True:
            err = StrategyError(**self._error_fields(reply.get("error"), default_kind="runtime"))
            self._fail(err)
            return CallResult(error=self.error, **base)
        raw_orders, cancels = reply.get("orders"), reply.get("cancels")
        if (
            type(raw_orders) is not list
            or type(cancels) is not list
            or len(raw_orders) + len(cancels) > lim.max_orders_per_bar
        ):
            raise _Kill(bad)
        orders = []
        try:
            for raw in raw_orders:
                req = order_request_from_untrusted(
                    raw, strategy=self.name, source="script", default_symbol=self.symbol
                )
                if not req.client_id:
                    raise ValidationError("client_id", req.client_id, "is required")
                orders.append(req)
        except ValidationError as exc:
            raise _Kill(StrategyError("runtime", f"worker sent an invalid order: {exc}")) from None
        for c in cancels:
            if type(c) is not str or not 0 < len(c) <= 64 or not c.isprintable():
                raise _Kill(bad)
        state = None
        if "state_json" in reply:
            state = _decode_json_text(reply["state_json"], "ctx.state", lim.max_state_bytes)
            if type(state) is not dict:
                raise _Kill(bad)
        return CallResult(orders=orders, cancels=list(cancels), state=state, **base)


def _scalar(v: Any) -> bool:
    return type(v) in (int, float, str, bool) and (type(v) is not float or math.isfinite(v))


def _decode_json_text(text: Any, what: str, limit: int) -> Any:
    if type(text) is not str or len(text) > limit:
        raise _Kill(
            StrategyError("limit", f"{what} from the worker is malformed or larger than {limit} bytes")
        )
    try:
        return protocol.decode(text.encode())
    except (ValueError, RecursionError):
        raise _Kill(StrategyError("limit", f"{what} from the worker is not valid JSON")) from None
