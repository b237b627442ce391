"""The strategy contract, shared by trusted plugin strategies and sandboxed user scripts.

A strategy has optional ``PARAMS``, an optional ``on_start(ctx)``, a required ``on_bar(ctx, bar)``,
and optional ``on_fill(ctx, fill)``, ``on_reject(ctx, rejection)`` and ``on_stop(ctx)``. A user
script defines them as module-level functions; a trusted plugin subclasses :class:`Strategy`.

``ctx`` (the same in both worlds):

====================================  ===========================================================
``ctx.buy(qty, stop_loss=..., ...)``   ask for a buy; returns the request id (a string)
``ctx.sell(qty, stop_loss=..., ...)``  ask for a sell
``ctx.close(symbol=None)``             flatten this strategy's position (reduce-only market order)
``ctx.cancel(order_id)``               cancel a working order of this strategy
``ctx.position``                       this strategy's position in the primary symbol (read-only)
``ctx.positions``                      all of this strategy's positions, by symbol
``ctx.account``                        the account: cash, equity, margin (read-only)
``ctx.indicator(name, *params)``       the indicator's value at this bar, ``None`` while warming up
``ctx.history(field, n)``              the last ``n`` values of a bar field, oldest first
``ctx.params``                         this run's parameters (defaults merged with overrides)
``ctx.state``                          a small JSON-serializable dict the kernel persists
``ctx.log(*parts)``                    a log line (capped)
``ctx.symbol`` / ``ctx.time`` / ``ctx.bar_index``   where we are
====================================  ===========================================================

Orders are *requests*: they are collected while the callback runs and handed to the kernel's risk
gate only after it returns without error. A callback that raises loses its requests (no half-done
work reaches a broker). A denied request comes back through ``on_reject(ctx, rejection)`` where
``rejection`` has ``id``, ``code`` and ``message``; it is also logged and audited. Market orders
fill at the earliest on the next bar (backtest: the next bar's open).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .errors import ValidationError
from .model import Account, Bar, Position

STRATEGY_API_VERSION = 1
CALLBACKS = ("on_start", "on_bar", "on_fill", "on_reject", "on_stop")


@dataclass(frozen=True, slots=True)
class Param:
    """One tunable parameter: a default and, for the optimizer, a range or a set of choices."""

    name: str
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any) -> Any:
        if self.choices is not None:
            if value not in self.choices:
                raise ValidationError(f"params.{self.name}", value, f"must be one of {list(self.choices)}")
            return value
        if isinstance(self.default, bool):
            if type(value) is not bool:
                raise ValidationError(f"params.{self.name}", value, "must be true or false")
            return value
        if isinstance(self.default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValidationError(f"params.{self.name}", value, "must be a finite number")
            if isinstance(self.default, int) and not isinstance(value, int):
                if not float(value).is_integer():
                    raise ValidationError(f"params.{self.name}", value, "must be an integer")
                value = int(value)
            if self.min is not None and value < self.min:
                raise ValidationError(f"params.{self.name}", value, f"must be >= {self.min}")
            if self.max is not None and value > self.max:
                raise ValidationError(f"params.{self.name}", value, f"must be <= {self.max}")
            return value
        if isinstance(self.default, str):
            if type(value) is not str or len(value) > 200:
                raise ValidationError(f"params.{self.name}", value, "must be a string of at most 200 chars")
            return value
        raise ValidationError(f"params.{self.name}", value, "unsupported parameter type")

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"default": self.default}
        for k in ("min", "max", "step"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.choices is not None:
            d["choices"] = list(self.choices)
        return d


def parse_params(raw: Any, *, where: str = "PARAMS") -> dict[str, Param]:
    """Parse a PARAMS mapping: ``{"fast": 10}`` or ``{"fast": {"default": 10, "min": 2, "max": 50}}``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationError(where, type(raw).__name__, "must be a dict of name -> default or spec")
    out: dict[str, Param] = {}
    for name, spec in raw.items():
        if type(name) is not str or not name.isidentifier() or name.startswith("_"):
            raise ValidationError(where, name, "parameter names must be identifiers not starting with _")
        if isinstance(spec, dict):
            if "default" not in spec:
                raise ValidationError(f"{where}.{name}", spec, "a parameter spec needs a 'default'")
            unknown = set(spec) - {"default", "min", "max", "step", "choices"}
            if unknown:
                raise ValidationError(f"{where}.{name}", sorted(unknown), "unknown keys")
            choices = spec.get("choices")
            p = Param(
                name,
                spec["default"],
                spec.get("min"),
                spec.get("max"),
                spec.get("step"),
                tuple(choices) if choices is not None else None,
            )
        else:
            p = Param(name, spec)
        if not isinstance(p.default, bool | int | float | str):
            raise ValidationError(f"{where}.{name}", p.default, "default must be a number, bool or string")
        p.check(p.default)
        out[name] = p
    return out


