"""Risk configuration, the rule set the kernel's gate runs, and the risk manager that keeps risk state.

Every rule is configurable and denies with a stable reason code (see docs/risk.md for each rule, its
codes and an example ``[risk]`` config). :class:`RiskManager` builds the ordered rule list from
:class:`RiskConfig` plus rules contributed by plugins (``register_risk_rules``), and is told about
fills, bars and (live) ticks by the kernel so the stateful rules can act: loss limits trip the trading
state, stop-loss hits start cooldowns and locks, approved orders fill the rate windows. Its state is
persisted through the kernel's store (``snapshot``/``restore``) and survives ``kill -9``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ConfigError
from .events import Event
from .gateway import Rule, TradingStateRule
from .model import Bar, Fill, TradingState
from .risk_rules import (
    CommitRule,
    CooldownRule,
    ExposureRule,
    FactsCache,
    LossLimitRule,
    MarginRule,
    OpenPositionsRule,
    OrderSizeRule,
    PositionLimitRule,
    PrepareRule,
    PriceCollarRule,
    RateRule,
    RiskPerTradeRule,
    StopLossRule,
    ValidateRule,
    kelly_fraction,
    position_size,
)
from .risk_state import Cooldowns, LossLock, LossTracker, PendingLedger, RateState

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger("stratkernel.risk")

_Pct = Field(None, gt=0, le=100)


class RiskConfig(BaseModel):
    """Risk limits, the ``[risk]`` section. ``None`` or infinity turns a limit off.

    Defaults: the gate is on, opening orders need a stop-loss, and every account-size dependent limit
    is off until the operator sets it (docs/risk.md has a recommended starting config).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Turn the whole gate off (benchmarks only; never live).")
    initial_state: TradingState = Field(TradingState.ACTIVE, description="Trading state at first start.")
    halt_flattens: bool = Field(
        False,
        description="The kill switch (RiskManager.kill_switch) also flattens every position before halting.",
    )
    # -- stop-loss / take-profit
    require_stop_loss: bool = Field(True, description="Opening orders must carry a stop_loss.")
    default_stop: Literal["none", "fixed", "atr"] = Field(
        "none",
        description="Attach a stop when an opening order has none: 'fixed' distance or an 'atr' multiple "
        "('none' refuses the order if require_stop_loss is set).",
    )
    default_stop_distance: float = Field(0.0, ge=0, description="Price distance of the 'fixed' default stop.")
    default_stop_atr_multiple: float = Field(2.0, gt=0, description="ATR multiple of the 'atr' default stop.")
    default_stop_atr_period: int = Field(
        14, ge=1, le=1000, description="ATR period of the 'atr' default stop."
    )
    # -- size
    max_order_qty: float = Field(math.inf, gt=0, description="Maximum quantity of one opening order.")
    max_order_notional: float = Field(math.inf, gt=0, description="Maximum qty x price of one opening order.")
    max_position_qty: float = Field(math.inf, gt=0, description="Maximum absolute net position per symbol.")
    max_position_notional: float = Field(
        math.inf, gt=0, description="Maximum value of the net position per symbol."
    )
    max_gross_exposure: float = Field(
        math.inf, gt=0, description="Maximum sum of |position| x price, all symbols."
    )
    max_leverage: float = Field(math.inf, gt=0, description="Maximum gross exposure / equity.")
    # -- open positions
    max_open_positions: int | None = Field(
        None,
        ge=1,
        description="Maximum symbols with an open position, counted at the broker (manual trades included).",
    )
    broker_positions_refresh_s: float = Field(
        30.0,
        gt=0,
        description="Live: seconds between reads of the broker's positions for max_open_positions.",
    )
    # -- sizing
    risk_per_trade_pct: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Enforced: an opening order may lose at most this % of equity at its stop-loss.",
    )
    # -- margin
    margin_free_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Refuse orders needing more than this fraction of the broker's free margin.",
    )
    margin_level_min_pct: float | None = Field(
        None,
        gt=0,
        description="Refuse orders that would push the margin level (equity / margin used, %) below this.",
    )
    # -- loss limits
    daily_loss_pct: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Loss from the day's starting equity "
        "(day boundary in `timezone`) that trips the loss action.",
    )
    weekly_loss_pct: float | None = Field(
        None, gt=0, le=100, description="Loss from the week's starting equity (Monday 00:00 in `timezone`)."
    )
    max_drawdown_pct: float | None = Field(None, gt=0, le=100, description="Drawdown from peak equity.")
    loss_action: Literal["halt", "reduce"] = Field(
        "halt", description="State after a loss limit trips: HALTED or REDUCING."
    )
    loss_flatten: bool = Field(
        False, description="Live: also flatten every position when a loss limit trips."
    )
    loss_recovery: Literal["operator", "hours", "next_day"] = Field(
        "operator",
        description="How trading recovers: an operator's resume, after `loss_recovery_hours`, or at "
        "the next day boundary. An operator may always resume earlier.",
    )
    loss_recovery_hours: float = Field(
        24.0, gt=0, description="Hours until recovery when loss_recovery='hours'."
    )
    timezone: str = Field("UTC", description="IANA timezone of the day and week boundaries.")
    notifiers: list[str] = Field(
        default_factory=lambda: ["log"],
        description="Notifier plugins told (live) about "
        "loss warnings (80%, 90%), trips, recoveries and symbol locks.",
    )
    # -- cooldowns
    stop_cooldown_bars: int = Field(
        0, ge=0, description="After a stop-loss hit, no entry on that symbol for N bars."
    )
    stop_cooldown_minutes: float = Field(
        0.0, ge=0, description="After a stop-loss hit, no entry on that symbol for N minutes."
    )
    stop_lock_count: int = Field(
        0, ge=0, description="K stop-losses within the window lock the symbol (0 = off)."
    )
    stop_lock_window_minutes: float = Field(
        60.0, gt=0, description="Window in which stop_lock_count hits count."
    )
    stop_lock_minutes: float = Field(240.0, gt=0, description="How long such a lock lasts.")
    stop_lock_scope: Literal["symbol", "all"] = Field(
        "symbol", description="Lock that symbol or every entry."
    )
    # -- rate
    max_orders_per_second: int | None = Field(
        None, ge=1, description="Per strategy (or source for manual orders)."
    )
    max_orders_per_minute: int | None = Field(
        None, ge=1, description="Per strategy (or source for manual orders)."
    )
    max_total_orders_per_second: int | None = Field(None, ge=1, description="All sources together.")
    max_total_orders_per_minute: int | None = Field(None, ge=1, description="All sources together.")
    duplicate_window_ms: int = Field(
        0,
        ge=0,
        description="Refuse the same order (strategy, symbol, side, qty, "
        "type, price) again within this many ms (0 = off).",
    )
    # -- price collar
    price_collar_pct: float | None = Field(
        None, gt=0, description="Refuse limit/stop prices further than this % from the last price."
    )
    stale_quote_s: float | None = Field(
        None,
        gt=0,
        description="Refuse market orders when the last quote/bar is older than this many seconds.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {v!r} (use an IANA name such as 'UTC' or 'Europe/London')"
            ) from None
        return v


