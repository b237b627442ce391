"""The language layer on its own: compile-time refusals with lines, and the run-time guards."""

from __future__ import annotations

import pytest

from stratkernel.core.errors import StrategyError
from stratkernel.sandbox.policy import (
    PolicyViolation,
    compile_script,
    guarded_getattr,
    guarded_getitem,
    guarded_write,
    script_globals,
)


def run(source: str) -> tuple[dict, list[str]]:
    logs: list[str] = []
    env = script_globals(logs.append)
    exec(compile_script(source, "t.py"), env)
    return env, logs


@pytest.mark.parametrize(
    ("source", "line", "needle"),
    [
        ("x = 1\ny = (1).__class__\n", 2, "__class__"),
        ("s = '{0}'.format(1)\n", 1, "format"),
        ("import os\n", 1, "os"),
        ("from subprocess import run\n", 1, "subprocess"),
        ("\n\nclass A:\n    pass\n", 3, "class"),
        ("def f():\n    yield 1\n", 2, "yield"),
        ("t = type(1)\n", 1, "type"),
        ("o = object()\n", 1, "object"),
        ("g = (i for i in [1])\nf = g.gi_frame\n", 2, "gi_frame"),
        ("def f(e):\n    return e.tb_next\n", 2, "tb_next"),
        ("def f(c):\n    return c.co_consts\n", 2, "co_consts"),
        ("from . import x\n", 1, "relative"),
        ("x = 1\n@x\ndef f():\n    pass\n", 2, "decorator"),
    ],
)
def test_refused_at_compile_time_with_line(source: str, line: int, needle: str) -> None:
    with pytest.raises(StrategyError) as info:
        compile_script(source, "t.py")
    assert info.value.kind == "policy"
    assert info.value.line == line
    assert needle in info.value.message


def test_syntax_error_is_a_load_error_with_line() -> None:
    with pytest.raises(StrategyError) as info:
        compile_script("x = 1\ndef f(:\n    pass\n", "t.py")
    assert info.value.kind == "load"
    assert info.value.line == 2


def test_oversized_and_nul_sources_are_refused() -> None:
    with pytest.raises(StrategyError, match="larger than"):
        compile_script("x = 1\n" * 100_000, "t.py")
    with pytest.raises(StrategyError, match="NUL"):
        compile_script("x = 1\x00\n", "t.py")


def test_deeply_nested_source_is_a_load_error_not_a_crash() -> None:
    with pytest.raises(StrategyError) as info:
        compile_script("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n", "t.py")
    assert info.value.kind == "load"


def test_curated_imports_are_plain_functions_not_modules() -> None:
    env, _ = run(
        "import math\nfrom statistics import mean, stdev\nr = (math.sqrt(16.0), mean([1, 2, 3]), math.pi)\n"
    )
    assert env["r"] == (4.0, 2, pytest.approx(3.14159, rel=1e-5))
    assert type(env["math"]).__name__ == "SimpleNamespace"
    assert not hasattr(env["math"], "sys")


def test_print_goes_to_the_log_sink() -> None:
    _, logs = run("def f():\n    print('a', 1, sep='-')\nf()\nprint('top')\n")
    assert logs == ["a-1", "top"]


def test_allowed_language_features_work() -> None:
    env, _ = run(
        "d = {'a': 1}\nd['b'] = 2\nxs = [i * i for i in range(5) if i % 2 == 0]\n"
        "a, (b, c) = 1, (2, 3)\nn = 0\nn += 5\nf = lambda v: v + 1\ns = f'{n:>4}|{xs!r}'\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    caught = True\n"
        "m = max(xs, key=lambda v: -v)\nt = sorted({3, 1, 2})\n"
    )
    assert env["d"] == {"a": 1, "b": 2}
    assert env["xs"] == [0, 4, 16]
    assert (env["a"], env["b"], env["c"], env["n"]) == (1, 2, 3, 5)
    assert env["s"] == "   5|[0, 4, 16]"
    assert env["caught"] is True and env["m"] == 0 and env["t"] == [1, 2, 3]


def test_runtime_guards_refuse_what_the_compiler_cannot_see() -> None:
    with pytest.raises(PolicyViolation):
        guarded_getattr(1, "__class__")
    with pytest.raises(PolicyViolation):
        guarded_getattr("x", "format")
    with pytest.raises(PolicyViolation):
        guarded_getattr(object(), "gi_frame")
    with pytest.raises(PolicyViolation):
        guarded_getitem(list, int)
    with pytest.raises(PolicyViolation):
        guarded_write((1, 2))
    assert guarded_getattr("ab", "upper")() == "AB"
    assert guarded_write(d := {}) is d


def test_missing_builtins_are_absent_at_run_time_too() -> None:
    env, _ = run("x = 1\n")
    builtins = env["__builtins__"]
    for name in ("open", "eval", "exec", "getattr", "type", "compile", "globals", "vars", "object", "super"):
        assert name not in builtins
    assert [n for n in builtins if "import" in n] == ["__import__"]  # the curated importer only
    with pytest.raises(PolicyViolation):
        builtins["__import__"]("os")
