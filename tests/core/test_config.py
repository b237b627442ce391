"""Configuration: defaults run out of the box, wrong values are refused by name, env beats the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratkernel.core.config import load_config
from stratkernel.core.errors import ConfigError


def test_embedded_defaults(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.broker.name == "paper" and cfg.data.source == "synthetic"
    assert cfg.api.host == "127.0.0.1"
    assert cfg.risk.require_stop_loss is True
    assert [s.strategy for s in cfg.strategies] == ["sma_cross"]


@pytest.mark.parametrize(
    ("toml", "field", "hint"),
    [
        ("initial_cash = -5\n", "initial_cash", "greater than 0"),
        ("[risk]\nmax_order_qty = 'lots'\n", "risk.max_order_qty", "number"),
        ("[risk]\ninitial_state = 'paused'\n", "risk.initial_state", "active"),
        ("[api]\nport = 70000\n", "api.port", "65535"),
        ("[sandbox]\ncall_timeout_s = 0\n", "sandbox.call_timeout_s", "greater than 0"),
        ("[risk]\nmax_ordr_qty = 5\n", "risk.max_ordr_qty", "unknown setting"),
        ("[[strategies]]\nname = 'a b'\nstrategy = 'x'\n", "strategies.0.name", "pattern"),
    ],
)
def test_bad_values_are_refused_with_field_and_allowed(
    clean_env: None, tmp_path: Path, toml: str, field: str, hint: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == field
    assert hint in str(info.value)


def test_env_overrides_file(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("initial_cash = 5000\n[risk]\nmax_order_qty = 3\n")
    monkeypatch.setenv("STRATKERNEL_RISK__MAX_ORDER_QTY", "7")
    cfg = load_config(path)
    assert cfg.initial_cash == 5000 and cfg.risk.max_order_qty == 7


def test_broken_toml_and_missing_file(clean_env: None, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("initial_cash = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_configuration_reference_is_current() -> None:
    from stratkernel.core.configdoc import render

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert doc == render(), (
        "docs/configuration.md is stale: python -m stratkernel.core.configdoc > docs/configuration.md"
    )
