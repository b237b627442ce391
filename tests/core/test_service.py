"""KernelService against a live kernel: strategies joining mid-run, manual orders through the gate."""

from __future__ import annotations

from pathlib import Path

from stratkernel.core.config import KernelConfig, SandboxConfig
from stratkernel.core.kernel import Kernel
from stratkernel.core.service import KernelService
from stratkernel.core.store import Store
from stratkernel.testing import make_series, plugin_host

SCRIPT = """
def on_bar(ctx, bar):
    s = ctx.indicator("sma", 5)
    ctx.state["seen"] = ctx.state.get("seen", 0) + 1
    if s is not None and ctx.position.is_flat and bar.close > s:
        ctx.buy(1, stop_loss=bar.close * 0.5)
"""


async def test_a_script_started_mid_run_gets_the_bars_so_far(tmp_path: Path) -> None:
    cfg = KernelConfig(
        strategies=[],
        symbols=["TEST"],
        data_dir=str(tmp_path),
        sandbox=SandboxConfig(scripts_dir=str(tmp_path / "scripts")),
    )
    store = await Store.open(tmp_path / "k.db")
    kernel = Kernel(cfg, plugin_host(), store=store, mode="live")
    await kernel.setup()
    service = KernelService(kernel, store, kernel.plugins)
    bars = [make_series(60, symbol="TEST").bar(i) for i in range(60)]
    try:
        for b in bars[:40]:
            await kernel.on_live_bar(b)
        info = await service.upload_script("mid", SCRIPT)
        assert info["name"] == "mid"
        for b in bars[40:]:
            await kernel.on_live_bar(b)
        slot = kernel.slots["mid"]
        assert slot.status == "running", slot.error
        assert slot.state["seen"] == 20  # every bar after joining, none refused for a bad index
        assert any(f.strategy == "mid" for f in kernel.fill_log)
        d = await service.submit_order({"side": "buy", "qty": 1.0}, user="alice")
        assert d["approved"] is False and d["code"] == "stop_loss_missing"
        audit = await service.audit(limit=5)
        assert audit[0]["source"] == "api:alice" and audit[0]["code"] == "stop_loss_missing"
    finally:
        await kernel.stop_slots()
        await store.close()
