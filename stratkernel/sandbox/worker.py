"""The sandbox worker: one process per user script, started by :class:`~stratkernel.sandbox.host.ScriptHost`.

Run as ``python -I <this file> <heartbeat fd> <limits json>`` with an empty environment, in its own
session, with only the two protocol pipes and a heartbeat page inherited. It imports what it needs,
warms up the compiler, confines itself (:mod:`.confine`), says hello with the confinement report, and
then serves the kernel's requests one at a time over the pipes.

The per-bar path is kept lean: bars live in ``array`` columns and become ``Bar`` tuples one at a time;
an indicator value is a dict lookup plus an index; the heartbeat is one store into a shared page that
the parent watches to enforce the per-callback wall-time budget (no syscall per bar, no signal a
script could catch).
"""

from __future__ import annotations

if __name__ == "__main__":  # started as a script: import our modules without the package's heavy __init__
    import sys as _sys
    import types as _types
    from pathlib import Path as _Path

    _pkg = _types.ModuleType("stratkernel")
    _pkg.__path__ = [str(_Path(__file__).resolve().parents[1])]
    _sys.modules["stratkernel"] = _pkg

import json
import mmap
import os
import resource
import sys
import time
from array import array
from types import FunctionType, MappingProxyType
from typing import Any, NoReturn

from stratkernel.core.errors import StrategyError, ValidationError
from stratkernel.core.model import Account, Bar, Fill, Position, Side, order_request_from_untrusted
from stratkernel.core.strategy import CALLBACKS
from stratkernel.sandbox import protocol
from stratkernel.sandbox.confine import confine
from stratkernel.sandbox.policy import PolicyViolation, compile_script, script_globals

MAX_HISTORY = 100_000
MAX_MESSAGE = 300


class ScriptFailure(Exception):
    """Raised by ctx into the script when it broke a rule; remembered even if the script catches it."""


