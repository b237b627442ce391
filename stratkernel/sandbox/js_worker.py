"""The JavaScript sandbox worker: one process, one V8 isolate, one user script.

Started by :class:`~stratkernel.sandbox.js_host.JsScriptHost` exactly like the Python worker
(``python -I <this file> <heartbeat fd> <limits json>``, empty environment, own session, only the
protocol pipes and the heartbeat page inherited) and speaking the same framed protocol
(:mod:`.protocol`), so the parent side is the Python host's code unchanged.

Inside: py-mini-racer's V8 isolate is created *before* the process confines itself (:mod:`.confine`:
no network, no files, no exec/fork, seccomp; V8 reserves its address space up front, so the
RLIMIT_AS backstop is taken after that). The glue (``js_prelude.js``) is evaluated before the user's
script: it freezes the intrinsics, removes eval/Function/WebAssembly/Atomics/WeakRef, and keeps the
driver in a closure reachable only through a random global name plus a secret key. Each request
becomes one ``eval`` of a tiny expression that calls the driver; bar data and indicator arrays cross as
shared ArrayBuffers (memcpy, no JSON). A helper thread copies the driver's per-callback heartbeat
(an Int32Array) into the parent's heartbeat page, so the parent's per-callback wall-time budget works
as for Python scripts. V8's own heap limit (``--max-old-space-size``) is a backstop; the parent's RSS poll
and wall-time watch are the real caps (V8's heap limit does not count ArrayBuffers). py-mini-racer's
eval ``timeout`` is not used: it starts a watchdog thread per call, and the confined worker may not
create threads (RLIMIT_NPROC=0); the parent's kill is the time limit.
"""

from __future__ import annotations

if __name__ == "__main__":  # started as a script: import our modules without the package's heavy __init__
    import sys as _sys
    import types as _types
    from pathlib import Path as _Path

    _pkg = _types.ModuleType("stratkernel")
    _pkg.__path__ = [str(_Path(__file__).resolve().parents[1])]
    _sys.modules["stratkernel"] = _pkg

import ctypes
import json
import mmap
import os
import re
import resource
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stratkernel.sandbox import protocol
from stratkernel.sandbox.confine import confine

PRELUDE = Path(__file__).with_name("js_prelude.js")
MAX_MESSAGE = 300
_LOCATION = re.compile(r" at (\S+?):(\d+):(\d+)(?:\n|$)")
_CALLBACK_NAMES = (("on_start", "onStart"), ("on_bar", "onBar"), ("on_fill", "onFill"),
                   ("on_reject", "onReject"), ("on_stop", "onStop"))  # fmt: skip
MAX_INDICATOR_FETCHES = 64


def script_url(filename: str, name: str) -> str:
    """The ``//# sourceURL`` of the user's script: its file name, reduced to safe characters."""
    base = os.path.basename(filename) or name or "script.js"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", base)[:80]
    return safe if safe and not safe.startswith("stratkernel-js-glue") else "script.js"


def _address(view: memoryview) -> int:
    """The address of the V8 backing store behind a memoryview py-mini-racer returned."""
    return ctypes.addressof(view.obj)  # type: ignore[arg-type]


