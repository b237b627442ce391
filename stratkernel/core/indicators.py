"""Indicator specifications: one vectorized and one incremental implementation per indicator.

Backtests compute an indicator once over the whole series (``compute``); live trading updates it one
bar at a time (``incremental``). Both must give the same numbers; warm-up values are NaN (scripts see
``None``). Parameters are positional-or-keyword, declared in ``params`` with their defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import ValidationError
from .model import Bar


class Incremental(Protocol):
    def update(self, bar: Bar) -> tuple[float, ...]:
        """Feed the next bar; return one value per output (NaN while warming up)."""


@dataclass(frozen=True)
class IndicatorSpec:
    """An indicator contributed by a plugin.

    ``params``: ``(("period", 14), ("source", "close"))``: name and default, in positional order.
    ``compute(series, **params) -> tuple[np.ndarray, ...]``: one float64 array per output, len(series).
    ``incremental(**params) -> Incremental``.
    ``outputs``: names of the outputs; ``ctx.indicator("macd", output="signal")`` picks one.
    """

    name: str
    params: tuple[tuple[str, Any], ...]
    compute: Callable[..., tuple[np.ndarray, ...]]
    incremental: Callable[..., Incremental]
    outputs: tuple[str, ...] = ("value",)
    description: str = ""

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[tuple[tuple[str, Any], ...], int]:
        """Resolve call arguments into a canonical, hashable parameter tuple and an output index."""
        kwargs = dict(kwargs)
        output = kwargs.pop("output", self.outputs[0])
        if output not in self.outputs:
            raise ValidationError("output", output, f"{self.name} has outputs {list(self.outputs)}")
        if len(args) > len(self.params):
            raise ValidationError("params", list(args), f"{self.name} takes at most {len(self.params)}")
        values = {}
        for i, (pname, default) in enumerate(self.params):
            if i < len(args):
                if pname in kwargs:
                    raise ValidationError(pname, kwargs[pname], "given twice")
                values[pname] = args[i]
            else:
                values[pname] = kwargs.pop(pname, default)
        if kwargs:
            raise ValidationError("params", sorted(kwargs), f"unknown parameters for {self.name}")
        for pname, default in self.params:
            v = values[pname]
            if isinstance(default, int) and not isinstance(default, bool):
                if type(v) is not int or not 1 <= v <= 100_000:
                    raise ValidationError(pname, v, "must be an integer from 1 to 100000")
            elif isinstance(default, float):
                if type(v) not in (int, float) or not (0 < float(v) < 1e6):
                    raise ValidationError(pname, v, "must be a positive number")
                values[pname] = float(v)
            elif isinstance(default, str) and type(v) is not str:
                raise ValidationError(pname, v, "must be a string")
        return tuple(values.items()), self.outputs.index(output)
