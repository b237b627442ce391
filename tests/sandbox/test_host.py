"""ScriptHost: the contract with the kernel (load, params, run batches, ctx, callbacks, budgets)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest
from sandbox_support import SYMBOL, make_series, snapshot

from stratkernel.core.context import IndicatorEngine
from stratkernel.core.data import BarSeries
from stratkernel.core.errors import StrategyError, ValidationError
from stratkernel.core.model import Fill, OrderType, Side
from stratkernel.core.plugins import PluginHost
from stratkernel.sandbox.host import SandboxLimits, ScriptHost

Make = Callable[..., ScriptHost]

ORDERS_AT_5_AND_9 = """
PARAMS = {"qty": {"default": 2.0, "min": 0.5, "max": 10.0}, "when": 5}

def on_bar(ctx, bar):
    if ctx.bar_index == ctx.params["when"] or ctx.bar_index == 9:
        ctx.buy(ctx.params["qty"], stop_loss=bar.close * 0.9, take_profit=bar.close * 1.2, tag="t")
"""


def loaded(make_host: Make, source: str, params: dict | None = None, **kw: object) -> ScriptHost:
    host = make_host(source, **kw)
    host.load(params)
    return host


def test_version_params_and_callbacks(make_host: Make) -> None:
    host = loaded(make_host, ORDERS_AT_5_AND_9, {"qty": 3.0})
    assert host.version == hashlib.sha256(ORDERS_AT_5_AND_9.encode()).hexdigest()[:12]
    assert set(host.params_spec) == {"qty", "when"}
    assert host.params_spec["qty"].max == 10.0
    assert host.params == {"qty": 3.0, "when": 5}
    assert host.callbacks == {"on_bar"}
    assert host.alive


@pytest.mark.parametrize(
    ("source", "params", "kind", "line", "needle"),
    [
        (ORDERS_AT_5_AND_9, {"qty": 50.0}, "load", None, "<= 10"),
        (ORDERS_AT_5_AND_9, {"nope": 1}, "load", None, "unknown parameter"),
        ("PARAMS = {'a': [1, 2]}\ndef on_bar(ctx, bar):\n    pass\n", None, "load", None, "default"),
        ("PARAMS = {'a': {'min': 1}}\ndef on_bar(ctx, bar):\n    pass\n", None, "load", None, "default"),
        ("PARAMS = 5\ndef on_bar(ctx, bar):\n    pass\n", None, "load", None, "PARAMS"),
        ("def on_start(ctx):\n    pass\n", None, "load", None, "on_bar"),
        ("on_bar = 5\n", None, "load", None, "function"),
        ("x = 1\ny = x / 0\ndef on_bar(ctx, bar):\n    pass\n", None, "load", 2, "ZeroDivisionError"),
        ("import os\ndef on_bar(ctx, bar):\n    pass\n", None, "policy", 1, "os"),
    ],
)
def test_load_refusals(
    make_host: Make, source: str, params: dict | None, kind: str, line: int | None, needle: str
) -> None:
    host = make_host(source, name="bad")
    with pytest.raises(StrategyError) as info:
        host.load(params)
    assert info.value.kind == kind
    assert info.value.line == line
    assert needle in info.value.message
    assert info.value.strategy == "bad"
    assert not host.alive


def test_run_stops_at_the_first_bar_with_requests(make_host: Make, series: BarSeries) -> None:
    host = loaded(make_host, ORDERS_AT_5_AND_9, name="five")
    host.set_series(series)
    snap = snapshot()
    assert host.start(snap, None).error is None  # no on_start: still fine
    r1 = host.run(0, 20, snap)
    assert r1.error is None and r1.upto == 5
    (o,) = r1.orders
    assert (o.client_id, o.strategy, o.source, o.symbol, o.side, o.qty, o.type) == (
        "r1",
        "five",
        "script",
        SYMBOL,
        Side.BUY,
        2.0,
        OrderType.MARKET,
    )
    assert o.stop_loss == pytest.approx(float(series.close[5]) * 0.9)
    assert o.take_profit == pytest.approx(float(series.close[5]) * 1.2)
    assert o.tag == "t"
    r2 = host.run(6, 20, snap)
    assert r2.upto == 9 and [x.client_id for x in r2.orders] == ["r2"]
    r3 = host.run(10, 20, snap)
    assert r3.upto == 19 and r3.orders == [] and r3.error is None
    assert host.run(20, 20, snap).upto == 19
    with pytest.raises(ValidationError):
        host.run(10, len(series) + 1, snap)


CTX_TOUR = """
import math
from statistics import mean

