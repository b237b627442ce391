"""The JavaScript examples in user_strategies/ produce the same trades as their Python twins."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_support import make_series

from stratkernel.core.backtest import run_backtest

SCRIPTS = Path(__file__).resolve().parents[2] / "user_strategies"


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return make_series(3000, seed=11)


def _trades(result):  # type: ignore[no-untyped-def]
    return [(f.side, f.qty, f.price, f.ts, f.role) for f in result.fills]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sma_cross", None),
        ("sma_cross", {"fast": 8, "slow": 21}),
        ("rsi_reversion", None),
        ("rsi_reversion", {"oversold": 35.0, "atr_target": 2.0}),
    ],
)
def test_js_example_trades_exactly_like_the_python_one(name: str, params, data) -> None:  # type: ignore[no-untyped-def]
    py = run_backtest(SCRIPTS / f"{name}.py", data, params=params)
    js = run_backtest(SCRIPTS / f"{name}.js", data, params=params)
    assert py.failure is None, py.failure
    assert js.failure is None, js.failure
    assert py.orders > 5 and py.trades > 2  # the comparison is about something
    assert js.orders == py.orders
    assert _trades(js) == _trades(py)
    assert js.final_equity == pytest.approx(py.final_equity)
    assert all(f.strategy == name for f in js.fills)


def test_js_sma_refuses_fast_not_below_slow_with_its_line(data) -> None:  # type: ignore[no-untyped-def]
    result = run_backtest(SCRIPTS / "sma_cross.js", data, params={"fast": 30, "slow": 20})
    assert result.failure is not None
    assert result.failure["kind"] == "runtime" and "fast" in result.failure["message"]
    assert result.failure["line"] == 20
