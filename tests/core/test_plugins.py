"""Plugin discovery: built-ins load through entry points; broken plugins are reported and the rest load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stratkernel import IndicatorSpec, hookimpl
from stratkernel.core.plugins import PluginHost, load_plugins

REPO = Path(__file__).resolve().parents[2]


def test_builtins_load_through_entry_points() -> None:
    host = load_plugins()
    report = host.report()
    dists = {p["name"]: p["distribution"] for p in report["plugins"]}
    for name in ("paper", "indicators", "data_files", "synthetic", "strategies", "ccxt", "mt5"):
        assert dists.get(name) == "stratkernel", name
    reg = host.registry
    assert {"sma", "ema", "rsi", "atr", "macd", "bollinger"} <= set(reg.names("indicator"))
    assert "paper" in reg.names("broker") and "sma_cross" in reg.names("strategy")


def _fake_distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A real installed distribution as importlib.metadata sees it: a dist-info with entry_points.txt."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[stratkernel]\n{lines}\n")
    for mod, src in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(src))


def test_broken_plugins_are_reported_by_name_and_the_rest_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(
        tmp_path,
        "sk-broken",
        {
            "crashes": "sk_crashes",
            "misspelt": "sk_misspelt",
            "badsig": "sk_badsig",
            "dupe": "sk_dupe",
            "good": "sk_good",
        },
        {
            "sk_crashes": "raise RuntimeError('cannot import me')\n",
            "sk_misspelt": """
            from stratkernel import hookimpl
            @hookimpl
            def register_indicatorz(register):
                return None
        """,
            "sk_badsig": """
            from stratkernel import hookimpl
            @hookimpl
            def register_brokers(register, surprise):
                return None
        """,
            "sk_dupe": """
            from stratkernel import hookimpl
            @hookimpl
            def register_brokers(register):
                register("paper", lambda config, events: None)
        """,
            "sk_good": """
            import numpy as np
            from stratkernel import hookimpl, IndicatorSpec
            class Inc:
                def update(self, bar):
                    return (bar.close,)
            @hookimpl
            def register_indicators(register):
                register(IndicatorSpec("ident", (), lambda s: (s.close.copy(),), Inc))
        """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    host = load_plugins()
    failures = {f.plugin: f for f in host.failures}
    assert (
        "cannot import me" in failures["crashes"].reason and failures["crashes"].distribution == "sk-broken"
    )
    assert "register_indicatorz" in failures["misspelt"].reason
    assert "surprise" in failures["badsig"].reason
    assert "already registered by paper (stratkernel)" in failures["dupe"].reason
    assert "good" not in failures and host.registry.has("indicator", "ident")
    assert host.registry.get("broker", "paper").plugin == "paper"  # the first registration wins
    assert host.registry.has("indicator", "sma")  # built-ins unaffected


def test_register_hooks_validate_what_they_receive() -> None:
    class Bad:
        @hookimpl
        def register_indicators(self, register: Any) -> None:
            register("not a spec")

    host = PluginHost()
    host.add_plugin(Bad(), name="bad")
    host.collect()
    assert "IndicatorSpec" in host.failures[0].reason


def test_plugins_cli_json_lists_components_and_failures() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stratkernel.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    data = json.loads(out.stdout)
    kinds = {(c["kind"], c["name"]) for p in data["plugins"] for c in p["components"]}
    assert ("broker", "paper") in kinds and ("indicator", "rsi") in kinds
    assert all({"name", "distribution", "version"} <= set(p) for p in data["plugins"])
    assert isinstance(data["failures"], list)


@pytest.mark.slow
def test_example_package_installs_and_is_found_through_its_entry_point(tmp_path: Path) -> None:
    pkg = REPO / "examples" / "stratkernel-example-plugin"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", str(pkg)], check=True, capture_output=True
    )
    # a fresh interpreter sees what an installed package contributes, as a user's would
    script = textwrap.dedent(f"""
        import json
        from stratkernel.core.backtest import run_backtest
        from stratkernel.core.config import KernelConfig, BrokerConfig
        from stratkernel.core.plugins import load_plugins
        from stratkernel.testing import make_series, plugin_host
        from stratkernel import Strategy, hookimpl

        class UsesHma(Strategy):
            name = "uses_hma"
            def on_bar(self, ctx, bar):
                h = ctx.indicator("hma", 16)
                if h is not None and ctx.position.is_flat and bar.close > h:
                    ctx.buy(1, stop_loss=bar.close * 0.5)
                elif h is not None and not ctx.position.is_flat and bar.close < h:
                    ctx.close()

        class P:
            @hookimpl
            def register_strategies(self, register):
                register(UsesHma)

        host = plugin_host(P())
        reg = host.registry.get("indicator", "hma")
        journal = {str(tmp_path / "orders.jsonl")!r}
        cfg = KernelConfig(strategies=[], broker=BrokerConfig(name="journal", options={{"path": journal}}))
        res = run_backtest("uses_hma", make_series(2000), config=cfg, plugins=host)
        print(json.dumps({{"dist": reg.distribution, "orders": res.orders,
                           "journal": sum(1 for _ in open(journal))}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["dist"] == "stratkernel-example-plugin"
    assert data["orders"] > 10
    assert data["journal"] == data["orders"]  # the third-party broker received exactly the approved orders


def test_example_indicator_is_consistent() -> None:
    import importlib.util

    from stratkernel.testing import assert_indicator_consistent, make_series

    path = REPO / "examples" / "stratkernel-example-plugin" / "src" / "stratkernel_example" / "plugin.py"
    spec = importlib.util.spec_from_file_location("sk_example_plugin_src", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    hma = IndicatorSpec("hma", (("period", 20), ("source", "close")), mod.hma_compute, mod.HmaIncremental)
    assert_indicator_consistent(hma, make_series(500), period=16)