def build_rules(config: RiskConfig, plugin_rules: list[Rule] | None, manager: RiskManager) -> list[Rule]:
    """The gate's rules in order; rules a config leaves off are not in the list at all (zero cost)."""
    c = config
    fx = manager.facts
    rules: list[Rule] = [
        PrepareRule(fx),
        ValidateRule(fx),
        TradingStateRule(),
        StopLossRule(
            fx,
            required=c.require_stop_loss,
            default=c.default_stop,
            fixed_distance=c.default_stop_distance,
            atr_multiple=c.default_stop_atr_multiple,
            atr_period=c.default_stop_atr_period,
        ),
    ]
    if c.max_order_qty < math.inf or c.max_order_notional < math.inf:
        rules.append(OrderSizeRule(fx, max_qty=c.max_order_qty, max_notional=c.max_order_notional))
    if c.price_collar_pct is not None or c.stale_quote_s is not None:
        rules.append(
            PriceCollarRule(
                fx,
                max_deviation=None if c.price_collar_pct is None else c.price_collar_pct / 100.0,
                stale_ms=None if c.stale_quote_s is None else int(c.stale_quote_s * 1000),
            )
        )
    rate: RateRule | None = None
    if (
        c.max_orders_per_second
        or c.max_orders_per_minute
        or c.max_total_orders_per_second
        or c.max_total_orders_per_minute
        or c.duplicate_window_ms
    ):
        rate = RateRule(
            fx,
            manager.rate,
            per_second=c.max_orders_per_second,
            per_minute=c.max_orders_per_minute,
            total_per_second=c.max_total_orders_per_second,
            total_per_minute=c.max_total_orders_per_minute,
            dup_window_ms=c.duplicate_window_ms,
        )
        rules.append(rate)
    if c.max_position_qty < math.inf or c.max_position_notional < math.inf:
        rules.append(
            PositionLimitRule(
                fx, manager.ledger, max_qty=c.max_position_qty, max_notional=c.max_position_notional
            )
        )
    # margin reads the account once; exposure and sizing then take equity from it
    if c.margin_free_fraction is not None or c.margin_level_min_pct is not None:
        rules.append(MarginRule(fx, free_fraction=c.margin_free_fraction, min_level=c.margin_level_min_pct))
    if c.max_gross_exposure < math.inf or c.max_leverage < math.inf:
        rules.append(
            ExposureRule(fx, manager.ledger, max_gross=c.max_gross_exposure, max_leverage=c.max_leverage)
        )
    if c.max_open_positions is not None:
        rules.append(OpenPositionsRule(manager, max_open=c.max_open_positions))
    if c.risk_per_trade_pct is not None:
        rules.append(RiskPerTradeRule(fx, max_pct=c.risk_per_trade_pct))
    if manager.loss.enabled:
        rules.append(LossLimitRule(manager))
    if c.stop_cooldown_bars or c.stop_cooldown_minutes or c.stop_lock_count:
        rules.append(
            CooldownRule(manager, bars=c.stop_cooldown_bars, ms=int(c.stop_cooldown_minutes * 60_000))
        )
    rules.extend(plugin_rules or [])
    ledger = manager.ledger if manager.uses_ledger else None
    if rate is not None or ledger is not None:
        # last of the last stage: only approved orders are counted
        rules.append(CommitRule(fx, rate, ledger))
    return rules


