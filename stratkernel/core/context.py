"""The in-process strategy context (``ctx``) and the kernel's indicator engine.

Trusted plugin strategies get :class:`StrategyContext`; sandboxed scripts get an object with the same
surface inside their worker. Both only *collect* order requests: the kernel gates them after the
callback returns.

:class:`IndicatorEngine` serves ``ctx.indicator`` for both. In a backtest it computes each indicator
once, vectorized, over the whole series; live it updates incremental instances bar by bar. It also
implements the sandbox's ``IndicatorProvider`` protocol (``resolve``/``values``) per symbol.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import BarSeries
from .errors import StrategyError, ValidationError
from .model import Account, Bar, OrderRequest, OrderType, Position, Side

if TYPE_CHECKING:
    from .indicators import Incremental
    from .plugins import Registry

MAX_LOG_LINE = 2000
MAX_STATE_BYTES = 65536
BAR_FIELDS = ("open", "high", "low", "close", "volume")


class IndicatorEngine:
    """Indicator values per (symbol, name, params, output), vectorized or incremental."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._series: dict[str, BarSeries] = {}
        self._vectors: dict[str, list[float]] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._live: dict[str, tuple[Incremental, int, list[float]]] = {}  # key -> (inc, output idx, values)
        self._live_by_symbol: dict[str, list[str]] = {}
        self._bars: dict[str, list[Bar]] = {}
        self._bound: dict[tuple[str, tuple[Any, ...]], str] = {}

    # -- data in --------------------------------------------------------------------------------
    def attach_series(self, series: BarSeries) -> None:
        """Backtest: the whole series is known; indicators are computed once, vectorized."""
        self._series[series.symbol] = series

    def on_bar(self, bar: Bar) -> None:
        """Live: update every subscribed incremental indicator of ``bar.symbol``."""
        self._bars.setdefault(bar.symbol, []).append(bar)
        for key in self._live_by_symbol.get(bar.symbol, ()):
            inc, out, values = self._live[key]
            values.append(inc.update(bar)[out])

    # -- lookups --------------------------------------------------------------------------------
    def key(self, symbol: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        memo = (symbol, (name, args, tuple(sorted(kwargs.items()))))
        key = self._bound.get(memo)
        if key is not None:
            return key
        if type(name) is not str or not self.registry.has("indicator", name):
            raise ValidationError(
                "indicator", name, f"unknown indicator (known: {self.registry.names('indicator')})"
            )
        spec = self.registry.indicator(name)
        params, out = spec.bind(args, kwargs)
        key = json.dumps([symbol, name, [[k, v] for k, v in params], spec.outputs[out]])
        self._bound[memo] = key
        return key

    def array(self, key: str) -> np.ndarray:
        """Values for every bar known so far (NaN while warming up)."""
        arr = self._arrays.get(key)
        if arr is not None:
            return arr
        symbol, name, params, output = json.loads(key)
        spec = self.registry.indicator(name)
        kwargs = {k: v for k, v in params}
        out = spec.outputs.index(output)
        series = self._series.get(symbol)
        if series is not None:
            arr = np.asarray(spec.compute(series, **kwargs)[out], dtype=np.float64)
            if arr.shape != (len(series),):
                raise ValidationError(
                    "indicator", name, f"compute returned shape {arr.shape}, expected ({len(series)},)"
                )
            self._arrays[key] = arr
            return arr
        live = self._live.get(key)
        if live is None:
            inc = spec.incremental(**kwargs)
            values = [inc.update(b)[out] for b in self._bars.get(symbol, ())]
            live = self._live[key] = (inc, out, values)
            self._live_by_symbol.setdefault(symbol, []).append(key)
        return np.asarray(live[2], dtype=np.float64)

    def values_list(self, key: str) -> list[float]:
        """Python floats, for fast per-bar indexing in the hot loop (cached in backtests)."""
        lst = self._vectors.get(key)
        if lst is None:
            if key in self._live or json.loads(key)[0] not in self._series:
                self.array(key)
                return self._live[key][2]
            lst = self._vectors[key] = self.array(key).tolist()
        return lst

    def provider(self, symbol: str) -> BoundIndicators:
        return BoundIndicators(self, symbol)


class BoundIndicators:
    """The sandbox's IndicatorProvider for one symbol."""

    def __init__(self, engine: IndicatorEngine, symbol: str) -> None:
        self.engine = engine
        self.symbol = symbol

    def resolve(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        return self.engine.key(self.symbol, name, tuple(args), dict(kwargs))

    def values(self, key: str) -> np.ndarray:
        return self.engine.array(key)


class ContextPort:
    """What a context may read from the kernel. The kernel fills these attributes in; no broker here."""

    __slots__ = ("account", "history", "index", "indicators", "position", "positions", "time")

    def __init__(
        self,
        *,
        indicators: IndicatorEngine,
        position: Callable[[str, str], Position],
        positions: Callable[[str], dict[str, Position]],
        account: Callable[[], Account],
        history: Callable[[str, str, int], list[float]],
    ) -> None:
        self.indicators = indicators
        self.position = position
        self.positions = positions
        self.account = account
        self.history = history
        self.index = -1
        self.time = 0


class StrategyContext:
    """``ctx`` for trusted in-process strategies. See :mod:`stratkernel.core.strategy` for the API."""

    def __init__(
        self,
        port: ContextPort,
        *,
        name: str,
        symbol: str,
        params: dict[str, Any],
        state: dict[str, Any] | None = None,
        log: Callable[[str, str], None] | None = None,
        max_orders_per_call: int = 10,
    ) -> None:
        self._port = port
        self.name = name
        self.symbol = symbol
        self.params = dict(params)
        self.state: dict[str, Any] = dict(state or {})
        self._log = log
        self._max_orders = max_orders_per_call
        self._seq = 0
        self.requests: list[OrderRequest] = []
        self.cancels: list[str] = []
        self._ind_cache: dict[Any, list[float]] = {}
        self._pos: Position | None = None  # cleared by the kernel when a fill of this strategy lands

    # -- reading --------------------------------------------------------------------------------
    @property
    def time(self) -> int:
        return self._port.time

    @property
    def bar_index(self) -> int:
        return self._port.index

    @property
    def position(self) -> Position:
        pos = self._pos
        if pos is None:
            pos = self._pos = self._port.position(self.name, self.symbol)
        return pos

    def invalidate(self) -> None:
        self._pos = None

    @property
    def positions(self) -> dict[str, Position]:
        return self._port.positions(self.name)

    @property
    def account(self) -> Account:
        return self._port.account()

    def indicator(self, name: str, *args: Any, **kwargs: Any) -> float | None:
        ck = (name, args, tuple(kwargs.items())) if kwargs else (name, args)
        values = self._ind_cache.get(ck)
        if values is None:
            eng = self._port.indicators
            values = self._ind_cache[ck] = eng.values_list(eng.key(self.symbol, name, args, kwargs))
        try:
            v = values[self._port.index]
        except IndexError:
            return None
        return None if v != v else v

    def history(self, field: str = "close", n: int = 1) -> list[float]:
        if field not in BAR_FIELDS:
            raise ValidationError("field", field, f"must be one of {BAR_FIELDS}")
        if type(n) is not int or not 1 <= n <= 100_000:
            raise ValidationError("n", n, "must be an integer from 1 to 100000")
        return self._port.history(self.symbol, field, n)

    def log(self, *parts: Any) -> None:
        line = " ".join(str(p) for p in parts)[:MAX_LOG_LINE]
        if self._log is not None:
            self._log(self.name, line)

    # -- orders ---------------------------------------------------------------------------------
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
    ) -> str:
        return self._request(
            Side.BUY, qty, stop_loss, take_profit, type, limit_price, stop_price, symbol, tag, False
        )

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
    ) -> str:
        return self._request(
            Side.SELL, qty, stop_loss, take_profit, type, limit_price, stop_price, symbol, tag, False
        )

    def close(self, symbol: str | None = None) -> str | None:
        sym = symbol or self.symbol
        pos = self._port.position(self.name, sym)
        if pos.is_flat:
            return None
        side = Side.SELL if pos.qty > 0 else Side.BUY
        return self._request(side, abs(pos.qty), None, None, "market", None, None, sym, "close", True)

    def cancel(self, order_id: str) -> None:
        if type(order_id) is not str or not order_id:
            raise ValidationError("order_id", order_id, "must be a non-empty string")
        self.cancels.append(order_id)

    def _request(
        self,
        side: Side,
        qty: Any,
        stop_loss: Any,
        take_profit: Any,
        type_: Any,
        limit_price: Any,
        stop_price: Any,
        symbol: Any,
        tag: Any,
        reduce_only: bool,
    ) -> str:
        if len(self.requests) >= self._max_orders:
            raise StrategyError(
                "limit", f"more than {self._max_orders} order requests in one callback", strategy=self.name
            )
        for fname, v in (
            ("qty", qty),
            ("stop_loss", stop_loss),
            ("take_profit", take_profit),
            ("limit_price", limit_price),
            ("stop_price", stop_price),
        ):
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0
            ):
                raise ValidationError(fname, v, "must be a finite number > 0")
        try:
            otype = OrderType(type_)
        except ValueError:
            raise ValidationError("type", type_, "must be 'market', 'limit' or 'stop'") from None
        self._seq += 1
        rid = f"r{self._seq}"
        self.requests.append(
            OrderRequest(
                symbol=symbol or self.symbol,
                side=side,
                qty=float(qty),
                type=otype,
                limit_price=None if limit_price is None else float(limit_price),
                stop_price=None if stop_price is None else float(stop_price),
                stop_loss=None if stop_loss is None else float(stop_loss),
                take_profit=None if take_profit is None else float(take_profit),
                reduce_only=reduce_only,
                strategy=self.name,
                source="strategy",
                client_id=rid,
                tag=str(tag)[:64],
            )
        )
        return rid

    def take_requests(self) -> tuple[list[OrderRequest], list[str]]:
        reqs, cancels = self.requests, self.cancels
        self.requests, self.cancels = [], []
        return reqs, cancels

    def check_state(self) -> None:
        if not self.state:
            return
        try:
            size = len(json.dumps(self.state, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise StrategyError(
                "runtime", f"ctx.state must be JSON-serializable: {exc}", strategy=self.name
            ) from None
        if size > MAX_STATE_BYTES:
            raise StrategyError(
                "limit", f"ctx.state is {size} bytes, over the {MAX_STATE_BYTES} limit", strategy=self.name
            )
