"""The framed pipe protocol between the kernel and a sandbox worker.

A frame is a 4-byte little-endian length followed by that many bytes. A message is one JSON frame;
a message whose JSON has ``"blob": <nbytes>`` is followed by one raw frame of that size (bulk bar
data and indicator arrays as packed float64/int64, so a million bars cross as ~48 MB of memcpy, not
as JSON). Nothing is ever pickled: what a worker sends is parsed as JSON and then validated like any
other untrusted input.

Shared by the kernel side (:mod:`.host`) and the worker (:mod:`.worker`); standard library only.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

HEADER = struct.Struct("<I")
#: Largest frame the kernel accepts from a worker. A worker's messages are small (orders, logs, state).
MAX_WORKER_FRAME = 4 * 1024 * 1024


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame or message, or went away."""


class Closed(ProtocolError):
    """End of file: the other side closed the pipe (or died)."""


def _no_constants(token: str) -> Any:
    raise ValueError(f"non-finite number {token} in message")


def encode(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
    return HEADER.pack(len(data)) + data


def decode(data: bytes) -> Any:
    """Parse one JSON frame. NaN/Infinity tokens are refused (they are not JSON)."""
    return json.loads(data, parse_constant=_no_constants)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send(fd: int, msg: dict[str, Any], blob: bytes | memoryview | None = None) -> None:
    """Write one message (and its blob, if any)."""
    if blob is not None:
        msg = {**msg, "blob": len(blob)}
    write_all(fd, encode(msg))
    if blob is not None:
        write_all(fd, HEADER.pack(len(blob)))
        write_all(fd, blob)


class FrameReader:
    """Reads frames from a file descriptor through a buffer.

    ``feed()`` reads whatever is available (one ``os.read``), ``next_frame()`` pops a complete frame
    or returns None. The kernel side polls the descriptor with a timeout between reads, so a silent
    worker never blocks the kernel.
    """

    def __init__(self, fd: int, max_frame: int | None = None) -> None:
        self.fd = fd
        self.max_frame = max_frame
        self.buf = bytearray()

    def feed(self, size: int = 1 << 16) -> None:
        # os.read allocates `size` bytes up front: 1 MiB per small reply cost ~tens of µs in page faults
        chunk = os.read(self.fd, size)
        if not chunk:
            raise Closed("pipe closed")
        self.buf += chunk

    def next_frame(self) -> bytes | None:
        if len(self.buf) < 4:
            return None
        (n,) = HEADER.unpack_from(self.buf, 0)
        if self.max_frame is not None and n > self.max_frame:
            raise ProtocolError(f"frame of {n} bytes exceeds the limit of {self.max_frame}")
        if len(self.buf) < 4 + n:
            return None
        if len(self.buf) == 4 + n:
            frame = bytes(memoryview(self.buf)[4:])
            self.buf = bytearray()  # drop the capacity too: a bulk frame must not pin its size in memory
        else:
            frame = bytes(memoryview(self.buf)[4 : 4 + n])
            del self.buf[: 4 + n]
        return frame

    def read_frame_blocking(self) -> bytes:
        """Worker side: block until a whole frame is there (the kernel is trusted to send whole ones)."""
        while True:
            frame = self.next_frame()
            if frame is not None:
                return frame
            if len(self.buf) >= 4:
                (n,) = HEADER.unpack_from(self.buf, 0)
                self.feed(max(1 << 16, 4 + n - len(self.buf)))
            else:
                self.feed()


# -- the worker side, shared by the Python and the V8 worker ---------------------------------------
def worker_io(hb_fd: int) -> tuple[int, int, memoryview]:
    """Move the protocol to fresh descriptors (0/1 become /dev/null so nothing else can write into the
    stream by accident) and map the heartbeat page. Returns (read fd, write fd, heartbeat)."""
    import mmap

    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    page = mmap.mmap(hb_fd, mmap.PAGESIZE)
    os.close(hb_fd)
    return rfd, wfd, memoryview(page).cast("q")


def serve(rt: Any, handlers: dict[str, Any], *, after_call: Any = None) -> None:
    """The worker's request loop: one reply per request, ``exit`` or a closed pipe ends the process.
    A bug in a handler is reported as a runtime error, never as the script's fault or a silent death."""
    while True:
        try:
            msg, blob = rt.recv()
        except Closed:
            os._exit(0)
        op = msg.get("op")
        if op == "exit":
            os._exit(0)
        try:
            handler = handlers.get(op)
            if handler is None:
                reply = {"ok": False, "error": {"kind": "runtime", "message": f"unknown request {op!r}"[:200],
                                                "line": None}}  # fmt: skip
            else:
                reply = handler(msg, blob)
        except BaseException as exc:
            reply = {"ok": False, "upto": -1, "orders": [], "cancels": [], "logs": [],
                     "error": {"kind": "runtime", "message": f"worker error: {type(exc).__name__}: {exc}"[:300],
                               "line": None}}  # fmt: skip
        del blob  # a bulk frame must not stay alive until the next request
        if op == "call" and after_call is not None:
            after_call(reply)
        rt.send(reply)
