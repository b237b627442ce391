"""JsScriptHost contract: the same life cycle and results as ScriptHost, in a confined V8 worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sandbox_support import FAST_LIMITS, SYMBOL, make_series, snapshot

from stratkernel.core.context import IndicatorEngine
from stratkernel.core.errors import StrategyError
from stratkernel.core.model import Fill, Side
from stratkernel.core.plugins import PluginHost
from stratkernel.sandbox.js_host import JsScriptHost


@pytest.fixture
def js(plugins: PluginHost) -> Iterator[Callable[..., JsScriptHost]]:
    made: list[JsScriptHost] = []

    def build(source: str, n: int = 50) -> JsScriptHost:
        series = make_series(n)
        engine = IndicatorEngine(plugins.registry)
        engine.attach_series(series)
        host = JsScriptHost(
            source,
            name="t",
            filename="t.js",
            limits=FAST_LIMITS,
            indicators=engine.provider(series.symbol),
            symbol=series.symbol,
        )
        made.append(host)
        return host

    yield build
    for host in made:
        host.close()
    JsScriptHost.drop_spare()


def test_params_state_and_callbacks(js: Callable[..., JsScriptHost]) -> None:
    host = js("""
const PARAMS = { n: { default: 3, min: 1, max: 10, step: 1 }, name: "x" };
function onStart(ctx) { ctx.state.starts = (ctx.state.starts || 0) + 1; ctx.log("start", ctx.params.n, ctx.symbol); }
function onBar(ctx, bar) {
  ctx.state.bars = (ctx.state.bars || 0) + 1;
  if (ctx.barIndex === ctx.params.n) {
    ctx.log("bar", bar.close === ctx.history("close", 1)[0], ctx.history("close", 2).length, ctx.time === bar.ts);
    return ctx.buy(2, { stopLoss: bar.close * 0.9, takeProfit: bar.close * 1.2, tag: "t1" });
  }
}
function onFill(ctx, fill) { ctx.log("fill", fill.orderId, fill.side, fill.qty, ctx.position.qty, ctx.position.avgPrice); }
function onReject(ctx, r) { ctx.log("reject", r.id, r.code); }
function onStop(ctx) { ctx.log("stop", ctx.account.cash, ctx.account.freeMargin); }
""")
    host.load({"n": 5})
    assert host.params == {"n": 5, "name": "x"}
    assert host.callbacks == {"on_start", "on_bar", "on_fill", "on_reject", "on_stop"}
    host.set_series(make_series(50))
    res = host.start(snapshot(), {"starts": 4})
    assert res.error is None and res.state == {"starts": 5} and res.logs == [f"start 5 {SYMBOL}"]
    res = host.run(0, 50, snapshot())
    assert res.error is None and res.upto == 5 and res.logs == ["bar true 2 true"]
    (order,) = res.orders
    assert (order.side, order.qty, order.tag, order.client_id) == (Side.BUY, 2.0, "t1", "r1")
    assert order.stop_loss is not None and order.take_profit is not None and order.symbol == SYMBOL
    assert res.state == {"starts": 5, "bars": 6}
    fill = Fill("f1", "r1", SYMBOL, Side.BUY, 2.0, 101.5, 0.0, 1, "t")
    res = host.fill(fill, snapshot(qty=2.0, avg=101.5))
    assert res.logs == ["fill r1 buy 2 2 101.5"]
    res = host.reject({"id": "r9", "code": "max_qty", "message": "too big"}, snapshot())
    assert res.logs == ["reject r9 max_qty"]
    res = host.stop(snapshot(cash=5.0))
    assert res.logs == ["stop 5 5"]
    host.close()
    assert not host.alive


def test_close_and_cancel_requests(js: Callable[..., JsScriptHost]) -> None:
    host = js("""
function onBar(ctx, bar) {
  if (ctx.barIndex === 1) { ctx.cancel("o-7"); return ctx.close(); }
}
""")
    host.load()
    host.set_series(make_series(5))
    host.start(snapshot(qty=3.0, avg=100.0), None)
    res = host.run(0, 5, snapshot(qty=3.0, avg=100.0))
    assert res.error is None and res.upto == 1 and res.cancels == ["o-7"]
    (order,) = res.orders
    assert (order.side, order.qty, order.reduce_only, order.tag) == (Side.SELL, 3.0, True, "close")


def test_live_bars_with_indicators(js: Callable[..., JsScriptHost], plugins: PluginHost) -> None:
    series = make_series(30)
    engine = IndicatorEngine(plugins.registry)
    host = JsScriptHost(
        """