class RiskManager:
    """Owns the rules and the risk state; the kernel calls it at fixed points.

    Call sites in the kernel: ``rules()`` at setup, ``on_fill`` for every new fill, ``on_bar`` for every
    bar when ``needs_bars`` is true (backtest and live), ``tick`` about every 250 ms live, ``snapshot``
    / ``restore`` for persistence (the kernel stores ``snapshot()`` in the ``risk_state`` table after
    any change reported by ``take_dirty``).

    Loss limits trip synchronously (inside ``on_bar`` or inside the gate): the trading state changes
    at once, so no strategy sees another bar, and no order another decision, under the old state. The
    slow parts (store events, notifiers, a configured flatten) follow in ``tick``/a task.
    """

    def __init__(self, config: RiskConfig, kernel: Kernel) -> None:
        self.kernel = kernel
        self.config = config
        self.loss = LossTracker(ZoneInfo(config.timezone))
        self.cooldowns = Cooldowns()
        self.rate = RateState()
        self.broker_symbols: frozenset[str] = frozenset()
        self.facts = FactsCache(self.equity, self.gross_exposure)
        self.ledger = PendingLedger()
        self.uses_ledger = False
        self.needs_bars = False
        self._dirty = False
        self._owned_state: tuple[TradingState, str] | None = None  # the state a loss trip set
        self._store_events: list[tuple[int, str, dict[str, Any]]] = []
        self._flatten_pending = False
        self._next_positions_read = 0.0
        self._next_spec_refresh = 0.0
        self._notifiers: list[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._apply_config()

    def _apply_config(self) -> None:
        c = self.config
        tz = ZoneInfo(c.timezone)
        if tz != self.loss.tz:
            self.loss.tz = tz
            self.loss.next_day = self.loss.next_week = 0  # recompute boundaries in the new timezone
        self.loss.daily = None if c.daily_loss_pct is None else c.daily_loss_pct / 100.0
        self.loss.weekly = None if c.weekly_loss_pct is None else c.weekly_loss_pct / 100.0
        self.loss.drawdown = None if c.max_drawdown_pct is None else c.max_drawdown_pct / 100.0
        self.cooldowns.window_ms = int(c.stop_lock_window_minutes * 60_000)
        if not self.loss.enabled and self.loss.lock is not None:
            # the limit that held was switched off: its lock goes; the trading state stays the operator's
            self.loss.lock = None
            self._dirty = True
        was = self.uses_ledger
        self.uses_ledger = (
            c.max_position_qty < math.inf
            or c.max_position_notional < math.inf
            or c.max_gross_exposure < math.inf
            or c.max_leverage < math.inf
            or c.max_open_positions is not None
        )
        if not self.uses_ledger:
            self.ledger.clear()
        elif not was:  # switched on at run time: the orders already working count from now on
            self._ledger_from_working_orders()
        # bars drive loss checks, bar-counted cooldowns and the pruning of the working-orders ledger
        self.needs_bars = self.loss.enabled or c.stop_cooldown_bars > 0 or self.uses_ledger
        self.loss.update_floor()
        self.facts.clear_specs()
        reg = self.kernel.plugins.registry
        missing = [n for n in c.notifiers if not reg.has("notifier", n)]
        if missing:
            raise ConfigError(
                "risk.notifiers", f"unknown notifier(s) {missing} (known: {reg.names('notifier')})"
            )
        self._notifiers = None

    # -- what the kernel calls --------------------------------------------------------------------
    def rules(self, plugin_rules: list[Rule]) -> list[Rule]:
        """Build the gate's rules from the current ``config`` (also after an admin changed limits)."""
        self._apply_config()
        return build_rules(self.config, plugin_rules, self)

    def on_fill(self, fill: Fill) -> None:
        """Stop-loss hits start cooldowns; K hits in the window lock the symbol (or everything)."""
        self.facts.positions_changed()
        if self.ledger.entries:
            order = self.kernel.orders.get(fill.order_id)
            if order is not None:
                self.ledger.filled(order.request, fill.qty)
        if fill.role != "stop_loss":
            return
        c = self.config
        if not (c.stop_cooldown_bars or c.stop_cooldown_minutes or c.stop_lock_count):
            return
        ts = fill.ts or self.kernel.now_ms()
        st = self.cooldowns.on_stop(fill.symbol, fill.order_id, ts)
        if st is None:
            return
        self._dirty = True
        if c.stop_lock_count and len(st.recent) >= c.stop_lock_count:
            until = ts + int(c.stop_lock_minutes * 60_000)
            st.recent.clear()
            scope = fill.symbol if c.stop_lock_scope == "symbol" else "all"
            if c.stop_lock_scope == "symbol":
                st.locked_until = until
            else:
                self.cooldowns.global_until = until
            self._warn(
                {
                    "event": "locked",
                    "scope": scope,
                    "until": until,
                    "stop_losses": c.stop_lock_count,
                    "message": f"{c.stop_lock_count} stop-losses within {c.stop_lock_window_minutes:g} min: "
                    f"entries on {scope} locked for {c.stop_lock_minutes:g} min",
                }
            )

    def on_bar(self, bar: Bar) -> None:
        """Count the bar for cooldowns, mark the portfolio and check the loss limits: O(1)."""
        self.kernel.portfolio.mark(bar.symbol, bar.close)
        if self.ledger.entries:
            self.ledger.prune(self.kernel.orders)
        if self.config.stop_cooldown_bars:
            self.cooldowns.on_bar(bar.symbol)
        if self.loss.enabled:
            self._observe(self.kernel.now_ms())

    async def tick(self) -> None:
        """Live housekeeping: day boundaries and recoveries without bars, broker positions, store
        events, notifications and a configured flatten after a trip. Called through
        ``kernel.risk_tick()`` with ``kernel.lock`` held (between two live events)."""
        k = self.kernel
        if self.loss.enabled:
            self._observe(k.now_ms())
        if self.ledger.entries:
            self.ledger.prune(k.orders)
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_spec_refresh:  # venue specs rarely change; re-read them every minute
            self._next_spec_refresh = loop.time() + 60.0
            self.facts.clear_specs()
        if (
            self.config.max_open_positions is not None
            and k._broker is not None
            and loop.time() >= self._next_positions_read
        ):
            self._next_positions_read = loop.time() + self.config.broker_positions_refresh_s
            await self.refresh_broker_positions()
        if self._store_events and k.store is not None:
            events, self._store_events = self._store_events, []
            for ts, type_, data in events:
                await k.store.record_event(ts, type_, data)
        if self._flatten_pending:
            self._flatten_pending = False
            await self._flatten_after_trip()

    async def refresh_broker_positions(self) -> None:
        """Read the broker's own open positions (manual trades and other bots included)."""
        assert self.kernel._broker is not None
        try:
            positions = await self.kernel._broker.positions()
        except Exception as exc:  # keep the last known set; the count only ever errs on the cautious side
            log.warning("could not read broker positions for max_open_positions: %s", exc)
            return
        self.broker_symbols = frozenset(p.symbol for p in positions if not p.is_flat)

    def snapshot(self) -> dict[str, Any]:
        k = self.kernel
        return {
            "trading_state": k.trading_state.value,
            "state_reason": k.state_reason,
            "halt_kind": self.halt_kind,
            "loss": self.loss.to_dict(),
            "cooldowns": self.cooldowns.to_dict(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Adopt a snapshot (the kernel has already restored ``trading_state`` from the same table)."""
        if isinstance(state.get("loss"), dict):
            self.loss.load(state["loss"])
            self.loss.update_floor()
        if isinstance(state.get("cooldowns"), dict):
            self.cooldowns.load(state["cooldowns"])
        if self.loss.lock is not None:
            self._owned_state = (self.kernel.trading_state, self.kernel.state_reason)
        self.facts.positions_changed()  # the kernel rebuilt its portfolio from the stored fills
        if self.uses_ledger:
            self._ledger_from_working_orders()

    def _ledger_from_working_orders(self) -> None:
        """Count the kernel's working orders (after a restart or when a limit is switched on)."""
        self.ledger.clear()
        for order in self.kernel.orders.values():
            r = order.request
            if order.status.is_open and not r.reduce_only:
                price = (
                    r.limit_price or r.stop_price or order.avg_fill_price or self.kernel.last_price(r.symbol)
                )
                self.ledger.add(r, price or 0.0)
                self.ledger.filled(r, order.filled_qty)
                e = self.ledger.entries.get(id(r))
                if e is not None:
                    e.order_id = order.id

    def take_dirty(self) -> bool:
        dirty, self._dirty = self._dirty, False
        return dirty

    def describe(self) -> dict[str, Any]:
        """Limits and live state, for ``stratkernel risk show`` and the API."""
        eq = self.equity()
        return {
            "limits": self.config.model_dump(mode="json"),
            "state": self.snapshot(),
            "losses": self.loss.losses(eq),
            "equity": eq,
            "broker_open_positions": sorted(self.broker_symbols),
        }

    # -- helpers for rules and strategies ---------------------------------------------------------
    def equity(self) -> float:
        return self.kernel.portfolio.equity()

    def gross_exposure(self) -> float:
        return self.kernel.portfolio.gross_exposure()

    @property
    def halt_kind(self) -> str:
        """``loss_limit`` while a loss limit holds (an API resume of it needs the admin role), else ''."""
        return "loss_limit" if self.loss.lock is not None else ""

    def position_size(
        self,
        entry: float,
        stop: float,
        *,
        risk_pct: float | None = None,
        kelly: float | None = None,
        symbol: str | None = None,
    ) -> float:
        """Quantity risking ``risk_pct`` (default: ``risk_per_trade_pct``, else 1) % of current equity."""
        pct = risk_pct if risk_pct is not None else (self.config.risk_per_trade_pct or 1.0)
        spec = self.kernel.symbol_spec(symbol) if symbol else None
        return position_size(
            self.equity(),
            entry,
            stop,
            pct,
            kelly=kelly,
            contract_size=spec.contract_size if spec else 1.0,
            qty_step=spec.qty_step if spec else 0.0,
        )

    kelly_fraction = staticmethod(kelly_fraction)

    async def kill_switch(
        self, reason: str, *, source: str = "operator", flatten: bool | None = None
    ) -> None:
        """Halt; with ``flatten`` (default: ``halt_flattens``) close every position first (REDUCING → HALTED)."""
        k = self.kernel
        if flatten if flatten is not None else self.config.halt_flattens:
            await k.set_trading_state(
                TradingState.REDUCING, f"kill switch, flattening: {reason}", source=source
            )
            await k.flatten(source=source)
        await k.set_trading_state(TradingState.HALTED, reason, source=source)

    # -- loss limits ------------------------------------------------------------------------------
    def check_loss_now(self, now: int, equity: float) -> LossLock | None:
        """Observe equity now (the gate calls this for opening orders); the lock that holds, if any."""
        self._observe(now, equity)
        return self.loss.lock

    def _observe(self, now: int, equity: float | None = None) -> None:
        loss = self.loss
        eq = self.equity() if equity is None else equity
        if loss.quiet(now, eq):
            return
        self._observe_slow(now, eq)
        loss.update_floor()

    def _observe_slow(self, now: int, eq: float) -> None:
        loss = self.loss
        if loss.lock is not None and self.kernel.trading_state is TradingState.ACTIVE:
            self._recover(now, eq, "operator resume")
        if loss.roll(now, eq):
            self._dirty = True
        lock = loss.lock
        if lock is not None:
            if lock.until is not None and now >= lock.until:
                self._recover(now, eq, f"recovery condition '{self.config.loss_recovery}' met")
            return
        for kind, metric, level, value, limit in loss.crossings(eq):
            if kind == "trip":
                self._trip(now, metric, value, limit, eq)
                return
            self._dirty = True
            self._warn(
                {
                    "event": "loss_warning",
                    "metric": metric,
                    "level": level,
                    "loss": value,
                    "limit": limit,
                    "equity": eq,
                    "message": f"{metric} at {level * 100:.0f}% of its limit "
                    f"({value * 100:.3g}% of {limit * 100:g}%)",
                }
            )

    def _trip(self, now: int, metric: str, value: float, limit: float, equity: float) -> None:
        c = self.config
        until: int | None = None
        if c.loss_recovery == "hours":
            until = now + int(c.loss_recovery_hours * 3_600_000)
        elif c.loss_recovery == "next_day":
            until = self.loss.next_day
        reason = f"{metric} {value * 100:.3g}% reached its limit {limit * 100:g}% (equity {equity:.2f})"
        self.loss.lock = LossLock(metric, reason, now, until, value, limit)
        state = TradingState.HALTED if c.loss_action == "halt" else TradingState.REDUCING
        self._set_state(
            state,
            reason,
            {
                "metric": metric,
                "loss": value,
                "limit": limit,
                "equity": equity,
                "until": until,
                "recovery": c.loss_recovery,
                "halt_kind": "loss_limit",
            },
        )
        if c.loss_flatten and self.kernel.mode == "live":
            self._flatten_pending = True  # awaited in tick(); a backtest has no tick and does not flatten

    def _recover(self, now: int, equity: float, how: str) -> None:
        lock = self.loss.lock
        assert lock is not None
        self.loss.lock = None
        self.loss.rebase(equity, now)
        self._dirty = True
        k = self.kernel
        data = {"event": "loss_recovered", "metric": lock.metric, "how": how, "equity": equity}
        if self._owned_state == (k.trading_state, k.state_reason):
            self._set_state(TradingState.ACTIVE, f"{lock.metric} limit: {how}", data)
        else:  # an operator already changed the state: leave it, just record the recovery
            self._record("risk_state", data)
        self._owned_state = None

    async def _flatten_after_trip(self) -> None:
        """Close every position through the gate (REDUCING), then return to the state the trip set."""
        k = self.kernel
        lock = self.loss.lock
        if lock is None:
            return
        # tick() runs under kernel.lock (the runtime's periodic task holds it): between two events
        final = k.trading_state
        await k.set_trading_state(TradingState.REDUCING, f"flattening: {lock.reason}", source="risk")
        await k.flatten(source="risk")
        await k.set_trading_state(final, lock.reason, source="risk")
        self._owned_state = (k.trading_state, k.state_reason)

    # -- state changes, events and notifications --------------------------------------------------
    def _set_state(self, state: TradingState, reason: str, data: dict[str, Any]) -> None:
        """Change the trading state synchronously (we may be inside on_bar or the gate)."""
        k = self.kernel
        old = k.trading_state
        k.trading_state, k.state_reason = state, reason
        self._owned_state = (state, reason)
        self._dirty = True
        log.warning("trading state %s -> %s: %s", old.value, state.value, reason)
        self._record(
            "risk_state", {"from": old.value, "to": state.value, "reason": reason, "source": "risk", **data}
        )

    def _warn(self, data: dict[str, Any]) -> None:
        self._record("risk_warning", data)

    def _record(self, type_: str, data: dict[str, Any]) -> None:
        k = self.kernel
        k.emit(type_, data)
        now = k.now_ms()
        if k.store is not None and k.mode == "live":
            self._store_events.append((now, type_, data))
        if self.config.notifiers and k.mode == "live":  # a backtest reports through its events, not to chat
            self._spawn(self._notify(Event(type_, now, data)))

    def _spawn(self, coro: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, event: Event) -> None:
        if self._notifiers is None:
            reg = self.kernel.plugins.registry
            self._notifiers = []
            for name in self.config.notifiers:
                try:
                    self._notifiers.append(reg.get("notifier", name).obj({}))
                except Exception:
                    log.exception("notifier %s could not be created", name)
        for n in self._notifiers:
            try:
                await asyncio.wait_for(n.notify(event), timeout=10)
            except Exception:  # a slow or broken notifier never stops the kernel
                log.exception("notifier %s failed", getattr(n, "name", type(n).__name__))


__all__ = ["RiskConfig", "RiskManager", "build_rules", "kelly_fraction", "position_size"]