class JsRuntime:
    """Everything the worker holds for its one script."""

    def __init__(self, rfd: int, wfd: int, beat: Any, limits: dict[str, Any]) -> None:
        # py-mini-racer imports pkg_resources only to locate its .so next to itself (its own fallback);
        # that import alone costs ~200 ms of worker start-up, i.e. of every hot reload of a JS script
        sys.modules.setdefault("pkg_resources", None)  # type: ignore[arg-type]
        from py_mini_racer import MiniRacer, py_mini_racer

        self.mr_errors = py_mini_racer
        self.rfd, self.wfd, self.beat = rfd, wfd, beat
        self.reader = protocol.FrameReader(rfd)
        self.limits = limits
        self.statm_fd = -1  # /proc/self/statm, opened by main() before confinement
        # One isolate per worker process = one per strategy; created before confinement. The heap cap is
        # a V8 flag (py-mini-racer 0.6's per-eval max_memory hangs the next evals when no eval timeout
        # is given, and timeouts need a thread the confined worker may not start); a V8 heap OOM aborts
        # the worker, which the host reports as a limit. The parent's RSS poll is the real cap.
        heap_mb = max(64, int(limits["memory_mb"]))
        MiniRacer.v8_flags = ["--single-threaded", "--no-expose-wasm", f"--max-old-space-size={heap_mb}"]
        self.mr = MiniRacer()
        self.token = "__sk_" + secrets.token_hex(12)
        self.key = secrets.token_hex(16)
        self.prelude = PRELUDE.read_text()
        self.url = "script.js"
        self.js_beat: Any = None
        self.views: list[memoryview] = []
        self.beating = threading.Event()
        self.loaded = False
        threading.Thread(target=self._pump_heartbeat, daemon=True).start()

    # ---- plumbing ---------------------------------------------------------------------------------

    def recv(self) -> tuple[dict[str, Any], bytes | None]:
        msg = protocol.decode(self.reader.read_frame_blocking())
        blob = self.reader.read_frame_blocking() if "blob" in msg else None
        return msg, blob

    def send(self, msg: dict[str, Any], blob: bytes | None = None) -> None:
        protocol.send(self.wfd, msg, blob)

    def _pump_heartbeat(self) -> None:
        """Copy the driver's callback counter into the parent's heartbeat page while V8 runs."""
        beat = self.beat
        while True:
            self.beating.wait()
            hb = self.js_beat
            if hb is not None:
                v = hb.value
                if beat[0] != v:
                    beat[0] = v
            time.sleep(0.004)

    def glue(self, op: str, *args: Any) -> Any:
        """Call the driver: ``TOKEN(KEY, op, ...args)``; arguments are JSON literals."""
        code = f'{self.token}("{self.key}","{op}"' + "".join("," + json.dumps(a) for a in args) + ")"
        self.beating.set()
        try:
            return self.mr.eval(code)
        finally:
            self.beating.clear()

    def js_error(self, exc: BaseException, default_kind: str) -> dict[str, Any]:
        """A StrategyError dict from a py-mini-racer exception (line taken from the script's frame)."""
        e = self.mr_errors
        if isinstance(exc, e.JSTimeoutException):
            return {"kind": "limit", "message": "the script exceeded its wall time budget", "line": None}
        if isinstance(exc, e.JSOOMException):
            return {"kind": "limit", "message": "memory limit exceeded (V8 heap)", "line": None}
        text = str(exc)
        if text.startswith("Uncaught "):
            text = text[len("Uncaught ") :]
        first = text.split("\n", 1)[0]
        line = None
        m = _LOCATION.search(first)
        if m is not None:
            if m.group(1) == self.url:
                line = int(m.group(2))
            first = first[: m.start()]
        if line is None:  # thrown elsewhere (e.g. by a refused built-in): the innermost frame of the script
            frame = re.search(r"\(?" + re.escape(self.url) + r":(\d+):\d+", text)
            if frame is not None:
                line = int(frame.group(1))
        kind = default_kind
        if "not allowed in strategy scripts" in first:
            kind = "policy"
        if len(first) > MAX_MESSAGE:
            first = first[: MAX_MESSAGE - 3] + "..."
        return {"kind": kind, "message": first or "the script failed", "line": line}

    def usage(self, out: dict[str, Any]) -> dict[str, Any]:
        u = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_ms"] = int((u.ru_utime + u.ru_stime) * 1000)
        # current RSS from /proc/self/statm (opened before confinement): ru_maxrss carries the parent's
        # peak across fork+exec, so a large kernel process would make every worker look over its cap
        fd = self.statm_fd
        if fd >= 0:
            try:
                out["rss_kb"] = int(os.pread(fd, 128, 0).split()[1]) * (mmap.PAGESIZE // 1024)
            except (OSError, IndexError, ValueError):
                out["rss_kb"] = 0
        else:
            out["rss_kb"] = 0
        return out

    # ---- requests -----------------------------------------------------------------------------------

    def op_load(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.loaded:
            return {"ok": False, "error": {"kind": "load", "message": "already loaded", "line": None}}
        self.loaded = True
        source = msg["source"]
        self.url = script_url(str(msg["filename"]), str(msg["name"]))
        glue_limits = {k: self.limits[k] for k in ("max_orders_per_bar", "max_log_lines_per_call",
                                                   "max_log_bytes_per_call", "max_state_bytes",
                                                   "batch_timeout_s")}  # fmt: skip
        args = ",".join(json.dumps(a) for a in (self.token, self.key, self.url, json.dumps(glue_limits)))
        self.mr.eval(self.prelude.replace("%ARGS%", args))
        hb = self.glue("heartbeat")
        self.views.append(hb)
        self.js_beat = ctypes.c_int32.from_address(_address(hb))
        self.glue("init", str(msg["symbol"]), str(msg["name"]))
        # 1. syntax, with a line number (a parse failure of the script itself has none in py-mini-racer)
        try:
            self.glue("syntax", source)
        except self.mr_errors.MiniRacerBaseException as exc:
            err = self.js_error(exc, "load")
            m = re.search(r" at undefined:(\d+):\d+", str(exc).split("\n", 1)[0])
            # the Function constructor puts two lines of its own before the body
            err["line"] = max(1, int(m.group(1)) - 2) if m else None
            if err["kind"] != "limit":
                err["kind"] = "load"
            return {"ok": False, "error": err, "logs": []}
        # 2. run the module body
        try:
            self.beating.set()
            self.mr.eval(source + "\n//# sourceURL=" + self.url)
        except self.mr_errors.JSParseException:
            return {
                "ok": False,
                "error": {"kind": "load", "message": "syntax error", "line": None},
                "logs": [],
            }
        except self.mr_errors.MiniRacerBaseException as exc:
            return {"ok": False, "error": self.js_error(exc, "load"), "logs": []}
        finally:
            self.beating.clear()
        # 3. hand the definitions to the driver (a separate script, so `const PARAMS` is visible)
        names = ["PARAMS"] + [js for _, js in _CALLBACK_NAMES]
        probe = ",".join(f'typeof {n} === "undefined" ? undefined : {n}' for n in names)
        code = f'{self.token}("{self.key}","register",{probe})'
        try:
            self.beating.set()
            raw = self.mr.eval(code)
        except self.mr_errors.MiniRacerBaseException as exc:
            return {"ok": False, "error": self.js_error(exc, "load"), "logs": []}
        finally:
            self.beating.clear()
        reply = json.loads(raw)  # the driver names the callbacks the Python way (on_bar...)
        reply["logs"] = []
        return reply

    def op_params(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.glue("params", json.dumps(msg["values"], allow_nan=False))
        return {"ok": True}

    def op_series(self, msg: dict[str, Any], blob: bytes | None) -> dict[str, Any]:
        n = int(msg["n"])
        data = memoryview(blob or b"")
        if len(data) != 48 * n:
            return {"ok": False}
        self.views = self.views[:1]  # let the previous series' buffer go first
        buf = self.glue("series", n)
        # one memcpy straight from the received frame into V8's buffer (no intermediate copies: the
        # parent's RSS cap sees every transient byte); the glue then converts the int64 timestamps
        src = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p).value if blob else None
        if src is not None:
            ctypes.memmove(_address(buf), src, 48 * n)
        self.glue("seriesDone", n)
        self.views.append(buf)
        return {"ok": True, "n": n}

    def op_append(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.glue("append", json.dumps({"bar": msg["bar"], "ind": msg.get("ind") or {}}, allow_nan=False))
        return {"ok": True, "n": 0}

    def fetch_indicator(self, need: dict[str, Any]) -> dict[str, Any] | None:
        """Ask the kernel for an indicator and give it to the driver; an error dict if that failed."""
        name = need.get("name")
        self.send({"op": "ind", "name": name, "args": need.get("args"), "kwargs": need.get("kwargs")})
        reply, blob = self.recv()
        if "error" in reply:
            message = f"ctx.indicator({json.dumps(name)}): {reply['error']}"[:MAX_MESSAGE]
            return {"kind": "runtime", "message": message, "line": need.get("line")}
        count = int(reply["n"])
        buf = self.glue("indicator", str(reply["key"]), count, str(need["sig"]))
        if blob:
            ctypes.memmove(_address(buf), blob, min(len(blob), 8 * count))
        return None

    def op_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        cb = msg["cb"]
        snap = msg.get("snapshot")
        snap_json = None if snap is None else json.dumps(snap, allow_nan=False)
        logs: list[str] = []
        fetched: set[str] = set()
        start = int(msg.get("start", 0))
        stop = int(msg.get("stop", 0))
        while True:
            try:
                if cb == "on_bar":
                    raw = self.glue("bars", start, stop, snap_json)
                else:
                    state = json.dumps(msg.get("state") or {}) if cb == "on_start" else None
                    arg = json.dumps(msg["arg"]) if "arg" in msg else None
                    raw = self.glue("call", cb, snap_json, arg, state)
            except self.mr_errors.MiniRacerBaseException as exc:
                upto = start - 1 if cb == "on_bar" else -1
                return {"ok": False, "upto": upto, "orders": [], "cancels": [], "logs": logs,
                        "error": self.js_error(exc, "runtime")}  # fmt: skip
            reply = json.loads(raw)
            if "need" not in reply:
                reply["logs"] = logs + reply.get("logs", [])
                # Promise/async continuations ran when that eval ended (V8 drains microtasks there).
                # One that touched ctx fails this call, before its result reaches the kernel.
                if reply.get("ok") and self.glue("late") == "late":
                    upto = start - 1 if cb == "on_bar" else -1
                    return {
                        "ok": False,
                        "upto": upto,
                        "orders": [],
                        "cancels": [],
                        "logs": reply["logs"],
                        "error": {
                            "kind": "policy",
                            "line": None,
                            "message": "the script used ctx after its callback returned (promise or async code)",
                        },
                    }
                return reply
            # an indicator the script asks for the first time: fetch it, then run the bar again
            need = reply["need"]
            logs += reply.get("logs", [])
            sig = str(need.get("sig"))
            problem = None
            if sig in fetched or len(fetched) >= MAX_INDICATOR_FETCHES:
                problem = {"kind": "runtime", "message": "ctx.indicator: could not serve this indicator",
                           "line": need.get("line")}  # fmt: skip
            else:
                fetched.add(sig)
                problem = self.fetch_indicator(need)
            if cb == "on_bar":
                start = int(reply["upto"]) + 1
            if problem is not None:
                upto = start - 1 if cb == "on_bar" else -1
                return {
                    "ok": False,
                    "upto": upto,
                    "orders": [],
                    "cancels": [],
                    "logs": logs,
                    "error": problem,
                }
            snap_json = None  # the driver keeps the snapshot it was given


def main() -> None:
    parent = os.getppid()
    hb_fd = int(sys.argv[1])
    limits = json.loads(sys.argv[2])
    rfd, wfd, beat = protocol.worker_io(hb_fd)
    rt = JsRuntime(rfd, wfd, beat, limits)
    rt.statm_fd = os.open("/proc/self/statm", os.O_RDONLY)
    rt.mr.eval("JSON.stringify([1.5, 'x', {a: [1]}])")  # warm up before the doors close
    # V8 reserved its address space already; the AS backstop sits above what is mapped now (+ budget)
    report = confine(
        memory_mb=int(limits["memory_mb"]),
        cpu_seconds=int(limits["cpu_seconds"]),
        keep_fds=max(rfd, wfd, rt.statm_fd) + 1,
    )
    if os.getppid() != parent:  # the kernel died before the parent-death signal was armed
        os._exit(1)
    rt.send({"ok": True, "op": "hello", "pid": os.getpid(), "confinement": report,
             "v8": str(rt.mr.v8_version).removeprefix("b'").removesuffix("'")})  # fmt: skip
    protocol.serve(rt, {
        "call": lambda msg, _b: rt.op_call(msg),
        "series": rt.op_series,
        "append": lambda msg, _b: rt.op_append(msg),
        "load": lambda msg, _b: rt.op_load(msg),
        "params": lambda msg, _b: rt.op_params(msg),
    }, after_call=rt.usage)  # fmt: skip


if __name__ == "__main__":
    main()