class Rejection(dict):
    """A denied request as the script sees it: ``r["code"]`` and ``r.code`` both work."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Context:
    """``ctx`` inside the worker. Every field a script can read is public; the rest starts with "_"."""

    __slots__ = ("_rt", "account", "params", "position", "positions", "state", "symbol")

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.symbol = rt.symbol
        self.params: Any = MappingProxyType({})
        self.state: dict[str, Any] = {}
        self.position = Position(rt.symbol)
        self.positions: Any = MappingProxyType({})
        self.account = Account(0.0, 0.0)

    @property
    def bar_index(self) -> int:
        return self._rt.i

    @property
    def time(self) -> int:
        rt = self._rt
        return rt.ts[rt.i] if 0 <= rt.i < len(rt.ts) else 0

    def buy(
        self,
        qty: Any,
        *,
        stop_loss: Any = None,
        take_profit: Any = None,
        type: Any = "market",
        limit_price: Any = None,
        stop_price: Any = None,
        symbol: Any = None,
        tag: Any = "",
    ) -> str:
        return self._rt.order("buy", qty, stop_loss, take_profit, type, limit_price, stop_price, symbol, tag)

    def sell(
        self,
        qty: Any,
        *,
        stop_loss: Any = None,
        take_profit: Any = None,
        type: Any = "market",
        limit_price: Any = None,
        stop_price: Any = None,
        symbol: Any = None,
        tag: Any = "",
    ) -> str:
        return self._rt.order("sell", qty, stop_loss, take_profit, type, limit_price, stop_price, symbol, tag)

    def close(self, symbol: Any = None) -> str | None:
        rt = self._rt
        sym = rt.symbol if symbol is None else symbol
        pos = self.positions.get(sym) if type(sym) is str else None
        if pos is None or pos.is_flat:
            return None
        side = "sell" if pos.qty > 0 else "buy"
        return rt.order(side, abs(pos.qty), None, None, "market", None, None, sym, "close", reduce_only=True)

    def cancel(self, order_id: Any) -> None:
        rt = self._rt
        if type(order_id) is not str or not 0 < len(order_id) <= 64 or not order_id.isprintable():
            rt.fail("runtime", f"ctx.cancel: order id must be a non-empty string, got {_short(order_id)}")
        rt.count_request()
        rt.cancels.append(order_id)

    def indicator(self, name: Any, *args: Any, **kwargs: Any) -> float | None:
        rt = self._rt
        try:
            arr = rt.ind_cache.get((name, args, tuple(kwargs.items())) if kwargs else (name, args))
        except TypeError:
            rt.fail("runtime", "ctx.indicator: parameters must be numbers or strings")
        if arr is None:
            arr = rt.fetch_indicator(name, args, kwargs)
        i = rt.i
        if i < 0 or i >= len(arr):
            return None
        v = arr[i]
        return None if v != v else v

    def history(self, field: Any = "close", n: Any = 1) -> list[float]:
        rt = self._rt
        col = rt.columns.get(field) if type(field) is str else None
        if col is None:
            rt.fail(
                "runtime", f"ctx.history: unknown field {_short(field)} (open, high, low, close, volume, ts)"
            )
        if type(n) is not int or not 1 <= n <= MAX_HISTORY:
            rt.fail("runtime", f"ctx.history: n must be an integer from 1 to {MAX_HISTORY}, got {_short(n)}")
        i = rt.i
        if i < 0:
            return []
        return col[max(0, i - n + 1) : i + 1].tolist()

    def log(self, *parts: Any) -> None:
        self._rt.log(" ".join(str(p) for p in parts))


_PRICE_FIELDS = ("qty", "stop_loss", "take_profit", "limit_price", "stop_price")


def _plausible_order(raw: dict[str, Any]) -> bool:
    """A cheap check that accepts only orders ``order_request_from_untrusted`` would also accept."""
    for key in _PRICE_FIELDS:
        v = raw.get(key)
        if v is None:
            if key == "qty":
                return False
            continue
        if (type(v) is not float and type(v) is not int) or not 0 < v <= 1e12 or v != v:
            return False
    sym, tag, otype = raw["symbol"], raw["tag"], raw["type"]
    if type(sym) is not str or not 0 < len(sym) <= 64 or not sym.isprintable():
        return False
    if type(tag) is not str or len(tag) > 64 or not tag.isprintable():
        return False
    if otype == "market":
        return True
    if otype == "limit":
        return raw.get("limit_price") is not None
    if otype == "stop":
        return raw.get("stop_price") is not None
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Runtime:
    """Everything the worker holds for its one script."""

    def __init__(self, rfd: int, wfd: int, beat: Any, limits: dict[str, Any]) -> None:
        self.rfd, self.wfd, self.beat = rfd, wfd, beat
        self.reader = protocol.FrameReader(rfd)
        self.limits = limits
        self.max_orders = int(limits["max_orders_per_bar"])
        self.max_log_lines = int(limits["max_log_lines_per_call"])
        self.max_log_bytes = int(limits["max_log_bytes_per_call"])
        self.max_state = int(limits["max_state_bytes"])
        self.batch_yield_s = float(limits["batch_timeout_s"]) / 2.0
        self.symbol = ""
        self.name = "script"
        self.filename = "<script>"
        self.i = -1
        self.ts: Any = array("q")
        self.columns: dict[str, Any] = {}
        self._set_columns(array("q"), *(array("d") for _ in range(5)))
        self.orders: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        self.logs: list[str] = []
        self.log_bytes = 0
        self.logs_dropped = 0
        self.fatal: StrategyError | None = None
        self.next_id = 0
        self.ind_cache: dict[Any, Any] = {}
        self.ind_by_key: dict[str, Any] = {}
        self.callbacks: dict[str, Any] = {}
        self.ctx = Context(self)
        self.last_state = "{}"
        self.beats = 0
        self.statm_fd = -1
        self.page_kb = mmap.PAGESIZE // 1024

    # ---- plumbing ---------------------------------------------------------------------------------

    def _set_columns(self, ts: Any, o: Any, h: Any, lo: Any, c: Any, v: Any) -> None:
        self.ts = ts
        self.columns = {"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": v}

    def recv(self) -> tuple[dict[str, Any], bytes | None]:
        msg = protocol.decode(self.reader.read_frame_blocking())
        blob = self.reader.read_frame_blocking() if "blob" in msg else None
        return msg, blob

    def send(self, msg: dict[str, Any]) -> None:
        protocol.send(self.wfd, msg)

    def script_line(self) -> int | None:
        frame: Any = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == self.filename:
                return int(frame.f_lineno)
            frame = frame.f_back
        return None

    def fail(self, kind: Any, message: str) -> NoReturn:
        """Record a failure the script cannot undo (catching the exception does not clear it)."""
        if self.fatal is None:
            self.fatal = StrategyError(kind, message, line=self.script_line())
        raise ScriptFailure(message)

    # ---- ctx services -------------------------------------------------------------------------------

    def count_request(self) -> None:
        if len(self.orders) + len(self.cancels) >= self.max_orders:
            self.fail("limit", f"more than {self.max_orders} order requests in one callback")

    def order(
        self,
        side: str,
        qty: Any,
        stop_loss: Any,
        take_profit: Any,
        otype: Any,
        limit_price: Any,
        stop_price: Any,
        symbol: Any,
        tag: Any,
        reduce_only: bool = False,
    ) -> str:
        self.count_request()
        self.next_id += 1
        rid = f"r{self.next_id}"
        raw: dict[str, Any] = {
            "side": side,
            "qty": qty,
            "type": otype,
            "symbol": self.symbol if symbol is None else symbol,
            "tag": tag,
            "client_id": rid,
            "reduce_only": reduce_only,
        }
        for key, value in (
            ("stop_loss", stop_loss),
            ("take_profit", take_profit),
            ("limit_price", limit_price),
            ("stop_price", stop_price),
        ):
            if value is not None:
                raw[key] = value
        if not _plausible_order(raw):
            # the slow, exact check only to word the error; the kernel validates every order again anyway
            try:
                order_request_from_untrusted(
                    raw, strategy=self.name, source="script", default_symbol=self.symbol
                )
            except ValidationError as exc:
                self.fail("runtime", f"ctx.{side}: {exc}")
        self.orders.append(raw)
        return rid

    def log(self, line: str) -> None:
        if len(self.logs) >= self.max_log_lines:
            self.logs_dropped += 1
            return
        room = self.max_log_bytes - self.log_bytes
        if room <= 0:
            self.logs_dropped += 1
            return
        if len(line) > room:
            line = line[:room]
        encoded = len(line.encode("utf-8", "replace"))
        while encoded > room:  # multi-byte characters: shrink until it fits
            line = line[: max(0, len(line) - (encoded - room))]
            encoded = len(line.encode("utf-8", "replace"))
        self.log_bytes += encoded
        self.logs.append(line)

    def fetch_indicator(self, name: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if type(name) is not str or len(name) > 64:
            self.fail("runtime", f"ctx.indicator: name must be a string, got {_short(name)}")
        try:
            protocol.send(self.wfd, {"op": "ind", "name": name, "args": list(args), "kwargs": kwargs})
        except (TypeError, ValueError):
            self.fail("runtime", f"ctx.indicator({name!r}): parameters must be numbers or strings")
        reply, blob = self.recv()
        if "error" in reply:
            self.fail("runtime", f"ctx.indicator({name!r}): {reply['error']}")
        key = reply["key"]
        arr = self.ind_by_key.get(key)
        if arr is None:
            arr = array("d")
            if blob:
                arr.frombytes(blob)
            self.ind_by_key[key] = arr
        sig = (name, args, tuple(kwargs.items())) if kwargs else (name, args)
        self.ind_cache[sig] = arr
        return arr

    # ---- requests -----------------------------------------------------------------------------------

    def begin_call(self) -> None:
        self.orders.clear()
        self.cancels.clear()
        self.logs = []
        self.log_bytes = 0
        self.logs_dropped = 0
        self.fatal = None

    def apply_snapshot(self, snap: dict[str, Any] | None) -> None:
        if not snap:
            return
        positions = {}
        for sym, p in (snap.get("positions") or {}).items():
            positions[sym] = Position(
                sym,
                float(p.get("qty", 0.0)),
                float(p.get("avg_price", 0.0)),
                float(p.get("realized_pnl", 0.0)),
                self.name,
            )
        ctx = self.ctx
        ctx.positions = MappingProxyType(positions)
        ctx.position = positions.get(self.symbol) or Position(self.symbol, strategy=self.name)
        a = snap.get("account")
        if a:
            ctx.account = Account(
                float(a.get("cash", 0.0)),
                float(a.get("equity", 0.0)),
                float(a.get("margin_used", 0.0)),
                float(a.get("free_margin", 0.0)),
                str(a.get("currency", "USD")),
                float(a.get("leverage", 1.0)),
            )

    def error_from(self, exc: BaseException) -> StrategyError:
        if self.fatal is not None:
            return self.fatal
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        if isinstance(exc, StrategyError):
            return StrategyError(exc.kind, exc.message, line=exc.line if exc.line is not None else line)
        if isinstance(exc, MemoryError):
            return StrategyError("limit", "memory limit exceeded (MemoryError)", line=line)
        if isinstance(exc, PolicyViolation):
            return StrategyError("policy", str(exc)[:MAX_MESSAGE], line=line)
        try:
            text = str(exc)
        except Exception:  # str() of an exception can itself fail (huge ints, recursion)
            text = "<unprintable>"
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 3] + "..."
        return StrategyError(
            "runtime", f"{type(exc).__name__}: {text}" if text else type(exc).__name__, line=line
        )

    def rss_kb(self) -> int:
        """Current RSS from /proc/self/statm, opened before confinement (ru_maxrss would include the
        kernel process's RSS at fork time: Linux carries the high-water mark across execve)."""
        if self.statm_fd < 0:
            return 0
        try:
            return int(os.pread(self.statm_fd, 128, 0).split()[1]) * self.page_kb
        except (OSError, IndexError, ValueError):
            return 0

    def finish(self, upto: int, error: StrategyError | None) -> dict[str, Any]:
        if error is None and self.fatal is not None:
            error = self.fatal
        state_out = None
        if error is None:
            try:
                dumped = json.dumps(self.ctx.state, allow_nan=False, separators=(",", ":"), sort_keys=True)
            except (TypeError, ValueError, RecursionError) as exc:
                error = StrategyError("runtime", f"ctx.state must be JSON-serializable: {str(exc)[:200]}")
            else:
                if len(dumped) > self.max_state:
                    error = StrategyError(
                        "limit", f"ctx.state is {len(dumped)} bytes as JSON, more than {self.max_state}"
                    )
                elif dumped != self.last_state:
                    self.last_state = dumped
                    state_out = dumped
        logs = self.logs
        if self.logs_dropped:
            logs.append(
                f"[{self.logs_dropped} log lines dropped: limit of {self.max_log_lines} lines / "
                f"{self.max_log_bytes} bytes per call]"
            )
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out: dict[str, Any] = {
            "upto": upto,
            "logs": logs,
            "cpu_ms": int((usage.ru_utime + usage.ru_stime) * 1000),
            "rss_kb": self.rss_kb(),
        }
        if error is not None:
            out.update(ok=False, error=error.as_dict(), orders=[], cancels=[])
        else:
            out.update(ok=True, orders=self.orders, cancels=self.cancels)
            if state_out is not None:
                out["state_json"] = state_out
        return out

    def op_load(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.name = msg["name"]
        self.filename = msg["filename"]
        self.symbol = msg["symbol"]
        self.ctx.symbol = self.symbol
        self.ctx.position = Position(self.symbol, strategy=self.name)
        self.begin_call()
        try:
            code = compile_script(msg["source"], self.filename)
            env = script_globals(self.log, name=self.name)
            exec(code, env)
        except StrategyError as exc:
            return {"ok": False, "error": exc.as_dict(), "logs": self.logs}
        except BaseException as exc:
            err = self.error_from(exc)
            kind = err.kind if err.kind in ("limit", "policy") else "load"
            return {
                "ok": False,
                "error": StrategyError(kind, err.message, line=err.line).as_dict(),
                "logs": self.logs,
            }
        for name in CALLBACKS:
            fn = env.get(name)
            if fn is None:
                continue
            if type(fn) is not FunctionType:
                return {
                    "ok": False,
                    "logs": self.logs,
                    "error": StrategyError("load", f"{name} must be a function").as_dict(),
                }
            self.callbacks[name] = fn
        if "on_bar" not in self.callbacks:
            return {
                "ok": False,
                "logs": self.logs,
                "error": StrategyError("load", "the script must define on_bar(ctx, bar)").as_dict(),
            }
        params = env.get("PARAMS")
        try:
            params_json = json.dumps(params, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return {
                "ok": False,
                "logs": self.logs,
                "error": StrategyError(
                    "load", "PARAMS must be a dict of numbers, strings and bools (or specs of them)"
                ).as_dict(),
            }
        if len(params_json) > 65536:
            return {
                "ok": False,
                "logs": self.logs,
                "error": StrategyError("load", "PARAMS is too large").as_dict(),
            }
        return {
            "ok": True,
            "params_json": params_json,
            "callbacks": sorted(self.callbacks),
            "logs": self.logs,
        }

    def op_series(self, msg: dict[str, Any], blob: bytes | None) -> dict[str, Any]:
        n = int(msg["n"])
        data = memoryview(blob or b"")
        cols = []
        ts = array("q")
        ts.frombytes(data[: 8 * n])
        for k in range(5):
            col = array("d")
            col.frombytes(data[8 * n * (k + 1) : 8 * n * (k + 2)])
            cols.append(col)
        self._set_columns(ts, *cols)
        # indicator arrays were sized for the old series; ask again on first use
        self.ind_cache.clear()
        self.ind_by_key.clear()
        return {"ok": True, "n": n}

    def op_append(self, msg: dict[str, Any]) -> dict[str, Any]:
        t, o, h, lo, c, v = msg["bar"]
        cols = self.columns
        cols["ts"].append(int(t))
        for name, value in (("open", o), ("high", h), ("low", lo), ("close", c), ("volume", v)):
            cols[name].append(float(value))
        n = len(self.ts)
        for key, value in (msg.get("ind") or {}).items():
            arr = self.ind_by_key.get(key)
            if arr is None:
                continue
            while len(arr) < n - 1:  # keep index alignment with the bars
                arr.append(float("nan"))
            arr.append(float("nan") if value is None else float(value))
        return {"ok": True, "n": n}

    def op_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.begin_call()
        self.apply_snapshot(msg.get("snapshot"))
        cb = msg["cb"]
        fn = self.callbacks.get(cb)
        if cb == "on_start":
            state = msg.get("state")
            self.ctx.state = dict(state) if isinstance(state, dict) else {}
            self.last_state = json.dumps(
                self.ctx.state, allow_nan=False, separators=(",", ":"), sort_keys=True
            )
        if cb == "on_bar":
            return self.run_bars(int(msg["start"]), int(msg["stop"]))
        if fn is None:
            return self.finish(-1, None)
        self.beats += 1
        self.beat[0] = self.beats
        arg: Any = msg.get("arg")
        try:
            if cb == "on_fill":
                f = arg
                fill = Fill(
                    str(f["id"]),
                    str(f["order_id"]),
                    str(f["symbol"]),
                    Side(f["side"]),
                    float(f["qty"]),
                    float(f["price"]),
                    float(f.get("fee", 0.0)),
                    int(f.get("ts", 0)),
                    str(f.get("strategy", "")),
                    str(f.get("role", "entry")),
                )
                fn(self.ctx, fill)
            elif cb == "on_reject":
                fn(self.ctx, Rejection(arg))
            else:
                fn(self.ctx)
        except BaseException as exc:
            return self.finish(-1, self.error_from(exc))
        return self.finish(-1, None)

    def run_bars(self, start: int, stop: int) -> dict[str, Any]:
        fn = self.callbacks["on_bar"]
        ctx = self.ctx
        orders, cancels = self.orders, self.cancels
        ts, cols = self.ts, self.columns
        o, h, lo, c, v = cols["open"], cols["high"], cols["low"], cols["close"], cols["volume"]
        sym = self.symbol
        beat = self.beat
        monotonic = time.monotonic
        yield_at = monotonic() + self.batch_yield_s
        stop = min(stop, len(ts))
        upto = start - 1
        i = start
        try:
            for i in range(start, stop):
                self.i = i
                beat[0] = i + 1
                fn(ctx, Bar(ts[i], o[i], h[i], lo[i], c[i], v[i], sym))
                if self.fatal is not None:
                    return self.finish(i - 1, self.fatal)
                upto = i
                if orders or cancels:
                    break
                # A long batch hands control back now and then, so the kernel's batch budget only
                # ever measures a stuck script, never a long but healthy run.
                if monotonic() > yield_at:  # every bar: ~50 ns, and a slow bar cannot overrun the batch
                    break
        except BaseException as exc:
            return self.finish(i - 1, self.error_from(exc))
        return self.finish(upto, None)


def main() -> None:
    parent = os.getppid()
    hb_fd = int(sys.argv[1])
    limits = json.loads(sys.argv[2])
    rfd, wfd, beat = protocol.worker_io(hb_fd)
    rt = Runtime(rfd, wfd, beat, limits)
    rt.statm_fd = os.open("/proc/self/statm", os.O_RDONLY)
    # Warm up everything a script can trigger lazily (compiler, json, statistics) before the doors close.
    warm = compile_script(
        "import math\nimport statistics\nx = statistics.mean([1.0, 2.0]) + math.sqrt(4)\n"
        "y = [str(i) for i in range(3)]\n",
        "<warmup>",
    )
    exec(warm, script_globals(lambda _line: None))
    json.dumps({"a": [1.5, "x"]})
    sys.setrecursionlimit(int(limits.get("recursion_limit", 1000)))
    report = confine(
        memory_mb=int(limits["memory_mb"]),
        cpu_seconds=int(limits["cpu_seconds"]),
        keep_fds=max(rfd, wfd, rt.statm_fd) + 1,
    )
    if os.getppid() != parent:  # the kernel died before the parent-death signal was armed
        os._exit(1)
    rt.send({"ok": True, "op": "hello", "pid": os.getpid(), "confinement": report})

    def set_params(msg: dict[str, Any], _blob: Any) -> dict[str, Any]:
        rt.ctx.params = MappingProxyType(dict(msg["values"]))
        return {"ok": True}

    protocol.serve(rt, {
        "call": lambda msg, _b: rt.op_call(msg),
        "series": rt.op_series,
        "append": lambda msg, _b: rt.op_append(msg),
        "load": lambda msg, _b: rt.op_load(msg),
        "params": set_params,
    })  # fmt: skip


if __name__ == "__main__":
    main()
