"""The example scripts in user_strategies/: each one backtested through the kernel and through ScriptHost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sandbox_support import SYMBOL, make_series, snapshot

from stratkernel.core.backtest import run_backtest
from stratkernel.core.model import Fill, Side
from stratkernel.sandbox.host import ScriptHost

SCRIPTS = Path(__file__).resolve().parents[2] / "user_strategies"


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return make_series(3000, seed=11)


@pytest.mark.parametrize("name", ["sma_cross", "rsi_reversion", "state_counter"])
def test_example_backtests_through_the_kernel(name: str, data) -> None:  # type: ignore[no-untyped-def]
    result = run_backtest(SCRIPTS / f"{name}.py", data)
    assert result.failure is None, result.failure
    assert result.bars == len(data)
    assert result.orders > 5 and result.trades > 2
    assert not result.denials  # every entry carries the stop-loss the gate requires
    assert all(f.strategy == name for f in result.fills)


def test_sma_script_matches_the_trusted_builtin(data) -> None:  # type: ignore[no-untyped-def]
    script = run_backtest(SCRIPTS / "sma_cross.py", data, params={"fast": 8, "slow": 21})
    builtin = run_backtest("sma_cross", data, params={"fast": 8, "slow": 21})
    assert script.failure is None and builtin.failure is None
    assert script.orders == builtin.orders
    assert [(f.side, f.qty, f.price, f.ts) for f in script.fills] == [
        (f.side, f.qty, f.price, f.ts) for f in builtin.fills
    ]
    assert script.final_equity == pytest.approx(builtin.final_equity)


def test_sma_script_refuses_fast_not_below_slow(data) -> None:  # type: ignore[no-untyped-def]
    result = run_backtest(SCRIPTS / "sma_cross.py", data, params={"fast": 30, "slow": 20})
    assert result.failure is not None
    assert result.failure["kind"] == "runtime" and "fast" in result.failure["message"]


def _drive(host: ScriptHost, start: int, stop: int, state: dict | None, data) -> tuple[dict | None, int]:  # type: ignore[no-untyped-def]
    """Run bars [start, stop) with fills at the next open; return the last state and the number of fills."""
    qty = 0.0
    res = host.start(snapshot(), state)
    assert res.error is None
    last = res.state if res.state is not None else state
    fills = 0
    i = start
    while i < stop:
        res = host.run(i, stop, snapshot(qty=qty, avg=100.0))
        assert res.error is None, res.error
        last = res.state if res.state is not None else last
        i = res.upto + 1
        for req in res.orders:
            if i >= stop:
                break
            qty += req.qty if req.side is Side.BUY else -req.qty
            fills += 1
            fill = Fill(
                f"f{fills}",
                req.client_id,
                SYMBOL,
                req.side,
                req.qty,
                float(data.open[i]),
                0.0,
                int(data.ts[i]),
                "counter",
            )
            fres = host.fill(fill, snapshot(qty=qty, avg=100.0))
            assert fres.error is None, fres.error
            last = fres.state if fres.state is not None else last
    return last, fills


def test_state_counter_carries_its_statistics_across_a_restart(
    make_host: Callable[..., ScriptHost],
    data,  # type: ignore[no-untyped-def]
) -> None:
    source = (SCRIPTS / "state_counter.py").read_text()
    first = make_host(source, name="counter", data=data)
    first.load()
    first.set_series(data)
    state1, fills1 = _drive(first, 0, 1500, None, data)
    first.close()
    assert state1 is not None and state1["starts"] == 1
    assert state1["entries"] >= 3 and state1["entries"] + state1["exits"] == fills1
    assert state1["wins"] + state1["losses"] == state1["exits"]

    second = make_host(source, name="counter", data=data)  # a restart: new worker, persisted state
    second.load()
    second.set_series(data)
    state2, fills2 = _drive(second, 1500, 3000, state1, data)
    assert state2 is not None and state2["starts"] == 2
    assert state2["entries"] > state1["entries"]
    assert state2["entries"] + state2["exits"] == fills1 + fills2
