"""The double agrees with the real MetaTrader5 package, read from its Windows wheel without importing it.

The wheel holds ``MetaTrader5/__init__.py`` (every constant, plus the pure-Python helpers Buy, Sell,
Close) and ``MetaTrader5/_core.*.pyd`` (the C functions and named-tuple types). The constants are parsed
with ``ast``; the C functions' signatures and the named tuples' type and field names are read from the
.pyd's embedded docstrings and strings. Nothing from the wheel is ever executed.

Set ``STRATKERNEL_MT5_WHEEL`` to a downloaded ``.whl`` to run offline; otherwise the wheel is fetched
with ``pip download`` and the test is skipped (with the reason) when that fails.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from stratkernel.testing import mt5_double
from stratkernel.testing.mt5_double import MetaTrader5Double

NAMED_TUPLES = (
    "TerminalInfo", "AccountInfo", "SymbolInfo", "Tick", "TradePosition", "TradeOrder", "TradeDeal",
    "TradeRequest", "OrderCheckResult", "OrderSendResult", "BookInfo",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    given = os.environ.get("STRATKERNEL_MT5_WHEEL")
    if given:
        return zipfile.ZipFile(given)
    target = tmp_path_factory.mktemp("mt5wheel")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--platform", "win_amd64",
           "--python-version", "3.11", "MetaTrader5", "-d", str(target), "--quiet", "--disable-pip-version-check"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"could not download the MetaTrader5 wheel: {exc}")
    wheels = sorted(Path(target).glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"could not download the MetaTrader5 wheel (pip exit {proc.returncode}): {tail[0]}")
    return zipfile.ZipFile(wheels[-1])


def _member(wheel: zipfile.ZipFile, pattern: str) -> bytes:
    names = [n for n in wheel.namelist() if re.fullmatch(pattern, n)]
    assert names, f"the wheel has no {pattern} (has: {wheel.namelist()})"
    return wheel.read(names[0])


def _literal(node: ast.expr) -> Any:
    """Evaluate the constant expressions the package uses (ints, strings, -x, a | b) without eval."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _literal(node.left) | _literal(node.right)
    raise ValueError(f"unexpected constant expression: {ast.dump(node)}")


def real_module_source(wheel: zipfile.ZipFile) -> ast.Module:
    return ast.parse(_member(wheel, r"MetaTrader5/__init__\.py").decode("utf-8"))


def real_constants(tree: ast.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.isupper():
                out[name] = _literal(node.value)
    return out


def core_strings(wheel: zipfile.ZipFile) -> set[str]:
    binary = _member(wheel, r"MetaTrader5/_core\..*\.pyd")
    return {s.decode("ascii") for s in re.findall(rb"[\x20-\x7e\n]{2,}", binary)}


def core_signatures(strings: set[str]) -> dict[str, list[str]]:
    """``name -> parameter names`` from docstrings such as ``positions_get([symbol="SYMBOL"],[ticket=T])``."""
    sigs: dict[str, list[str]] = {}
    for s in strings:
        m = re.match(r"^([a-z_]+)\(([^\n]*)\)\n", s + "\n")
        if m and "\n\n" in s + "\n\n":
            params = re.findall(r"([a-z_]+)\s*(?:=|,|\]|$)", m.group(2))
            sigs[m.group(1)] = params
    return sigs


def test_constants_match_the_real_package_exactly(wheel: zipfile.ZipFile) -> None:
    real = real_constants(real_module_source(wheel))
    assert len(real) > 200, "parsed suspiciously few constants: has the package layout changed?"
    ours = {
        n: getattr(MetaTrader5Double, n)
        for n in dir(MetaTrader5Double)
        if n.isupper() and not n.startswith("_")
    }
    missing = sorted(set(real) - set(ours))
    invented = sorted(set(ours) - set(real))
    wrong = {n: (ours[n], real[n]) for n in real.keys() & ours.keys() if ours[n] != real[n]}
    assert not missing, f"constants the double lacks: {missing}"
    assert not invented, f"constants the real package does not have: {invented}"
    assert not wrong, f"constants with different values (double, real): {wrong}"
    assert real["TRADE_RETCODE_CLIENT_DISABLES_AT"] == 10027


def test_version_matches_the_wheel(wheel: zipfile.ZipFile) -> None:
    tree = real_module_source(wheel)
    version = next(_literal(n.value) for n in tree.body if isinstance(n, ast.Assign)
                   and isinstance(n.targets[0], ast.Name) and n.targets[0].id == "__version__")  # fmt: skip
    assert isinstance(version, str) and version.startswith("5.0.")
    if version != MetaTrader5Double.__version__:
        pytest.xfail(
            f"a newer MetaTrader5 ({version}) than the double mirrors ({MetaTrader5Double.__version__})"
        )


def test_every_c_function_exists_with_the_documented_parameters(wheel: zipfile.ZipFile) -> None:
    sigs = core_signatures(core_strings(wheel))
    assert {"initialize", "order_send", "copy_rates_range", "positions_get"} <= set(sigs), sigs
    for name, params in sorted(sigs.items()):
        fn = getattr(MetaTrader5Double, name, None)
        assert callable(fn), f"the double has no {name}()"
        sig = inspect.signature(fn)
        takes_any = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values())
        if takes_any:
            continue
        ours = set(sig.parameters) - {"self"}
        assert set(params) <= ours, f"{name}: real parameters {params}, double has {sorted(ours)}"


