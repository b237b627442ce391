"""The language layer: what a user script may say (compile time) and may touch (run time).

Two halves, both trusted code:

* :func:`compile_script` compiles a script with RestrictedPython under :class:`ScriptPolicy`, a
  stricter subclass of RestrictedPython's transformer. Anything the policy refuses is reported at load
  time as ``StrategyError(kind="policy", line=...)``; a syntax error as ``kind="load"``.
* :func:`script_globals` builds the module namespace a compiled script runs in: a curated builtins
  dict, the guard functions RestrictedPython's rewritten code calls (``_getattr_``, ``_getitem_``,
  ``_write_``, ...), and an ``__import__`` that only hands out curated namespaces of plain functions
  (``import math`` gives those functions, never the real module: a real module drags its own imports,
  and several stdlib modules reach ``sys``, ``codecs`` or ``builtins`` through an attribute).

This module is imported inside the sandbox worker, so it must stay light: no numpy, no kernel.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import statistics
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

from stratkernel.core.errors import StrategyError

MAX_SOURCE_BYTES = 256 * 1024

# Attribute names refused even though they do not start with "_": string formatting reaches arbitrary
# attributes through "{0.attr}" fields; the rest are introspection handles on frames, code objects,
# generators, coroutines and tracebacks (published RestrictedPython escapes walk gi_frame.f_back).
BLOCKED_ATTRIBUTES = frozenset(
    {
        "format",
        "format_map",
        "mro",
        "with_traceback",
        "func_globals",
        "func_code",
        "im_func",
        "im_self",
    }
    | set(INSPECT_ATTRIBUTES)
)
# Whole prefixes of introspection attributes (frames f_*, code co_*, tracebacks tb_*, generators gi_*,
# coroutines cr_*, async generators ag_*), so a future CPython attribute is refused by default.
BLOCKED_PREFIXES = ("f_", "co_", "tb_", "gi_", "cr_", "ag_", "func_", "im_")

# Names a script may not even mention. They are also absent from the builtins, so a script that got
# past this check would still only meet a NameError.
BLOCKED_NAMES = frozenset(
    {
        "type", "vars", "globals", "locals", "getattr", "setattr", "delattr", "hasattr", "eval", "exec",
        "compile", "open", "breakpoint", "input", "help", "memoryview", "object", "super", "classmethod",
        "staticmethod", "property", "dir", "id", "iter", "next", "aiter", "anext", "exit", "quit",
        "copyright", "credits", "license", "bytearray", "BaseException", "GeneratorExit",
        "KeyboardInterrupt", "SystemExit", "ExceptionGroup", "BaseExceptionGroup", "printed",
    }
)  # fmt: skip

ATTRIBUTE_REFUSED = "attribute {name!r} is not available to scripts"


def attribute_allowed(name: str) -> bool:
    """The runtime twin of the compile-time attribute check."""
    return not (name.startswith("_") or name in BLOCKED_ATTRIBUTES or name.startswith(BLOCKED_PREFIXES))


class ScriptPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, tightened for trading scripts.

    Refused on top of RestrictedPython's defaults: class definitions (metaclasses, descriptors and
    ``__class_getitem__`` tricks all start there), ``yield`` (generators carry frames), decorators,
    ``match`` statements (class patterns read attributes without the guard; RestrictedPython refuses
    unknown nodes anyway), ``try/except*``, the names in :data:`BLOCKED_NAMES`, the attribute names in
    :data:`BLOCKED_ATTRIBUTES` / :data:`BLOCKED_PREFIXES`, and imports of anything the policy does
    not name.
    """

    def __init__(self, *args: Any, allowed_imports: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_imports = allowed_imports or frozenset(CURATED_MODULES)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if not node.attr.startswith("_") and not attribute_allowed(node.attr):
            self.error(node, ATTRIBUTE_REFUSED.format(name=node.attr))
        return super().visit_Attribute(node)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in BLOCKED_NAMES:
            self.error(node, f"name {node.id!r} is not available to scripts")
        return super().visit_Name(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self.error(node, "class definitions are not allowed in scripts (use functions and dicts)")

    def visit_Yield(self, node: ast.Yield) -> Any:
        self.error(node, "yield (generators) is not allowed in scripts")

    def visit_YieldFrom(self, node: ast.YieldFrom) -> Any:
        self.error(node, "yield from (generators) is not allowed in scripts")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        if node.decorator_list:
            self.error(node.decorator_list[0], "decorators are not allowed in scripts")
        return super().visit_FunctionDef(node)

    def check_import_names(self, node: ast.ImportFrom | ast.Import) -> Any:
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
            if node.level:
                self.error(node, "relative imports are not allowed in scripts")
        else:
            modules = [alias.name for alias in node.names]
        for module in modules:
            if module not in self.allowed_imports:
                self.error(
                    node,
                    f"import of {module!r} is not allowed (available: {', '.join(sorted(self.allowed_imports))})",
                )
        return super().check_import_names(node)


_LINE = re.compile(r"^Line (\d+):\s*(.*)$", re.S)


def compile_script(source: str, filename: str) -> Any:
    """Compile a user script under the policy; refuse with the line and the reason.

    Raises ``StrategyError(kind="policy")`` for a policy violation and ``kind="load"`` for a syntax
    error or a script that is too large. Returns a code object.
    """
    if type(source) is not str:
        raise StrategyError("load", "the script source must be text")
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise StrategyError("load", f"the script is larger than {MAX_SOURCE_BYTES} bytes")
    if "\x00" in source:
        raise StrategyError("load", "the script contains a NUL character")
    try:
        result = compile_restricted_exec(source, filename=filename, policy=ScriptPolicy)
    except (RecursionError, MemoryError) as exc:
        raise StrategyError(
            "load", f"the script is nested too deeply to compile ({type(exc).__name__})"
        ) from None
    if result.errors:
        first = result.errors[0]
        kind: Any = "load" if "SyntaxError" in first or "IndentationError" in first else "policy"
        line = None
        match = _LINE.match(first)
        if match:
            line = int(match.group(1))
            first = match.group(2)
        more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        raise StrategyError(kind, first + more, line=line)
    if result.code is None:
        raise StrategyError("load", "the script did not compile")
    return result.code


# ---- run time ---------------------------------------------------------------------------------------


class PolicyViolation(Exception):
    """Raised by a guard at run time. Scripts cannot name it, so they can only catch it broadly."""


_checked_names: set[str] = set()


def guarded_getattr(obj: Any, name: str) -> Any:
    """``a.b`` in a script. The compiler already refused bad literal names; this is the second wall."""
    if name in _checked_names:  # fast path: a name that passed once passes again
        return getattr(obj, name)
    if type(name) is not str or not attribute_allowed(name):
        raise PolicyViolation(ATTRIBUTE_REFUSED.format(name=name))
    _checked_names.add(name)
    return getattr(obj, name)


def guarded_getitem(obj: Any, key: Any) -> Any:
    """``a[b]``. Subscripting a class (``list[int]``, ``__class_getitem__``) is refused."""
    if isinstance(obj, type):
        raise PolicyViolation("subscripting a type is not available to scripts")
    return obj[key]


_WRITABLE = (dict, list, set)


def guarded_write(obj: Any) -> Any:
    """``a[k] = v`` / ``a.b = v`` / ``del a[k]``: only plain dicts, lists and sets may be changed."""
    if type(obj) in _WRITABLE:
        return obj
    raise PolicyViolation(f"a {type(obj).__name__} cannot be changed by a script")


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
}


def guarded_inplacevar(op: str, x: Any, y: Any) -> Any:
    fn = _INPLACE.get(op)
    if fn is None:
        raise PolicyViolation(f"operator {op} is not available to scripts")
    return fn(x, y)


def guarded_apply(f: Any, *args: Any, **kwargs: Any) -> Any:
    return f(*args, **kwargs)


def _curated_math() -> dict[str, Any]:
    names = [
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atan2",
        "atanh",
        "ceil",
        "comb",
        "copysign",
        "cos",
        "cosh",
        "degrees",
        "dist",
        "erf",
        "erfc",
        "exp",
        "expm1",
        "fabs",
        "factorial",
        "floor",
        "fmod",
        "frexp",
        "fsum",
        "gamma",
        "gcd",
        "hypot",
        "isclose",
        "isfinite",
        "isinf",
        "isnan",
        "isqrt",
        "lcm",
        "ldexp",
        "lgamma",
        "log",
        "log10",
        "log1p",
        "log2",
        "modf",
        "nextafter",
        "perm",
        "prod",
        "radians",
        "remainder",
        "sin",
        "sinh",
        "sqrt",
        "tan",
        "tanh",
        "trunc",
        "ulp",
    ]
    out: dict[str, Any] = {n: getattr(math, n) for n in names if hasattr(math, n)}
    out.update(pi=math.pi, e=math.e, tau=math.tau, inf=math.inf, nan=math.nan)
    return out


def _curated_statistics() -> dict[str, Any]:
    names = [
        "mean",
        "fmean",
        "geometric_mean",
        "harmonic_mean",
        "median",
        "median_low",
        "median_high",
        "mode",
        "multimode",
        "pstdev",
        "pvariance",
        "stdev",
        "variance",
        "quantiles",
        "correlation",
        "covariance",
    ]
    return {n: getattr(statistics, n) for n in names if hasattr(statistics, n)}


#: What ``import`` may name, and what it gives: plain functions and numbers, never a module object.
CURATED_MODULES: dict[str, Callable[[], dict[str, Any]]] = {
    "math": _curated_math,
    "statistics": _curated_statistics,
}


def make_importer(namespaces: dict[str, SimpleNamespace]) -> Callable[..., Any]:
    def restricted_import(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        if level != 0 or name not in namespaces:
            raise PolicyViolation(f"import of {name!r} is not allowed")
        return namespaces[name]

    return restricted_import


SAFE_BUILTIN_NAMES = [
    "abs",
    "all",
    "any",
    "bool",
    "chr",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "frozenset",
    "hash",
    "int",
    "isinstance",
    "len",
    "list",
    "map",
    "max",
    "min",
    "ord",
    "pow",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "bytes",
    "callable",
    "issubclass",
]
SAFE_EXCEPTIONS = [
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "Exception",
    "IndexError",
    "KeyError",
    "LookupError",
    "NameError",
    "OverflowError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
    "MemoryError",
]


class LogPrinter:
    """The object behind ``print`` in a script: every print becomes a ``ctx.log`` line."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink

    def __call__(self, _getattr: Any = None) -> LogPrinter:
        return self  # ``_print = _print_(_getattr_)`` at the top of each function

    def _call_print(self, *objects: Any, sep: Any = " ", end: Any = "\n", **_ignored: Any) -> None:
        sep = sep if type(sep) is str else " "
        self._sink(sep.join(str(o) for o in objects))


def script_globals(log_sink: Callable[[str], None], *, name: str = "script") -> dict[str, Any]:
    """A fresh module namespace for one script: curated builtins, guards, curated imports."""
    import builtins as _b

    namespaces = {mod: SimpleNamespace(**build()) for mod, build in CURATED_MODULES.items()}
    safe: dict[str, Any] = {n: getattr(_b, n) for n in SAFE_BUILTIN_NAMES + SAFE_EXCEPTIONS}
    safe["__import__"] = make_importer(namespaces)
    printer = LogPrinter(log_sink)
    return {
        "__builtins__": safe,
        "__name__": name,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": guarded_inplacevar,
        "_apply_": guarded_apply,
        "_print_": printer,
    }