def on_start(ctx):
    ctx.log("start", ctx.symbol, ctx.position.qty, ctx.account.equity, ctx.params["k"])
    ctx.state["starts"] = ctx.state.get("starts", 0) + 1

def on_bar(ctx, bar):
    i = ctx.bar_index
    sma = ctx.indicator("sma", 3)
    if i == 1:
        ctx.log("warm", sma)
    if i == 4:
        ctx.log("sma", sma, mean(ctx.history("close", 3)), len(ctx.history("close", 1000)))
        ctx.log("time", ctx.time == bar.ts, math.isfinite(bar.close))
    if i == 6:
        ctx.log("pos", ctx.position.qty, ctx.position.avg_price, len(ctx.positions))
        rid = ctx.close()
        ctx.cancel("o-77")
        ctx.state["closed"] = rid

def on_fill(ctx, fill):
    ctx.log("fill", fill.id, fill.order_id, fill.side, fill.qty, fill.price)
    ctx.state["fills"] = ctx.state.get("fills", 0) + 1

def on_reject(ctx, rejection):
    ctx.log("reject", rejection["id"], rejection.code, rejection["message"])

def on_stop(ctx):
    ctx.log("stop", ctx.state["fills"])
"""


def test_ctx_tour(make_host: Make, series: BarSeries) -> None:
    host = loaded(make_host, "PARAMS = {'k': 7}\n" + CTX_TOUR)
    host.set_series(series)
    flat = snapshot()
    start = host.start(flat, {"starts": 4})
    assert start.error is None
    assert start.logs == ["start TEST/USD 0.0 100000.0 7"]
    assert start.state == {"starts": 5}

    r = host.run(0, 6, flat)
    assert r.error is None and r.upto == 5 and r.state is None
    assert r.logs[0] == "warm None"
    closes = series.close[2:5]
    word, sma, hist_mean, n_hist = r.logs[1].split()
    assert word == "sma" and n_hist == "5"
    assert float(sma) == pytest.approx(float(np.mean(closes)), rel=1e-12)
    assert float(hist_mean) == pytest.approx(float(np.mean(closes)), rel=1e-12)
    assert r.logs[2] == "time True True"

    held = snapshot(qty=3.0, avg=101.5)
    r = host.run(6, 20, held)
    assert r.upto == 6 and r.logs == ["pos 3.0 101.5 1"]
    (close,) = r.orders
    assert close.reduce_only and close.side is Side.SELL and close.qty == 3.0 and close.client_id == "r1"
    assert r.cancels == ["o-77"]
    assert r.state == {"starts": 5, "closed": "r1"}

    fill = Fill("f1", "r1", SYMBOL, Side.SELL, 3.0, 105.0, 0.1, int(series.ts[7]), "s")
    r = host.fill(fill, flat)
    assert r.error is None and r.logs == ["fill f1 r1 sell 3.0 105.0"] and r.state["fills"] == 1
    r = host.reject({"id": "r1", "code": "max_order_qty", "message": "too big"}, flat)
    assert r.logs == ["reject r1 max_order_qty too big"]
    r = host.stop(flat)
    assert r.error is None and r.logs == ["stop 1"]


def test_close_when_flat_returns_none(make_host: Make, series: BarSeries) -> None:
    host = loaded(make_host, "def on_bar(ctx, bar):\n    ctx.log(str(ctx.close()))\n")
    host.set_series(series)
    r = host.run(0, 2, snapshot())
    assert r.orders == [] and r.logs == ["None", "None"] and r.upto == 1


def test_indicator_values_match_the_kernel_engine(
    make_host: Make, plugins: PluginHost, series: BarSeries
) -> None:
    src = "def on_bar(ctx, bar):\n    v = ctx.indicator('rsi', 14)\n    ctx.log('na' if v is None else repr(v))\n"
    host = loaded(make_host, src)
    host.set_series(series)
    r = host.run(0, 40, snapshot())
    engine = IndicatorEngine(plugins.registry)
    engine.attach_series(series)
    provider = engine.provider(SYMBOL)
    expected = provider.values(provider.resolve("rsi", [14], {}))
    got = [float("nan") if x == "na" else float(x) for x in r.logs]
    np.testing.assert_array_equal(np.array(got), expected[:40])


def test_a_raising_callback_loses_its_orders_and_names_the_line(make_host: Make, series: BarSeries) -> None:
    src = "def on_bar(ctx, bar):\n    ctx.buy(1, stop_loss=bar.close * 0.9)\n    ctx.log('x')\n    {}['missing']\n"
    host = loaded(make_host, src)
    host.set_series(series)
    r = host.run(0, 10, snapshot())
    assert r.orders == [] and r.error is not None
    assert (r.error.kind, r.error.line) == ("runtime", 4)
    assert "KeyError" in r.error.message
    assert r.upto == -1
    assert not host.alive
    with pytest.raises(StrategyError, match="already failed"):
        host.run(0, 10, snapshot())


def test_error_in_a_later_bar_reports_the_last_completed_bar(make_host: Make, series: BarSeries) -> None:
    host = loaded(
        make_host, "def on_bar(ctx, bar):\n    if ctx.bar_index == 7:\n        raise ValueError('boom')\n"
    )
    host.set_series(series)
    r = host.run(0, 20, snapshot())
    assert r.error is not None and r.error.line == 3 and r.upto == 6


def test_invalid_order_requests_are_runtime_errors_at_the_line(make_host: Make, series: BarSeries) -> None:
    cases = [
        "ctx.buy(1, type='limit')",
        "ctx.buy(-1)",
        "ctx.sell(1, stop_loss=float('inf'))",
        "ctx.buy('1')",
        "ctx.buy(1, symbol=5)",
        "ctx.buy(1, type='iceberg', limit_price=1)",
        "ctx.cancel(7)",
    ]
    for call in cases:
        host = loaded(make_host, f"def on_bar(ctx, bar):\n    x = 1\n    {call}\n")
        host.set_series(series)
        r = host.run(0, 3, snapshot())
        assert r.error is not None and r.error.kind == "runtime" and r.error.line == 3, (call, r.error)
        assert r.orders == []


def test_state_survives_as_json_and_is_capped(make_host: Make, series: BarSeries) -> None:
    src = (
        "def on_bar(ctx, bar):\n    ctx.state['n'] = ctx.state.get('n', 0) + 1\n"
        "    if ctx.state['n'] == 3:\n        ctx.state['big'] = 'x' * ctx.params['size']\n"
    )
    small = loaded(make_host, "PARAMS = {'size': 10}\n" + src)
    small.set_series(series)
    assert small.start(snapshot(), {"n": 0, "keep": [1, "a"]}).state is None  # unchanged
    r = small.run(0, 5, snapshot())
    assert r.error is None and r.state == {"n": 5, "keep": [1, "a"], "big": "x" * 10}
    big = loaded(make_host, "PARAMS = {'size': 100000}\n" + src)
    big.set_series(series)
    big.start(snapshot(), None)
    r = big.run(0, 5, snapshot())
    assert r.error is not None and r.error.kind == "limit" and "ctx.state" in r.error.message


def test_logs_are_capped_per_call(make_host: Make, series: BarSeries) -> None:
    lim = SandboxLimits(max_log_lines_per_call=5, max_log_bytes_per_call=100)
    host = loaded(
        make_host,
        "def on_bar(ctx, bar):\n    for i in range(20):\n        ctx.log(i, 'y' * 30)\n",
        limits=lim,
    )
    host.set_series(series)
    r = host.run(0, 1, snapshot())
    assert r.error is None
    assert r.logs[:3] == ["0 " + "y" * 30, "1 " + "y" * 30, "2 " + "y" * 30]
    assert r.logs[3] == "3 yy"  # cut at the byte budget (3 * 32 + 4 = 100)
    assert r.logs[-1].startswith("[16 log lines dropped")


def test_orders_per_bar_cap(make_host: Make, series: BarSeries) -> None:
    lim = SandboxLimits(max_orders_per_bar=3)
    src = "def on_bar(ctx, bar):\n    for i in range(ctx.params['n']):\n        ctx.buy(1, stop_loss=1.0)\n"
    ok = loaded(make_host, "PARAMS = {'n': 3}\n" + src, limits=lim)
    ok.set_series(series)
    assert len(ok.run(0, 1, snapshot()).orders) == 3
    over = loaded(make_host, "PARAMS = {'n': 4}\n" + src, limits=lim)
    over.set_series(series)
    r = over.run(0, 1, snapshot())
    assert r.error is not None and r.error.kind == "limit" and r.orders == [] and r.error.line == 4


def test_a_slow_bar_inside_a_batch_breaks_the_per_callback_budget(make_host: Make, series: BarSeries) -> None:
    src = "def on_bar(ctx, bar):\n    if ctx.bar_index == 3:\n        while True:\n            pass\n"
    host = loaded(make_host, src)
    host.set_series(series)
    r = host.run(0, 100, snapshot())
    assert r.error is not None and r.error.kind == "limit" and "on_bar" in r.error.message
    assert not host.alive


def test_live_bars_with_incremental_indicators(make_host: Make, plugins: PluginHost) -> None:
    data = make_series(12)
    engine = IndicatorEngine(plugins.registry)
    host = ScriptHost(
        "def on_bar(ctx, bar):\n    ctx.log(repr(ctx.indicator('sma', 3)), ctx.history('close', 2))\n",
        name="live",
        indicators=engine.provider(SYMBOL),
        symbol=SYMBOL,
    )
    try:
        host.load()
        host.start(snapshot(), None)
        logs = []
        for i in range(len(data)):
            bar = data.bar(i)
            engine.on_bar(bar)
            host.append_bar(bar)
            r = host.run(i, i + 1, snapshot())
            assert r.error is None and r.upto == i
            logs += r.logs
        closes = data.close
        assert logs[0].startswith("None [")
        assert logs[1].startswith("None [")
        for i in range(2, len(data)):
            value = float(logs[i].split(" ")[0])
            assert value == pytest.approx(float(np.mean(closes[i - 2 : i + 1])), rel=1e-12)
        assert logs[-1].endswith(f"[{float(closes[-2])!r}, {float(closes[-1])!r}]")
    finally:
        host.close()


def test_close_is_idempotent_and_calls_after_close_are_refused(make_host: Make) -> None:
    host = loaded(make_host, "def on_bar(ctx, bar):\n    pass\n")
    host.close()
    host.close()
    assert not host.alive
    with pytest.raises(StrategyError):
        host.set_series(make_series(5))
    with pytest.raises(StrategyError, match="already loaded"):
        host.load()


def test_a_long_healthy_batch_comes_back_early_instead_of_being_killed(make_host: Make) -> None:
    # every bar does real work; the whole batch would take far longer than batch_timeout_s
    lim = SandboxLimits(call_timeout_s=0.5, batch_timeout_s=0.2)
    data = make_series(400)
    host = loaded(
        make_host, "def on_bar(ctx, bar):\n    for j in range(100000):\n        pass\n", limits=lim, data=data
    )
    host.set_series(data)
    first = host.run(0, 400, snapshot())
    assert first.error is None and first.orders == []
    assert first.upto < 399  # handed back before the end ...
    i, crossings = first.upto + 1, 1
    while i < 400:  # ... and the caller simply continues from upto + 1
        res = host.run(i, 400, snapshot())
        assert res.error is None and res.upto >= i
        i, crossings = res.upto + 1, crossings + 1
    assert crossings > 1 and host.alive
