"""A worker that got past every layer inside it and now lies to the kernel (a test fixture).

It speaks the real protocol, then answers a ``run`` call according to the MODE named in the script
source it was asked to load. Used by test_untrusted_replies.py with real pipes and a real process.
"""

import json
import os
import struct
import time

H = struct.Struct("<I")


def read_frame():
    head = b""
    while len(head) < 4:
        chunk = os.read(0, 4 - len(head))
        if not chunk:
            os._exit(0)
        head += chunk
    (n,) = H.unpack(head)
    data = b""
    while len(data) < n:
        chunk = os.read(0, min(1 << 20, n - len(data)))
        if not chunk:
            os._exit(0)
        data += chunk
    return data


def recv():
    msg = json.loads(read_frame())
    if mode == "stop_reading" and msg.get("op") == "series":
        time.sleep(60)  # never drain the bulk data that follows
    if "blob" in msg:
        read_frame()
    return msg


def send_raw(data):
    os.write(1, H.pack(len(data)) + data)


def send(msg):
    send_raw(json.dumps(msg).encode())


def ok_result(**extra):
    out = {"ok": True, "upto": 0, "orders": [], "cancels": [], "logs": [], "cpu_ms": 0, "rss_kb": 1000}
    out.update(extra)
    return out


ORDER = {
    "side": "buy",
    "qty": 1.0,
    "type": "market",
    "symbol": "TEST/USD",
    "tag": "",
    "client_id": "r1",
    "reduce_only": False,
    "stop_loss": 90.0,
}

mode = ""
send({"ok": True, "op": "hello", "pid": os.getpid(), "confinement": {}})
while True:
    msg = recv()
    op = msg.get("op")
    if op == "load":
        mode = msg["source"].split("MODE = ", 1)[1].split("\n", 1)[0].strip().strip("'\"")
        send({"ok": True, "params_json": "{}", "callbacks": ["on_bar"], "logs": []})
    elif op == "params":
        send({"ok": True})
    elif op == "series":
        send({"ok": True, "n": msg["n"]})
    elif op == "call":
        if mode == "nan_order":
            send_raw(
                b'{"ok": true, "upto": 0, "orders": [{"side": "buy", "qty": NaN}], "cancels": [], "logs": []}'
            )
        elif mode == "huge_frame":
            send_raw(b"[" + b" " * (5 * 1024 * 1024) + b"]")
        elif mode == "deep_json":
            send_raw(b"[" * 100000 + b"]" * 100000)
        elif mode == "too_many_orders":
            send(ok_result(orders=[dict(ORDER, client_id=f"r{i}") for i in range(50)]))
        elif mode == "no_client_id":
            send(ok_result(orders=[dict(ORDER, client_id="")]))
        elif mode == "string_qty":
            send(ok_result(orders=[dict(ORDER, qty="1e9")]))
        elif mode == "unknown_field":
            send(ok_result(orders=[dict(ORDER, strategy="someone_else")]))
        elif mode == "upto_out_of_range":
            send(ok_result(upto=10**6))
        elif mode == "log_flood":
            send(ok_result(logs=["x" * 1000] * 1000))
        elif mode == "state_not_json":
            send(ok_result(state_json="{not json"))
        elif mode == "weird_error":
            send(
                {
                    "ok": False,
                    "upto": -1,
                    "orders": [],
                    "cancels": [],
                    "logs": [],
                    "error": {"kind": "root", "message": "m" * 100000, "line": -5},
                }
            )
        elif mode == "indicator_flood":
            while True:
                send({"op": "ind", "name": "sma", "args": [3], "kwargs": {}})
                read_frame()
                read_frame()
        elif mode == "not_an_object":
            send([1, 2, 3])
        elif mode == "exit":
            os._exit(3)
        else:
            send(ok_result(orders=[ORDER]))