def test_history_getters_accept_the_documented_forms() -> None:
    m = MetaTrader5Double()
    m.sim_add_symbol("EURUSD", bid=1.1, ask=1.1002)
    m.initialize()
    r = m.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0})
    for getter in (m.history_orders_get, m.history_deals_get):
        assert getter(0, 2**32) and getter(0, 2**32, group="EUR*")
        assert getter(position=r.order) and getter(
            ticket=r.order if getter == m.history_orders_get else r.deal
        )
        assert getter(0) is None and m.last_error()[0] == -2  # one date alone is invalid
    assert m.history_orders_total(0, 2**32) == 1 and m.history_deals_total(0, 2**32) == 1


def test_python_helpers_of_the_package_exist(wheel: zipfile.ZipFile) -> None:
    tree = real_module_source(wheel)
    helpers = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    assert helpers, "the package defines no Python helpers any more?"
    for name in helpers:
        real = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
        real_params = [a.arg for a in real.args.args + real.args.kwonlyargs]
        ours = list(inspect.signature(getattr(MetaTrader5Double, name)).parameters)[1:]
        assert ours == real_params, f"{name}: real {real_params}, double {ours}"


def test_named_tuples_use_names_the_real_module_defines(wheel: zipfile.ZipFile) -> None:
    strings = core_strings(wheel)
    for type_name in NAMED_TUPLES:
        assert type_name in strings, f"{type_name} is not a type of the real module"
        nt = getattr(mt5_double, type_name)
        unknown = [f for f in nt._fields if f not in strings]
        assert not unknown, f"{type_name} fields unknown to the real module: {unknown}"
    # and every field-like string of the real module is used by some double type
    ours = {f for t in NAMED_TUPLES for f in getattr(mt5_double, t)._fields}
    for field in ("trade_allowed", "tradeapi_disabled", "volume_step", "trade_stops_level", "filling_mode",
                  "retcode_external", "request_id", "position_by_id", "time_update_msc", "volume_real"):  # fmt: skip
        assert field in strings and field in ours


def test_field_order_matches_the_binary(wheel: zipfile.ZipFile) -> None:
    """The .pyd stores each field name once, in the order the C code first uses it: type by type, field
    by field (TradePosition first, BookInfo last, then the rates dtype). So the double's field lists,
    concatenated in that type order with repeats dropped, must give exactly the binary's sequence."""
    binary = _member(wheel, r"MetaTrader5/_core\..*\.pyd")
    block = binary[binary.index(b"\x00ticket\x00") : binary.index(b"Internal error")]
    names: list[str] = []
    for raw in block.split(b"\x00"):
        token = raw.decode("ascii", "replace")
        if re.fullmatch(r"[a-z_][a-z0-9_]*", token) and token not in names:
            names.append(token)
    ours: list[str] = []
    type_order = ("TradePosition", "TradeOrder", "TradeDeal", "TradeRequest", "OrderSendResult",
                  "OrderCheckResult", "Tick", "TerminalInfo", "SymbolInfo", "AccountInfo", "BookInfo")  # fmt: skip
    fields = [f for t in type_order for f in getattr(mt5_double, t)._fields]
    for f in [*fields, *(mt5_double.RATES_DTYPE.names or ())]:
        if f not in ours:
            ours.append(f)
    assert ours == names


def test_result_shapes_are_what_callers_unpack() -> None:
    m = MetaTrader5Double()
    m.sim_add_symbol("EURUSD", bid=1.1, ask=1.1002)
    m.initialize()
    r = m.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0})
    assert isinstance(r, mt5_double.OrderSendResult) and isinstance(r.request, mt5_double.TradeRequest)
    assert r._asdict()["request"]._asdict()["volume"] == 0.1
    code, message = m.last_error()
    assert (code, message) == (m.RES_S_OK, "Success")
    assert m.Close("EURUSD") is True and m.positions_total() == 0