def resolve_params(spec: dict[str, Param], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with overrides; unknown or out-of-range overrides are refused by name."""
    values = {name: p.default for name, p in spec.items()}
    for name, value in (overrides or {}).items():
        if name not in spec:
            raise ValidationError(f"params.{name}", value, f"unknown parameter (known: {sorted(spec)})")
        values[name] = spec[name].check(value)
    return values


class Context(Protocol):
    """What a strategy sees. See the module docstring for the table."""

    symbol: str
    params: dict[str, Any]
    state: dict[str, Any]

    @property
    def time(self) -> int: ...
    @property
    def bar_index(self) -> int: ...
    @property
    def position(self) -> Position: ...
    @property
    def positions(self) -> dict[str, Position]: ...
    @property
    def account(self) -> Account: ...

    def buy(
        self,
        qty: float,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        type: str = "market",
        limit_price: float | None = None,
        stop_price: float | None = None,
        symbol: str | None = None,
        tag: str = "",
    ) -> str: ...
    def sell(
        self,
        qty: float,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        type: str = "market",
        limit_price: float | None = None,
        stop_price: float | None = None,
        symbol: str | None = None,
        tag: str = "",
    ) -> str: ...
    def close(self, symbol: str | None = None) -> str | None: ...
    def cancel(self, order_id: str) -> None: ...
    def indicator(self, name: str, *args: Any, **kwargs: Any) -> float | None: ...
    def history(self, field: str = "close", n: int = 1) -> list[float]: ...
    def log(self, *parts: Any) -> None: ...


class Strategy:
    """Base class of trusted, in-process plugin strategies (strategy API version 1).

    Subclass it, set ``name`` (and optionally ``PARAMS``), implement ``on_bar``, and register the
    class from ``register_strategies``. The same code shape as a user script, as methods::

        class SmaCross(Strategy):
            name = "sma_cross"
            PARAMS = {"fast": {"default": 10, "min": 2, "max": 100}, "slow": 30, "qty": 1.0}

            def on_bar(self, ctx, bar):
                fast, slow = ctx.indicator("sma", ctx.params["fast"]), ctx.indicator("sma", ctx.params["slow"])
                ...
    """

    api_version: ClassVar[int] = STRATEGY_API_VERSION
    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Any]] = {}

    def on_start(self, ctx: Context) -> None:
        """Called once before the first bar (and after a reload, with ``ctx.state`` carried over)."""

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        raise TypeError(f"{type(self).__name__} must implement on_bar(ctx, bar)")

    def on_fill(self, ctx: Context, fill: Any) -> None:
        """Called for each fill of this strategy's orders."""

    def on_reject(self, ctx: Context, rejection: Any) -> None:
        """Called when the risk gate or the broker refuses one of this strategy's requests."""

    def on_stop(self, ctx: Context) -> None:
        """Called once when the strategy stops (end of backtest, shutdown, unload)."""
