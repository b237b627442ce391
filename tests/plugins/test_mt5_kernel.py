"""The MT5 broker inside the real kernel: the risk gate uses its symbol spec and preflight."""

from __future__ import annotations

from stratkernel.core.config import BrokerConfig, KernelConfig
from stratkernel.core.kernel import Kernel
from stratkernel.core.model import OrderRequest, Quote, Side, TradingState
from stratkernel.core.plugins import load_plugins
from stratkernel.testing.mt5_double import MetaTrader5Double


async def test_gate_broker_and_terminal_agree() -> None:
    mt5 = MetaTrader5Double()
    mt5.sim_add_symbol("EURUSD", bid=1.1, ask=1.1002, trade_stops_level=10)
    options = {"module": mt5, "poll_interval": 0.0, "symbols": ["EURUSD"]}
    config = KernelConfig(symbols=["EURUSD"], strategies=[], broker=BrokerConfig(name="mt5", options=options))
    # the built-ins (the "mt5" entry point among them) exactly as a user's install has them
    kernel = Kernel(config, load_plugins(), mode="live")
    await kernel.setup()
    try:
        await kernel.on_live_quote(Quote(mt5.sim_now, 1.1, 1.1002, 1.1001, "EURUSD"))
        ok = await kernel.submit(
            OrderRequest(symbol="EURUSD", side=Side.BUY, qty=0.1, stop_loss=1.09, source="api")
        )
        assert ok.approved
        (pos,) = mt5.positions_get()
        assert (pos.volume, pos.sl, pos.comment) == (0.1, 1.09, f"sk:{ok.order_id}")
        assert [(p.symbol, p.qty) for p in kernel.portfolio.positions()] == [("EURUSD", 0.1)]

        # the gate refuses what the symbol cannot take, using the broker's SymbolSpec (volume_step)
        off_step = await kernel.submit(
            OrderRequest(symbol="EURUSD", side=Side.BUY, qty=0.015, stop_loss=1.09, source="api")
        )
        assert not off_step.approved and mt5.positions_total() == 1

        # AutoTrading off at the terminal: the broker's preflight halts the kernel
        mt5.sim_set_autotrading(False)
        await kernel.preflight()
        assert kernel.trading_state is TradingState.HALTED and "AutoTrading" in kernel.state_reason
    finally:
        await kernel.shutdown()
    assert mt5.calls[-1] == "shutdown"
