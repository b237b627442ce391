"""The kernel: one loop from market data to strategies to the risk gate to the broker and back.

::

    data source ─bar─▶ broker.on_market (simulated brokers fill first) ─▶ fills ─▶ portfolio, store
                  └──▶ indicators ─▶ strategy slots ─requests─▶ Gateway.decide ─approved─▶ broker.submit
                                                                       └─denied─▶ audit, on_reject

Backtest and live run this same class; only the clock (bar time vs wall time), the data (a whole
validated series vs a stream) and the broker differ. The backtest loop is synchronous per bar and only
awaits when there is work (orders, fills), so the hot path stays a tight loop.

Strategy slots wrap every call into strategy code (see :class:`PluginSlot` and
:class:`stratkernel.core.slots.ScriptSlot`): a failure stops that strategy with a
:class:`StrategyError` and never the kernel.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from itertools import repeat
from typing import TYPE_CHECKING, Any

from .context import ContextPort, IndicatorEngine
from .data import BarSeries, BarValidator
from .errors import ConfigError, StrategyError, ValidationError
from .events import Event
from .gateway import STAGES, GatedBroker, Gateway, Rule
from .model import (
    Account,
    Bar,
    Decision,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
    Quote,
    Side,
    TradingState,
)
from .portfolio import Portfolio
from .risk import RiskManager
from .slots import PluginSlot, Slot, make_slot

if TYPE_CHECKING:
    from .broker import SymbolSpec
    from .config import KernelConfig
    from .plugins import PluginHost
    from .store import Store

log = logging.getLogger("stratkernel.kernel")

ORDER_EVENT_STATUSES = frozenset(
    {
        OrderStatus.ACCEPTED,
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
        OrderStatus.PARTIALLY_FILLED,
    }
)


def tune_gc_for_trading() -> tuple[int, int, int]:
    """The GC policy of a trading process: freeze what is alive after setup (plugins, ccxt, the API
    stack: ~200k objects a full collection would walk) and collect young objects less often. The
    collector stays on. Returns the previous thresholds."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(old[0], 50_000), old[1], old[2])
    return old


def _session_id() -> str:
    n = int(time.time() * 1000)
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = chars[r] + out
    return out


