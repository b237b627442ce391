"""The process layer on its own: what a confined worker can no longer do, even with the language
layer out of the way (the probe below is plain Python, not a restricted script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from sandbox_support import make_series, snapshot

from stratkernel.sandbox.host import ScriptHost

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "stratkernel"

PROBE = textwrap.dedent(
    """
    import json, os, socket, sys, types
    pkg = types.ModuleType("stratkernel"); pkg.__path__ = [sys.argv[1]]; sys.modules["stratkernel"] = pkg
    from stratkernel.sandbox.confine import confine
    canary, parent = sys.argv[2], int(sys.argv[3])
    report = confine(memory_mb=256, cpu_seconds=30, keep_fds=16)
    out = {"report": report, "uid": os.getuid()}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "ALLOWED"
        except OSError as exc:
            out[name] = "denied"
        except Exception as exc:
            out[name] = "denied:" + type(exc).__name__

    attempt("read_canary", lambda: open(canary).read())
    attempt("read_passwd", lambda: open("/etc/passwd").read())
    attempt("write_file", lambda: open("/tmp/stratkernel-sandbox-probe", "w").write("x"))
    attempt("list_dir", lambda: os.listdir("/"))
    attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    attempt("socket_unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    attempt("fork", lambda: os._exit(0) if os.fork() == 0 else None)
    attempt("exec", lambda: os.execv("/bin/true", ["/bin/true"]))
    attempt("kill_parent", lambda: os.kill(parent, 0))
    attempt("kill_all", lambda: os.kill(-1, 0))
    attempt("mkdir", lambda: os.mkdir("/tmp/stratkernel-sandbox-probe-dir"))
    attempt("unlink", lambda: os.unlink("/tmp/stratkernel-sandbox-probe"))
    attempt("signal_self", lambda: os.kill(os.getpid(), 0))
    os.write(1, json.dumps(out).encode())
    """
)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict:
    canary = tmp_path_factory.mktemp("canary") / "canary.txt"
    canary.write_text("CANARY-probe-secret")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(PACKAGE_DIR), str(canary), str(os.getpid())],
        capture_output=True,
        env={},
        timeout=60,
        close_fds=True,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return json.loads(proc.stdout)


def test_confinement_steps_hold_on_this_machine(probe: dict) -> None:
    report = probe["report"]
    for step in (
        "RLIMIT_CORE",
        "RLIMIT_FSIZE",
        "RLIMIT_NOFILE",
        "RLIMIT_NPROC",
        "RLIMIT_AS",
        "RLIMIT_CPU",
        "seccomp",
    ):
        assert report[step] == "ok", report
    if "drop_root" in report:
        assert report["drop_root"] == "ok" and probe["uid"] == 65534


@pytest.mark.parametrize(
    "action",
    [
        "read_canary",
        "read_passwd",
        "write_file",
        "list_dir",
        "socket",
        "socket_unix",
        "fork",
        "exec",
        "kill_parent",
        "kill_all",
        "mkdir",
        "unlink",
    ],
)
def test_confined_process_cannot(probe: dict, action: str) -> None:
    assert probe[action].startswith("denied"), probe


def test_confined_process_may_still_signal_itself(probe: dict) -> None:
    assert probe["signal_self"] == "ALLOWED"


def test_no_file_created_by_the_probe() -> None:
    assert not Path("/tmp/stratkernel-sandbox-probe").exists()
    assert not Path("/tmp/stratkernel-sandbox-probe-dir").exists()


def test_worker_runs_with_empty_environment_and_only_its_pipes(make_host: Callable[..., ScriptHost]) -> None:
    host = make_host("def on_bar(ctx, bar):\n    pass\n")
    host.load()
    assert host._proc is not None
    pid = host._proc.pid
    assert Path(f"/proc/{pid}/environ").read_bytes() == b""
    targets = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    # /dev/null on 0-2, the two protocol pipes, the heartbeat page, its own statm; nothing inherited
    assert targets.count("/dev/null") == 3
    assert sum(t.startswith("pipe:") for t in targets) == 2
    assert sum("stratkernel-heartbeat" in t for t in targets) == 1
    assert sum(t.endswith("/statm") for t in targets) == 1
    assert len(targets) == 7, targets
    assert os.getpgid(pid) == pid  # own session / process group
    status = Path(f"/proc/{pid}/status").read_text()
    assert "Seccomp:\t2" in status
    assert host.confinement.get("seccomp") == "ok"


def test_worker_death_is_detected_and_reported(make_host: Callable[..., ScriptHost]) -> None:
    import signal

    for sig, kind in ((signal.SIGSEGV, "runtime"), (signal.SIGKILL, "limit")):
        host = make_host("def on_bar(ctx, bar):\n    pass\n")
        host.load()
        host.set_series(make_series(20))
        assert host._proc is not None
        os.kill(host._proc.pid, sig)
        res = host.run(0, 20, snapshot())
        assert res.error is not None and res.error.kind == kind, res.error
        assert "worker" in res.error.message
        assert not host.alive


ORPHAN_PARENT = textwrap.dedent(
    """
    import os, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from sandbox_support import make_series, snapshot
    from stratkernel.core.context import IndicatorEngine
    from stratkernel.core.plugins import load_plugins
    from stratkernel.sandbox.host import ScriptHost
    engine = IndicatorEngine(load_plugins().registry)
    data = make_series(10)
    engine.attach_series(data)
    host = ScriptHost("def on_bar(ctx, bar):\\n    while True:\\n        pass\\n", name="orphan",
                      indicators=engine.provider(data.symbol), symbol=data.symbol)
    host.load()
    host.set_series(data)
    print(host._proc.pid, flush=True)
    threading.Thread(target=host.run, args=(0, 10, snapshot()), daemon=True).start()
    time.sleep(0.2)
    os._exit(0)  # the kernel process dies while the script is spinning
    """
)


def test_worker_dies_with_the_kernel_process() -> None:
    import time

    proc = subprocess.run(
        [sys.executable, "-c", ORPHAN_PARENT, str(Path(__file__).parent)], capture_output=True, timeout=60
    )
    pid = int(proc.stdout.split()[0])
    for _ in range(100):  # wait for the kernel to reap it (no timing is asserted, only the outcome)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().split(") ")[1].startswith("Z"):
                break  # dead, waiting for init to reap it
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        raise AssertionError("the worker outlived the kernel process")
