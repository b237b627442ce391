"""Check that an indicator's vectorized and incremental implementations agree.

For plugin authors::

    from stratkernel.testing.indicators import assert_indicator_consistent

    def test_my_indicator(series):
        assert_indicator_consistent(MY_SPEC, series, period=10)

Backtests use ``spec.compute`` over whole arrays; live trading uses ``spec.incremental`` one bar at
a time. A strategy that behaves differently live than in its backtest is the bug this catches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stratkernel.core.data import BarSeries
from stratkernel.core.indicators import IndicatorSpec

__all__ = ["assert_indicator_consistent"]


def assert_indicator_consistent(
    spec: IndicatorSpec,
    series: BarSeries,
    *,
    rtol: float = 1e-9,
    atol: float = 0.0,
    **params: Any,
) -> tuple[np.ndarray, ...]:
    """Assert ``spec.compute(series, **params)`` equals feeding every bar to ``spec.incremental``.

    Parameters are resolved through ``spec.bind`` exactly as ``ctx.indicator`` does, so defaults
    apply and invalid parameters fail the same way. Checks, for every output:

    * ``compute`` returns one float64 array of ``len(series)`` per name in ``spec.outputs``;
    * ``update`` returns a tuple of as many floats;
    * NaN (warm-up) positions are the same in both;
    * every other value agrees within ``rtol`` (relative) / ``atol`` (absolute).

    Returns the vectorized outputs so a test can go on to check values. Raises ``AssertionError``
    naming the indicator, output, bar index and both values at the first disagreement.
    """
    bound, _ = spec.bind((), dict(params))
    kwargs = dict(bound)
    label = f"{spec.name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    n_out = len(spec.outputs)
    n = len(series)

    vec = spec.compute(series, **kwargs)
    if not isinstance(vec, tuple) or len(vec) != n_out:
        raise AssertionError(f"{label}: compute must return a tuple of {n_out} arrays ({spec.outputs})")
    for name, arr in zip(spec.outputs, vec, strict=True):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.shape != (n,):
            shown = getattr(arr, "dtype", type(arr).__name__), getattr(arr, "shape", None)
            raise AssertionError(
                f"{label}: output {name!r} must be a float64 array of shape ({n},), got {shown}"
            )

    inc = spec.incremental(**kwargs)
    rows = np.empty((n, n_out), dtype=np.float64)
    for i in range(n):
        out = inc.update(series.bar(i))
        if not isinstance(out, tuple) or len(out) != n_out:
            raise AssertionError(
                f"{label}: update() at bar {i} must return a tuple of {n_out} floats, got {out!r}"
            )
        rows[i] = out

    for j, name in enumerate(spec.outputs):
        a, b = vec[j], rows[:, j]
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            i = int(np.argmax(nan_a != nan_b))
            raise AssertionError(
                f"{label} output {name!r}: warm-up differs at bar {i}: compute={a[i]!r}, incremental={b[i]!r}"
            )
        ok = nan_a | np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
        if not ok.all():
            i = int(np.argmax(~ok))
            rel = abs(a[i] - b[i]) / max(abs(a[i]), abs(b[i])) if a[i] != 0 or b[i] != 0 else math.inf
            raise AssertionError(
                f"{label} output {name!r} differs at bar {i}: compute={a[i]!r}, incremental={b[i]!r} "
                f"(relative difference {rel:.3g}, rtol={rtol})"
            )
    return vec