class Kernel:
    """Owns the broker (behind the gate), the portfolio, the indicator engine and the strategy slots."""

    def __init__(
        self,
        config: KernelConfig,
        plugins: PluginHost,
        *,
        store: Store | None = None,
        mode: str = "live",
        extra_rules: list[Rule] | None = None,
    ) -> None:
        if mode not in ("live", "backtest"):
            raise ConfigError("mode", "must be 'live' or 'backtest'")
        self.config = config
        self.plugins = plugins
        self.store = store
        self.mode = mode
        self.portfolio = Portfolio(config.initial_cash, config.currency)
        self.indicators = IndicatorEngine(plugins.registry)
        self.trading_state: TradingState = config.risk.initial_state
        self.state_reason = ""
        self.slots: dict[str, Slot] = {}
        self.orders: dict[str, Order] = {}
        self._open_orders: dict[str, set[str]] = {}  # strategy -> ids of its working orders
        self.validator = BarValidator()
        self._extra_rules = extra_rules or []
        self._session = _session_id()
        self._req_seq = 0
        self._fill_ids: set[str] = set()
        self._fill_q: list[Fill] = []
        self._update_q: list[Order] = []
        self._reject_q: list[tuple[str, dict[str, Any]]] = []
        self._audit_q: list[tuple[int, Decision]] = []
        self._subscribers: list[Callable[[Event], None]] = []
        self._last_bar: dict[str, Bar] = {}
        self._last_quote: dict[str, Quote] = {}
        self._series: BarSeries | None = None
        self._symbols = set(config.symbols)
        self._broker: GatedBroker | None = None
        self.gateway: Gateway | None = None
        self.risk: RiskManager | None = None
        self._wall_clock = mode == "live"
        self.port = ContextPort(
            indicators=self.indicators,
            position=self._ctx_position,
            positions=self._ctx_positions,
            account=self.portfolio.account,
            history=self._history,
        )
        self.denials: list[Decision] = []
        self.stats: dict[str, int] = {"bars": 0, "orders": 0, "denied": 0, "fills": 0, "refused_data": 0}
        self._has_event_hooks = False
        self._failures_pending = False
        self.fill_log: list[Fill] = []
        # held while one live event is processed: reloads and API actions swap strategies between
        # events, never in the middle of one
        self.lock = asyncio.Lock()

    # -- setup ----------------------------------------------------------------------------------
    async def setup(self) -> None:
        reg = self.plugins.registry
        bcfg = self.config.broker
        breg = reg.get("broker", bcfg.name)
        options = dict(bcfg.options)
        if breg.meta.get("simulated"):
            options.setdefault("cash", self.config.initial_cash)
            options.setdefault("currency", self.config.currency)
        try:
            raw = breg.obj(options, self)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"broker.{bcfg.name}", f"could not be created: {exc}") from exc
        plugin_rules: list[Rule] = []
        for name in reg.names("risk_rule"):
            r = reg.get("risk_rule", name)
            plugin_rules.append(r.obj(dict(r.meta.get("options", {}))))
        self.risk = RiskManager(self.config.risk, self)
        rules = self.risk.rules(plugin_rules + self._extra_rules)
        self.gateway = Gateway(rules, self, audit=self._audit, enabled=self.config.risk.enabled)
        self._broker = GatedBroker(raw, self.gateway)
        self._has_event_hooks = bool(self.plugins.hook.kernel_event.get_hookimpls())
        if self.store is not None and self.mode == "live":
            await self._restore()
        await self._broker.connect()
        if self.store is not None and self.mode == "live":
            await self._reconcile()

    def add_strategy(
        self,
        name: str,
        ref: str,
        *,
        symbol: str | None = None,
        params: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
    ) -> Slot:
        if name in self.slots and self.slots[name].status == "running":
            raise ConfigError(f"strategies.{name}", "a strategy with this name is already running")
        slot = make_slot(
            self, name, ref, symbol=symbol or self.config.symbols[0], params=params or {}, state=state
        )
        if self.mode == "live" and slot.status == "running":
            # a script joining a running kernel gets the bars so far, so its bar index matches ours
            series = self.live_series(slot.symbol)
            if series is not None:
                slot.attach_series(series)
        self.slots[name] = slot
        return slot

    def live_series(self, symbol: str) -> BarSeries | None:
        """The live bars seen so far for ``symbol`` as a BarSeries (None before the first bar)."""
        bars = self.indicators._bars.get(symbol) or []
        if not bars:
            return None
        cols = list(zip(*[(b.ts, b.open, b.high, b.low, b.close, b.volume) for b in bars], strict=True))
        return BarSeries.from_arrays(symbol, *cols)

    # -- what rules and contexts may read (GateView) ---------------------------------------------
    def now_ms(self) -> int:
        if self._wall_clock:
            return int(time.time() * 1000)
        s = self._series
        if s is not None and self.port.index >= 0:
            return int(s.ts[self.port.index])  # bar time, read only when asked (not per bar)
        return self.port.time

    def last_price(self, symbol: str) -> float | None:
        s = self._series
        if s is not None and symbol == s.symbol and self.port.index >= 0:
            return float(s.close[self.port.index])
        q = self._last_quote.get(symbol)
        b = self._last_bar.get(symbol)
        if q is not None and (b is None or q.ts >= b.ts):
            return q.last
        return None if b is None else b.close

    def last_quote_ms(self, symbol: str) -> int | None:
        s = self._series
        if s is not None and symbol == s.symbol and self.port.index >= 0:
            return int(s.ts[self.port.index])
        q = self._last_quote.get(symbol)
        b = self._last_bar.get(symbol)
        ts = [x.ts for x in (q, b) if x is not None]
        return max(ts) if ts else None

    def position(self, symbol: str) -> Position:
        return self.portfolio.position(symbol)

    def strategy_position(self, strategy: str, symbol: str) -> Position:
        return self.portfolio.strategy_position(strategy, symbol)

    def account(self) -> Account:
        return self.portfolio.account()

    def broker_open_positions(self) -> int:
        return len(self.portfolio.positions())

    def symbol_spec(self, symbol: str) -> SymbolSpec | None:
        return self._broker.symbol_spec(symbol) if self._broker is not None else None

    def known_symbol(self, symbol: str) -> bool:
        return symbol in self._symbols

    def indicator_value(self, symbol: str, name: str, *args: Any) -> float | None:
        eng = self.indicators
        values = eng.values_list(eng.key(symbol, name, args, {}))
        i = self.port.index if self._series is not None else len(values) - 1
        if i < 0 or i >= len(values):
            return None
        v = values[i]
        return None if v != v else v

    def open_order_ids(self, strategy: str) -> list[str]:
        return sorted(self._open_orders.get(strategy, ()))

    def working_triggers(self, strategy: str) -> list[Any] | None:
        """The strategy's working orders as (side, type, price), or None if the broker can't tell."""
        assert self._broker is not None
        return self._broker.working_triggers(strategy)

    def _ctx_position(self, strategy: str, symbol: str) -> Position:
        return self.portfolio.strategy_position(strategy, symbol)

    def _ctx_positions(self, strategy: str) -> dict[str, Position]:
        return {p.symbol: p for p in self.portfolio.strategy_positions(strategy)}

    def _history(self, symbol: str, field: str, n: int) -> list[float]:
        s = self._series
        if s is not None and s.symbol == symbol:
            i = self.port.index
            return list(s.column(field)[max(0, i - n + 1) : i + 1].tolist())
        bars = self.indicators._bars.get(symbol, [])
        idx = ("open", "high", "low", "close", "volume").index(field) + 1
        return [float(b[idx]) for b in bars[-n:]]

    # -- events ---------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every kernel event (synchronously; queue it yourself). Returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    @property
    def listened(self) -> bool:
        """Whether anyone receives events: a backtest with no subscriber or hook skips building them."""
        return bool(self._subscribers) or self._has_event_hooks or self.mode != "backtest"

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        if not self.listened:
            return
        ev = Event(type_, self.now_ms(), data)
        for cb in list(self._subscribers):
            try:
                cb(ev)
            except Exception:  # a broken subscriber must not stop trading
                log.exception("event subscriber failed; unsubscribing it")
                self._subscribers.remove(cb)
        if self._has_event_hooks:
            try:
                self.plugins.hook.kernel_event(event=ev)
            except Exception:
                log.exception("a kernel_event hook failed")

    # -- broker callbacks (BrokerEvents) --------------------------------------------------------
    def on_order_update(self, order: Order) -> None:
        self._update_q.append(order)

    def on_fill(self, fill: Fill) -> None:
        self._fill_q.append(fill)

    def _audit(self, decision: Decision) -> None:
        if self.store is not None:
            self._audit_q.append((self.now_ms(), decision))

    # -- the order path -------------------------------------------------------------------------
    async def submit(self, request: OrderRequest) -> Decision:
        """The single entry for orders that don't come from a strategy slot (API, CLI, tests).
        The same gate, the same audit, the same broker path."""
        decisions = await self._process(None, [request], [])
        await self.drain()
        return decisions[0]

    async def cancel(self, order_id: str, *, strategy: str | None = None) -> bool:
        order = self.orders.get(order_id)
        if order is None or not order.status.is_open:
            return False
        if strategy is not None and order.request.strategy != strategy:
            return False
        assert self._broker is not None
        await self._broker.cancel(order_id)
        await self.drain()
        return True

    async def _process(
        self, slot: Slot | None, requests: list[OrderRequest], cancels: list[str]
    ) -> list[Decision]:
        gateway, broker = self.gateway, self._broker
        assert gateway is not None and broker is not None
        out: list[Decision] = []
        for req in requests:
            self._req_seq += 1
            cid = req.client_id or f"m{self._req_seq}"
            owner = slot.name if slot is not None else (req.source or "manual")
            order_id = f"{owner}-{self._session}-{cid}"
            if order_id in self.orders:
                order_id = f"{order_id}-{self._req_seq}"
            decision = gateway.decide(req, order_id)
            out.append(decision)
            if not decision.approved:
                self.stats["denied"] += 1
                if len(self.denials) < 10_000:
                    self.denials.append(decision)
                if self.listened:
                    self.emit(
                        "denial",
                        {
                            "strategy": req.strategy,
                            "source": req.source,
                            **decision.as_dict(),
                            "symbol": req.symbol,
                            "side": req.side.value,
                            "qty": req.qty,
                        },
                    )
                if slot is not None:
                    self._reject_q.append(
                        (slot.name, {"id": req.client_id, "code": decision.code, "message": decision.message})
                    )
                continue
            self.stats["orders"] += 1
            ts = self.now_ms()
            order = Order(
                order_id,
                decision.request,
                OrderStatus.PENDING,
                created_ts=ts,
                updated_ts=ts,
                role="close" if decision.request.reduce_only else "entry",
            )
            self.orders[order_id] = order
            self._open_orders.setdefault(order.request.strategy, set()).add(order_id)
            if self.store is not None and self.mode == "live":
                await self._flush_audit()
                await self.store.upsert_order(order)  # write-ahead: a crash never forgets a sent order
            try:
                await broker.submit(order)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                # the venue refused or the plugin broke: the order is REJECTED, the kernel goes on
                code = getattr(exc, "code", "broker_error")
                order.status = OrderStatus.REJECTED
                order.reason = f"{code}: {exc}"[:500]
                log.warning("broker %s refused order %s: %s", broker.name, order_id, exc)
                self._update_q.append(order)
                if slot is not None:
                    self._reject_q.append(
                        (slot.name, {"id": req.client_id, "code": str(code), "message": str(exc)[:500]})
                    )
        if slot is not None:
            for oid in cancels:
                # a strategy may cancel only its own orders; ids are its local request ids or full ids
                target = oid if oid in self.orders else f"{slot.name}-{self._session}-{oid}"
                found = self.orders.get(target)
                if found is not None and found.request.strategy == slot.name and found.status.is_open:
                    await broker.cancel(target)
        return out

    async def drain(self) -> None:
        """Apply what the broker reported (order updates, fills) and deliver it to strategies."""
        while self._update_q or self._fill_q or self._reject_q:
            if self._update_q:
                updates, self._update_q = self._update_q, []
                for order in updates:
                    self.orders[order.id] = order
                    ids = self._open_orders.setdefault(order.request.strategy, set())
                    if order.status.is_open:
                        ids.add(order.id)
                    else:
                        ids.discard(order.id)
                    if self.store is not None and self.mode == "live":
                        await self.store.upsert_order(order)
                    if order.status in ORDER_EVENT_STATUSES and self.listened:
                        self.emit("order", order_event(order))
            if self._fill_q:
                fills, self._fill_q = self._fill_q, []
                for fill in fills:
                    await self._apply_fill(fill)
            if self._reject_q:
                rejects, self._reject_q = self._reject_q, []
                for name, rejection in rejects:
                    slot = self.slots.get(name)
                    if slot is not None and slot.status == "running":
                        res = slot.on_reject(rejection)
                        if res:
                            await self._process(slot, *res)
        if self._audit_q:
            await self._flush_audit()
        if self.risk is not None and self.risk.take_dirty() and self.store is not None:
            await self.store.save_risk_state(self.risk.snapshot())

    async def risk_tick(self) -> None:
        """Live housekeeping for the risk manager (called by the runtime about every 250 ms)."""
        if self.risk is not None:
            await self.risk.tick()
            await self.drain()

    def risk_snapshot(self) -> dict[str, Any]:
        return self.risk.snapshot() if self.risk is not None else {}

    def rebuild_rules(self) -> None:
        """Re-read ``config.risk`` (after an admin changed limits) and rebuild the gate's rules."""
        assert self.gateway is not None
        reg = self.plugins.registry
        plugin_rules = [
            reg.get("risk_rule", n).obj(dict(reg.get("risk_rule", n).meta.get("options", {})))
            for n in reg.names("risk_rule")
        ]
        self.risk = RiskManager(self.config.risk, self) if self.risk is None else self.risk
        self.risk.config = self.config.risk
        self.gateway.rules = sorted(
            self.risk.rules(plugin_rules + self._extra_rules), key=lambda r: STAGES.index(r.stage)
        )
        self.gateway.enabled = self.config.risk.enabled

    async def _apply_fill(self, fill: Fill) -> None:
        if fill.id in self._fill_ids:
            return  # replayed by the venue or after a restart: already counted
        self._fill_ids.add(fill.id)
        self.stats["fills"] += 1
        if self.mode == "backtest" or len(self.fill_log) < 100_000:
            self.fill_log.append(fill)
        self.portfolio.apply(fill)
        assert self.risk is not None
        self.risk.on_fill(fill)
        order = self.orders.get(fill.order_id)
        if order is not None and not order.status.is_open:
            # brokers report a completed order through its fill; the open-order index must follow
            self._open_orders.get(order.request.strategy, set()).discard(order.id)
        if self.store is not None and self.mode == "live":
            pos = self.portfolio.strategy_position(fill.strategy, fill.symbol)
            await self.store.record_fill(fill, pos, order)
        if self.listened:
            self.emit(
                "fill",
                {
                    "id": fill.id,
                    "order_id": fill.order_id,
                    "strategy": fill.strategy,
                    "symbol": fill.symbol,
                    "side": fill.side.value,
                    "qty": fill.qty,
                    "price": fill.price,
                    "fee": fill.fee,
                    "role": fill.role,
                    "ts": fill.ts,
                },
            )
        slot = self.slots.get(fill.strategy)
        if slot is not None and slot.status == "running":
            res = slot.on_fill(fill)
            if res:
                await self._process(slot, *res)

    async def _flush_audit(self) -> None:
        if self._audit_q and self.store is not None:
            batch, self._audit_q = self._audit_q, []
            await self.store.record_audit(batch)

    # -- trading state ----------------------------------------------------------------------------
    async def set_trading_state(self, state: TradingState, reason: str, *, source: str = "operator") -> None:
        if state is self.trading_state and reason == self.state_reason:
            return
        old = self.trading_state
        self.trading_state, self.state_reason = state, reason
        log.warning("trading state %s -> %s: %s", old.value, state.value, reason)
        self.emit("risk_state", {"from": old.value, "to": state.value, "reason": reason, "source": source})
        if self.store is not None:
            await self.store.save_risk_state({"trading_state": state.value, "state_reason": reason})
            if self.mode == "live":
                await self.store.record_event(
                    self.now_ms(), "risk_state", {"from": old.value, "to": state.value, "reason": reason}
                )

    async def flatten(self, *, source: str = "operator") -> list[Decision]:
        """Close every position the kernel holds with reduce-only orders, through the gate. Those pass
        REDUCING, not HALTED: the kill switch moves to REDUCING, flattens, then halts."""
        reqs = []
        for p in self.portfolio.strategy_positions():
            reqs.append(
                OrderRequest(
                    p.symbol,
                    Side.SELL if p.qty > 0 else Side.BUY,
                    abs(p.qty),
                    reduce_only=True,
                    strategy=p.strategy,
                    source=source,
                    tag="flatten",
                )
            )
        out = []
        for r in reqs:
            out.extend(await self._process(None, [r], []))
        await self.drain()
        return out

    # -- failures ---------------------------------------------------------------------------------
    async def strategy_failed(self, slot: Slot, error: StrategyError) -> None:
        log.error("strategy %s failed: %s", slot.name, error)
        self.emit("strategy_failed", {"strategy": slot.name, **error.as_dict()})
        if self.store is not None:
            await self.store.save_strategy(
                slot.name,
                ref=slot.ref,
                kind=slot.kind,
                version=slot.version,
                status="failed",
                params=slot.params,
                state=slot.state,
                error=error.as_dict(),
            )
            if self.mode == "live":
                await self.store.record_event(
                    self.now_ms(), "strategy_failed", {"strategy": slot.name, **error.as_dict()}
                )

    async def _settle_failures(self) -> None:
        self._failures_pending = False
        for slot in list(self.slots.values()):
            if slot.status == "failed" and not slot.failure_reported and slot.error is not None:
                slot.failure_reported = True
                await self.strategy_failed(slot, slot.error)

    # -- backtest ---------------------------------------------------------------------------------
    async def run_backtest(
        self,
        series: BarSeries,
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> None:
        """Replay a validated series through the whole kernel. Data is validated once, vectorized,
        when the series was built; bars here are trusted."""
        assert self._broker is not None
        self._series = series
        self._symbols.add(series.symbol)
        self.indicators.attach_series(series)
        sym = series.symbol
        slots = [s for s in self.slots.values() if s.status == "running"]
        for slot in slots:
            slot.attach_series(series)
        await self._start_slots()
        broker = self._broker
        # bound once, outside the loop: one call per bar straight into the simulated broker
        on_market = broker._get().on_market if broker.simulated else None  # type: ignore[attr-defined]
        port = self.port
        n = len(series)
        bars = map(
            Bar,
            series.ts.tolist(),
            series.open.tolist(),
            series.high.tolist(),
            series.low.tolist(),
            series.close.tolist(),
            series.volume.tolist(),
            repeat(sym, n),
        )
        active = [s for s in slots if s.status == "running"]
        assert self.risk is not None
        risk_on_bar = self.risk.on_bar if self.risk.needs_bars else None
        i = -1
        # The loop allocates millions of short-lived objects and keeps few: full cyclic-GC passes over
        # the (large, long-lived) heap cost ~15% of a backtest. Freeze what exists and collect young
        # objects less often for the duration; restored afterwards.
        gc_threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(gc_threshold[0], 100_000), gc_threshold[1], gc_threshold[2])
        try:
            i = await self._replay(bars, active, on_market, risk_on_bar, progress, cancel, n)
        finally:
            gc.set_threshold(*gc_threshold)
            gc.unfreeze()
        self.stats["bars"] = i + 1
        if i >= 0:
            self._last_bar[sym] = series.bar(i)
            port.time = int(series.ts[i])
        if progress is not None:
            progress(n, n)
        await self.stop_slots()

    async def _replay(
        self,
        bars: Any,
        active: list[Slot],
        on_market: Any,
        risk_on_bar: Any,
        progress: Callable[[int, int], None] | None,
        cancel: Callable[[], bool] | None,
        n: int,
    ) -> int:
        port = self.port
        step = max(n // 200, 1)
        i = -1
        for i, bar in enumerate(bars):
            port.index = i  # bar time, last price etc. are derived from the index when asked
            if on_market is not None:
                on_market(bar)
            if risk_on_bar is not None:
                risk_on_bar(bar)
            if self._fill_q or self._update_q:
                await self.drain()
            for slot in active:
                res = slot.on_bar(i, bar)
                if res is not None:
                    await self._process(slot, *res)
                    await self.drain()
            if self._failures_pending:
                await self._settle_failures()
                active = [s for s in active if s.status == "running"]
            if i % step == 0:
                if progress is not None:
                    progress(i, n)
                if cancel is not None and cancel():
                    break
        return i

    async def _start_slots(self) -> None:
        for slot in list(self.slots.values()):
            if slot.status == "running":
                res = slot.start()
                if res:
                    await self._process(slot, *res)
        await self._settle_failures()
        await self.drain()

    async def stop_slots(self) -> None:
        for slot in list(self.slots.values()):
            if slot.status == "running":
                res = slot.stop()
                if res:
                    await self._process(slot, *res)
                await self.drain()
                if self.store is not None:
                    await self.store.save_strategy(
                        slot.name,
                        ref=slot.ref,
                        kind=slot.kind,
                        version=slot.version,
                        status="stopped" if slot.status != "failed" else "failed",
                        params=slot.params,
                        state=slot.state,
                        error=slot.error.as_dict() if slot.error else None,
                    )
            slot.close()
        await self._settle_failures()

    # -- live -------------------------------------------------------------------------------------
    async def on_live_bar(self, raw: Any) -> None:
        """Validate and process one live bar from a data source."""
        async with self.lock:
            await self._on_live_bar(raw)

    async def _on_live_bar(self, raw: Any) -> None:
        try:
            bar = self.validator.bar(raw)
        except ValidationError as exc:
            self.stats["refused_data"] += 1
            log.warning("refused bar from data source: %s (refused so far: %d)", exc, self.validator.refused)
            return
        assert self._broker is not None
        self._symbols.add(bar.symbol)
        self._last_bar[bar.symbol] = bar
        self.portfolio.mark(bar.symbol, bar.close)
        self.indicators.on_bar(bar)
        if self._broker.simulated:
            self._broker.on_market(bar)
        assert self.risk is not None
        if self.risk.needs_bars:
            self.risk.on_bar(bar)
        await self.drain()
        self.stats["bars"] += 1
        idx = len(self.indicators._bars[bar.symbol]) - 1
        self.port.index = idx
        self.port.time = bar.ts
        for slot in list(self.slots.values()):
            if slot.status != "running" or slot.symbol != bar.symbol:
                continue
            res = await slot.on_live_bar(idx, bar)
            if res is not None:
                await self._process(slot, *res)
                await self.drain()
        await self._settle_failures()

    async def on_live_quote(self, raw: Any) -> None:
        async with self.lock:
            await self._on_live_quote(raw)

    async def _on_live_quote(self, raw: Any) -> None:
        try:
            quote = self.validator.quote(raw)
        except ValidationError as exc:
            self.stats["refused_data"] += 1
            log.warning(
                "refused quote from data source: %s (refused so far: %d)", exc, self.validator.refused
            )
            return
        assert self._broker is not None
        self._last_quote[quote.symbol] = quote
        self.portfolio.mark(quote.symbol, quote.last)
        if self._broker.simulated:
            self._broker.on_market(quote)
        await self.drain()

    async def start_live(self) -> None:
        await self._start_slots()
        info = {
            "mode": self.mode,
            "broker": self.config.broker.name,
            "symbols": sorted(self._symbols),
            "strategies": sorted(self.slots),
        }
        self.plugins.hook.kernel_started.call_historic(kwargs={"info": info})
        self.emit("kernel", {"event": "started", **info})

    async def preflight(self) -> None:
        assert self._broker is not None
        pf = await self._broker.preflight()
        if not pf.trading_allowed and self.trading_state is not TradingState.HALTED:
            await self.set_trading_state(
                TradingState.HALTED,
                f"broker preflight: {pf.reason or 'trading not allowed'}",
                source="preflight",
            )

    async def snapshot_equity(self) -> None:
        if self.store is None:
            return
        p = self.portfolio
        await self.store.snapshot_equity(self.now_ms(), p.cash, p.equity(), p.gross_exposure())
        for slot in self.slots.values():
            if slot.status == "running":
                await self.store.save_strategy(
                    slot.name,
                    ref=slot.ref,
                    kind=slot.kind,
                    version=slot.version,
                    status=slot.status,
                    params=slot.params,
                    state=slot.state,
                    error=None,
                )

    async def shutdown(self) -> None:
        info = {"mode": self.mode}
        self.plugins.hook.kernel_stopping(info=info)
        await self.stop_slots()
        await self.snapshot_equity()
        if self._broker is not None:
            await self._broker.close()
        self.emit("kernel", {"event": "stopped"})

    # -- restart ----------------------------------------------------------------------------------
    async def _restore(self) -> None:
        """Rebuild the portfolio from recorded fills, working orders and risk state."""
        store = self.store
        assert store is not None and self._broker is not None
        fills = await store.fills()
        self.portfolio.restore(fills)
        self._fill_ids = {f.id for f in fills}
        open_orders = await store.orders(open_only=True)
        for o in open_orders:
            self.orders[o.id] = o
            self._open_orders.setdefault(o.request.strategy, set()).add(o.id)
        risk = await store.load_risk_state()
        if "trading_state" in risk:
            self.trading_state = TradingState(risk["trading_state"])
            self.state_reason = risk.get("state_reason", "")
        assert self.risk is not None
        self.risk.restore(risk)
        if self._broker.simulated:
            self._broker.restore(self.portfolio.strategy_positions(), open_orders, self.portfolio.cash)
        if fills or open_orders:
            log.info(
                "restored %d fills, %d working orders, trading state %s",
                len(fills),
                len(open_orders),
                self.trading_state.value,
            )
        self.emit(
            "kernel",
            {
                "event": "restored",
                "fills": len(fills),
                "open_orders": len(open_orders),
                "trading_state": self.trading_state.value,
            },
        )

    async def _reconcile(self) -> None:
        """Bring restored orders up to date with the broker, then compare positions; surface differences."""
        assert self._broker is not None
        if not self._broker.simulated:
            open_orders = [o for o in self.orders.values() if o.status.is_open]
            try:
                if await self._broker.reconcile(open_orders):
                    await self.drain()
            except Exception as exc:
                log.warning("broker could not reconcile %d restored orders: %s", len(open_orders), exc)
        try:
            theirs = {p.symbol: p.qty for p in await self._broker.positions()}
        except Exception as exc:
            log.warning("could not read broker positions to reconcile: %s", exc)
            return
        ours = {p.symbol: p.qty for p in self.portfolio.positions()}
        diffs = {
            s: (ours.get(s, 0.0), theirs.get(s, 0.0))
            for s in set(ours) | set(theirs)
            if abs(ours.get(s, 0.0) - theirs.get(s, 0.0)) > 1e-9
        }
        if diffs:
            log.warning("positions differ from the broker after restart (ours, theirs): %s", diffs)
            self.emit("kernel", {"event": "reconcile", "differences": {k: list(v) for k, v in diffs.items()}})


def order_event(order: Order) -> dict[str, Any]:
    r = order.request
    return {
        "id": order.id,
        "strategy": r.strategy,
        "symbol": r.symbol,
        "side": r.side.value,
        "type": r.type.value,
        "qty": r.qty,
        "status": order.status.value,
        "filled_qty": order.filled_qty,
        "avg_fill_price": order.avg_fill_price,
        "role": order.role,
        "reason": order.reason,
    }


__all__ = ["Kernel", "PluginSlot", "Slot"]