function onBar(ctx, bar) {
  ctx.log("i", ctx.barIndex, ctx.indicator("sma", 3), ctx.history("close", 3).length);
}
""",
        name="live",
        filename="live.js",
        limits=FAST_LIMITS,
        indicators=engine.provider(SYMBOL),
        symbol=SYMBOL,
    )
    try:
        host.load()
        host.start(snapshot(), None)
        lines = []
        for i in range(6):
            bar = series.bar(i)
            engine.on_bar(bar)
            host.append_bar(bar)
            res = host.run(i, i + 1, snapshot())
            assert res.error is None, res.error
            lines += res.logs
        values = engine.provider(SYMBOL).values(engine.provider(SYMBOL).resolve("sma", [3], {}))
        assert lines[:2] == ["i 0 null 1", "i 1 null 2"]
        assert [float(x.split()[2]) for x in lines[2:]] == pytest.approx(list(values[2:6]))
    finally:
        host.close()


def test_first_use_of_an_indicator_reruns_the_bar_without_duplicating_its_logs(
    js: Callable[..., JsScriptHost],
) -> None:
    host = js("""
function onBar(ctx, bar) {
  ctx.log("before", ctx.barIndex);
  const a = ctx.indicator("sma", 2);
  const b = ctx.indicator("ema", 2);
  ctx.log("after", ctx.barIndex, a === null, b === null);
}
""")
    host.load()
    host.set_series(make_series(3))
    host.start(snapshot(), None)
    res = host.run(0, 3, snapshot())
    assert res.error is None
    assert res.logs == [
        "before 0",
        "after 0 true true",
        "before 1",
        "after 1 false false",
        "before 2",
        "after 2 false false",
    ]


def test_realm_is_locked_down_before_user_code(js: Callable[..., JsScriptHost]) -> None:
    host = js("""
const checks = {
  wasm: typeof WebAssembly === "undefined",
  atomics: typeof Atomics === "undefined",
  sab: typeof SharedArrayBuffer === "undefined",
  weakref: typeof WeakRef === "undefined" && typeof FinalizationRegistry === "undefined",
  timers: typeof setTimeout === "undefined" && typeof setInterval === "undefined",
  frozen: [Object.prototype, Array.prototype, Function.prototype, JSON, Math, Reflect, Promise.prototype,
           Error, Object.getPrototypeOf(Int8Array.prototype)].every(Object.isFrozen),
};
function onStart(ctx) {
  checks.ctx = Object.isFrozen(ctx) && Object.isFrozen(ctx.params) && Object.isFrozen(ctx.position);
  let evalRefused = false;
  try { eval("1"); } catch (e) { evalRefused = e instanceof EvalError; }
  checks.eval = evalRefused;
  ctx.log(JSON.stringify(checks));
}
function onBar(ctx, bar) {}
""")
    host.load()
    res = host.start(snapshot(), None)
    assert res.error is None, res.error
    checks = __import__("json").loads(res.logs[0])
    assert checks == dict.fromkeys(checks, True) and len(checks) == 8


def test_load_errors_carry_kind_and_line(js: Callable[..., JsScriptHost]) -> None:
    cases = [
        ("function onBar(ctx, bar) {\n  x = ;\n}\n", "load", 2),
        ("\n\nundefinedFunction();\nfunction onBar() {}\n", "load", 3),
        ("const PARAMS = { n: { default: 50, min: 1, max: 10 } };\nfunction onBar() {}\n", "load", None),
        ("function onbar() {}\n", "load", None),
    ]
    for source, kind, line in cases:
        host = js(source)
        with pytest.raises(StrategyError) as info:
            host.load()
        assert info.value.kind == kind and info.value.line == line, (source, info.value)
        assert info.value.strategy == "t" and not host.alive


def test_a_spare_worker_is_taken_and_replaced(js: Callable[..., JsScriptHost], plugins: PluginHost) -> None:
    engine = IndicatorEngine(plugins.registry)
    JsScriptHost.keep_spare(FAST_LIMITS, engine.provider(SYMBOL), SYMBOL)
    for _ in range(200):
        if JsScriptHost._spare is not None:
            break
        __import__("time").sleep(0.05)
    spare = JsScriptHost._spare
    assert spare is not None and spare._proc is not None
    pid = spare._proc.pid
    host = js("function onBar(ctx, bar) { ctx.log('ok'); }\n", n=3)
    host.load()
    assert host._proc is not None and host._proc.pid == pid  # the warm worker, now running this script
    host.set_series(make_series(3))
    assert host.run(0, 1, snapshot()).logs == ["ok"]
    for _ in range(200):
        if JsScriptHost._spare is not None:
            break
        __import__("time").sleep(0.05)
    assert JsScriptHost._spare is not None and JsScriptHost._spare._proc is not None
    assert JsScriptHost._spare._proc.pid != pid
