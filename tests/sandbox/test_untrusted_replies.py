"""The kernel side: everything a worker sends back is untrusted. A worker that escaped every layer
inside it (played by evil/evil_worker.py, a real process on real pipes) cannot get anything invalid
past ScriptHost; every lie ends the script with a clear error and kills the worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sandbox_support import make_series, snapshot

import stratkernel.sandbox.host as host_module
from stratkernel.core.errors import StrategyError
from stratkernel.sandbox.host import SandboxLimits, ScriptHost

EVIL = Path(__file__).with_name("evil") / "evil_worker.py"


@pytest.fixture
def evil(monkeypatch: pytest.MonkeyPatch, make_host: Callable[..., ScriptHost]) -> Callable[..., ScriptHost]:
    monkeypatch.setattr(host_module.ScriptHost, "worker_script", EVIL)

    def build(mode: str, **kw: object) -> ScriptHost:
        host = make_host(f"MODE = '{mode}'\ndef on_bar(ctx, bar):\n    pass\n", name="evil", **kw)
        host.load()
        return host

    return build


def test_the_fake_worker_speaks_the_protocol(evil: Callable[..., ScriptHost]) -> None:
    host = evil("honest")
    host.set_series(make_series(5))
    res = host.run(0, 5, snapshot())
    assert res.error is None and res.upto == 0 and res.orders[0].client_id == "r1"
    assert res.orders[0].strategy == "evil" and res.orders[0].source == "script"


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("nan_order", "malformed"),
        ("huge_frame", "exceeds the limit"),
        ("deep_json", "malformed"),
        ("too_many_orders", "malformed result"),
        ("no_client_id", "client_id"),
        ("string_qty", "qty"),
        ("unknown_field", "unknown fields"),
        ("upto_out_of_range", "malformed result"),
        ("log_flood", "malformed result"),
        ("state_not_json", "ctx.state"),
        ("not_an_object", "not an object"),
        ("indicator_flood", "wall time"),
        ("exit", "exit code 3"),
    ],
)
def test_lies_are_refused_and_the_worker_is_killed(
    evil: Callable[..., ScriptHost], mode: str, needle: str
) -> None:
    host = evil(mode)
    host.set_series(make_series(5))
    res = host.run(0, 5, snapshot())
    assert res.error is not None, mode
    assert needle in res.error.message, res.error
    assert res.orders == []
    assert not host.alive


def test_an_unknown_error_kind_and_a_bad_line_are_normalized(evil: Callable[..., ScriptHost]) -> None:
    host = evil("weird_error")
    host.set_series(make_series(5))
    res = host.run(0, 5, snapshot())
    assert res.error is not None
    assert res.error.kind == "runtime" and res.error.line is None and len(res.error.message) <= 500


def test_a_worker_that_stops_reading_cannot_block_the_kernel(evil: Callable[..., ScriptHost]) -> None:
    host = evil("stop_reading", limits=SandboxLimits(load_timeout_s=0.5))
    with pytest.raises(StrategyError) as info:
        host.set_series(make_series(200_000))
    assert info.value.kind == "limit" and "stopped reading" in info.value.message
    assert not host.alive
