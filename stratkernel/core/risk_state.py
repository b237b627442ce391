"""The risk gate's memory: loss-limit baselines and locks, stop-loss cooldowns, order-rate windows.

These objects are plain state with O(1) updates; :class:`stratkernel.core.risk.RiskManager` feeds
them (bars, fills, ticks) and persists their ``to_dict()`` through the kernel's store, and the rules in
:mod:`stratkernel.core.risk_rules` read them on every order. Everything serializes to JSON so a
restart (even after ``kill -9``) resumes with the same peaks, baselines, locks and cooldowns.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .model import Side

LOSS_METRICS = ("daily_loss", "weekly_loss", "drawdown")
WARN_LEVELS = (0.8, 0.9)


def next_day_boundary(now_ms: int, tz: ZoneInfo) -> int:
    """The ms-epoch of the next local midnight in ``tz`` after ``now_ms``."""
    local = datetime.fromtimestamp(now_ms / 1000.0, tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz) + timedelta(days=1)
    return int(midnight.timestamp() * 1000)


def next_week_boundary(now_ms: int, tz: ZoneInfo) -> int:
    """The ms-epoch of the next local Monday 00:00 in ``tz`` after ``now_ms`` (ISO weeks)."""
    local = datetime.fromtimestamp(now_ms / 1000.0, tz)
    monday = datetime(local.year, local.month, local.day, tzinfo=tz) - timedelta(days=local.weekday())
    return int((monday + timedelta(days=7)).timestamp() * 1000)


@dataclass(slots=True)
class LossLock:
    """Why trading was stopped by a loss limit, and when it may recover (``until`` None: operator only)."""

    metric: str
    reason: str
    since: int
    until: int | None
    loss: float
    limit: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "reason": self.reason,
            "since": self.since,
            "until": self.until,
            "loss": self.loss,
            "limit": self.limit,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossLock:
        return cls(
            str(d["metric"]),
            str(d["reason"]),
            int(d["since"]),
            None if d.get("until") is None else int(d["until"]),
            float(d["loss"]),
            float(d["limit"]),
        )


@dataclass(slots=True)
class LossTracker:
    """Daily and weekly loss against their baselines, and drawdown from the equity peak.

    Limits are fractions (0.03 = 3 %); ``None`` disables one. :meth:`observe` is O(1): it rolls the
    day/week baselines when a boundary passes (boundaries are precomputed, so no calendar math per
    bar), raises the peak, and returns what crossed: ``("warn", metric, level, loss)`` once per level
    per period, or ``("trip", metric, 1.0, loss)``.
    """

    tz: ZoneInfo
    daily: float | None = None
    weekly: float | None = None
    drawdown: float | None = None
    day_base: float | None = None
    week_base: float | None = None
    peak: float | None = None
    day_start: int = 0
    next_day: int = 0
    week_start: int = 0
    next_week: int = 0
    warned: dict[str, float] = field(default_factory=dict)
    lock: LossLock | None = None
    # equity above which no new warning or trip is due (recomputed when a baseline, peak or warning
    # changes): the per-bar and per-order check is then a few comparisons
    floor: float = math.inf

    def quiet(self, now_ms: int, equity: float) -> bool:
        """True when nothing can have changed: no boundary passed, no new peak, no level crossed."""
        return (
            self.lock is None
            and now_ms < self.next_day
            and now_ms < self.next_week
            and self.peak is not None
            and equity <= self.peak
            and equity > self.floor
        )

    def update_floor(self) -> None:
        floor = -math.inf
        for metric, limit, base in (
            ("daily_loss", self.daily, self.day_base),
            ("weekly_loss", self.weekly, self.week_base),
            ("drawdown", self.drawdown, self.peak),
        ):
            if limit is None or not base:
                continue
            done = self.warned.get(metric, 0.0)
            level = next((lv for lv in WARN_LEVELS if lv > done), 1.0)
            floor = max(floor, base * (1.0 - limit * level))
        self.floor = floor

    @property
    def enabled(self) -> bool:
        return self.daily is not None or self.weekly is not None or self.drawdown is not None

    def losses(self, equity: float) -> dict[str, float]:
        """Current loss fraction per metric (negative when in profit)."""
        out: dict[str, float] = {}
        if self.day_base:
            out["daily_loss"] = (self.day_base - equity) / self.day_base
        if self.week_base:
            out["weekly_loss"] = (self.week_base - equity) / self.week_base
        if self.peak:
            out["drawdown"] = (self.peak - equity) / self.peak
        return out

    def roll(self, now_ms: int, equity: float) -> bool:
        """Start new day/week periods if a boundary passed (or on first use). True if anything changed."""
        changed = False
        if now_ms >= self.next_day or self.day_base is None:
            self.day_base = equity
            self.day_start = now_ms
            self.next_day = next_day_boundary(now_ms, self.tz)
            self.warned.pop("daily_loss", None)
            changed = True
        if now_ms >= self.next_week or self.week_base is None:
            self.week_base = equity
            self.week_start = now_ms
            self.next_week = next_week_boundary(now_ms, self.tz)
            self.warned.pop("weekly_loss", None)
            changed = True
        if self.peak is None or equity > self.peak:
            self.peak = equity
            self.warned.pop("drawdown", None)
            changed = True
        return changed

    def crossings(self, equity: float) -> list[tuple[str, str, float, float, float]]:
        """(kind, metric, level, loss, limit) for every warning level or limit newly crossed."""
        out: list[tuple[str, str, float, float, float]] = []
        for metric, limit, base in (
            ("daily_loss", self.daily, self.day_base),
            ("weekly_loss", self.weekly, self.week_base),
            ("drawdown", self.drawdown, self.peak),
        ):
            if limit is None or not base:
                continue
            loss = (base - equity) / base
            if loss >= limit:
                out.append(("trip", metric, 1.0, loss, limit))
                continue
            done = self.warned.get(metric, 0.0)
            for level in WARN_LEVELS:
                if loss >= limit * level and done < level:
                    done = level
                    out.append(("warn", metric, level, loss, limit))
            if done:
                self.warned[metric] = done
        return out

    def rebase(self, equity: float, now_ms: int) -> None:
        """After a recovery, measure every metric afresh from the equity trading resumes with."""
        self.day_base = self.week_base = self.peak = equity
        self.warned.clear()
        if not self.next_day:
            self.next_day = next_day_boundary(now_ms, self.tz)
            self.next_week = next_week_boundary(now_ms, self.tz)

    def to_dict(self) -> dict[str, Any]:
        return {
            "day_base": self.day_base,
            "week_base": self.week_base,
            "peak": self.peak,
            "day_start": self.day_start,
            "next_day": self.next_day,
            "week_start": self.week_start,
            "next_week": self.next_week,
            "warned": dict(self.warned),
            "lock": None if self.lock is None else self.lock.to_dict(),
        }

    def load(self, d: dict[str, Any]) -> None:
        for name in ("day_base", "week_base", "peak"):
            v = d.get(name)
            setattr(self, name, None if v is None else float(v))
        for name in ("day_start", "next_day", "week_start", "next_week"):
            setattr(self, name, int(d.get(name) or 0))
        self.warned = {str(k): float(v) for k, v in (d.get("warned") or {}).items()}
        lock = d.get("lock")
        self.lock = None if not lock else LossLock.from_dict(lock)


@dataclass(slots=True)
class SymbolStops:
    last_ts: int = 0
    last_bar: int = -1
    recent: list[int] = field(default_factory=list)  # stop-loss hit times inside the lock window
    locked_until: int = 0


@dataclass(slots=True)
class Cooldowns:
    """Stop-loss hits per symbol, the bar counter that cooldowns in bars are measured with, and locks."""

    window_ms: int = 3_600_000
    by_symbol: dict[str, SymbolStops] = field(default_factory=dict)
    bars: dict[str, int] = field(default_factory=dict)
    global_until: int = 0
    _seen_orders: deque[str] = field(default_factory=lambda: deque(maxlen=256))

    def on_bar(self, symbol: str) -> None:
        self.bars[symbol] = self.bars.get(symbol, 0) + 1

    def on_stop(self, symbol: str, order_id: str, ts: int) -> SymbolStops | None:
        """Record a stop-loss hit (a partially filled stop counts once). Returns the symbol's record."""
        if order_id in self._seen_orders:
            return None
        self._seen_orders.append(order_id)
        st = self.by_symbol.get(symbol)
        if st is None:
            st = self.by_symbol[symbol] = SymbolStops()
        st.last_ts = ts
        st.last_bar = self.bars.get(symbol, 0)
        st.recent = [t for t in st.recent if t > ts - self.window_ms]
        st.recent.append(ts)
        return st

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbols": {
                s: {
                    "last_ts": v.last_ts,
                    "last_bar": v.last_bar,
                    "recent": list(v.recent),
                    "locked_until": v.locked_until,
                }
                for s, v in self.by_symbol.items()
            },
            "bars": dict(self.bars),
            "global_until": self.global_until,
        }

    def load(self, d: dict[str, Any]) -> None:
        self.by_symbol = {
            str(s): SymbolStops(
                int(v.get("last_ts", 0)),
                int(v.get("last_bar", -1)),
                [int(t) for t in v.get("recent", [])],
                int(v.get("locked_until", 0)),
            )
            for s, v in (d.get("symbols") or {}).items()
        }
        self.bars = {str(s): int(n) for s, n in (d.get("bars") or {}).items()}
        self.global_until = int(d.get("global_until") or 0)


class RateWindow:
    """Times of approved orders for one key over the last second and the last minute.

    Two deques pruned from the left, so counting is O(1) amortized however high the caps are.
    """

    __slots__ = ("minute", "second")

    def __init__(self) -> None:
        self.second: deque[int] = deque()
        self.minute: deque[int] = deque()

    def add(self, now_ms: int) -> None:
        self.second.append(now_ms)
        self.minute.append(now_ms)

    def counts(self, now_ms: int) -> tuple[int, int]:
        """(orders in the last second, orders in the last minute), both windows open on the left."""
        s, m = self.second, self.minute
        cut = now_ms - 1000
        while s and s[0] <= cut:
            s.popleft()
        cut = now_ms - 60_000
        while m and m[0] <= cut:
            m.popleft()
        return len(s), len(m)


@dataclass(slots=True)
class RateState:
    """Order-rate windows per strategy/source and in total, and the duplicate-order memory."""

    by_key: dict[str, RateWindow] = field(default_factory=dict)
    total: RateWindow = field(default_factory=RateWindow)
    recent: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def window(self, key: str) -> RateWindow:
        w = self.by_key.get(key)
        if w is None:
            w = self.by_key[key] = RateWindow()
        return w

    def record(self, key: str, fingerprint: tuple[Any, ...] | None, now_ms: int, dup_window_ms: int) -> None:
        w = self.by_key.get(key)
        if w is None:
            w = self.by_key[key] = RateWindow()
        w.second.append(now_ms)
        w.minute.append(now_ms)
        t = self.total
        t.second.append(now_ms)
        t.minute.append(now_ms)
        if fingerprint is not None:
            if len(self.recent) > 4096:  # keep the duplicate memory bounded
                cutoff = now_ms - dup_window_ms
                self.recent = {k: v for k, v in self.recent.items() if v > cutoff}
            self.recent[fingerprint] = now_ms


class PendingOrder:
    """An approved opening order that has not (fully) filled yet."""

    __slots__ = ("buy", "order_id", "price", "remaining", "request", "symbol", "tries")

    def __init__(self, request: Any, price: float) -> None:
        self.request = request
        self.symbol: str = request.symbol
        self.buy: bool = request.side is Side.BUY
        self.remaining: float = request.qty
        self.price = price
        self.order_id: str | None = None
        self.tries = 0


class PendingLedger:
    """Quantities of approved opening orders still working, per symbol and side, and their notional.

    Position and exposure limits add these to the filled position, so two entries sent before either
    fills cannot together pass a limit each would pass alone. Fills decrement an entry as they
    happen (:meth:`filled`); cancelled, rejected or expired orders leave it at the next
    :meth:`prune` (every bar and every live tick). Until then the ledger errs on the cautious side.
    """

    def __init__(self) -> None:
        self.entries: dict[int, PendingOrder] = {}
        self.buy: dict[str, float] = {}
        self.sell: dict[str, float] = {}
        self.notional = 0.0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        """Forget every entry (in place: the gate's rules hold this object)."""
        self.entries.clear()
        self.buy.clear()
        self.sell.clear()
        self.notional = 0.0

    def add(self, request: Any, price: float) -> None:
        e = PendingOrder(request, price)
        self.entries[id(request)] = e
        side = self.buy if e.buy else self.sell
        side[e.symbol] = side.get(e.symbol, 0.0) + e.remaining
        self.notional += e.remaining * price

    def _reduce(self, e: PendingOrder, qty: float) -> None:
        qty = min(qty, e.remaining)
        e.remaining -= qty
        side = self.buy if e.buy else self.sell
        left = side.get(e.symbol, 0.0) - qty
        if left > 1e-12:
            side[e.symbol] = left
        else:
            side.pop(e.symbol, None)
        self.notional = max(0.0, self.notional - qty * e.price)
        if e.remaining <= 1e-12:
            self.entries.pop(id(e.request), None)

    def filled(self, request: Any, qty: float) -> None:
        e = self.entries.get(id(request))
        if e is not None and e.request is request:
            self._reduce(e, qty)

    def pending(self, symbol: str, buy: bool) -> float:
        return (self.buy if buy else self.sell).get(symbol, 0.0)

    def symbols(self) -> set[str]:
        return set(self.buy) | set(self.sell)

    def prune(self, orders: dict[str, Any]) -> None:
        """Drop entries whose order is no longer working (cancelled, rejected, expired, filled).

        ``orders`` is the kernel's order map (insertion-ordered): entries not yet matched to an order id
        are the most recent approvals, so they are found by a short scan from the newest order.
        """
        if not self.entries:
            return
        unresolved = {k: e for k, e in self.entries.items() if e.order_id is None}
        if unresolved:
            budget = len(unresolved) + 256
            for oid, order in reversed(orders.items()):
                e = unresolved.pop(id(order.request), None)
                if e is not None and e.request is order.request:
                    e.order_id = oid
                budget -= 1
                if not unresolved or budget <= 0:
                    break
        for e in list(self.entries.values()):
            if e.order_id is None:
                e.tries += 1
                if e.tries > 3:  # approved but never became a kernel order (e.g. a bare Gateway.decide)
                    self._reduce(e, e.remaining)
                continue
            order = orders.get(e.order_id)
            if order is None:
                self._reduce(e, e.remaining)
            elif not order.status.is_open:
                # a filled order's fills decrement the entry themselves; one prune of grace lets a fill
                # that is still queued land first, then any float remainder goes
                if order.status.value != "filled" or e.tries >= 1:
                    self._reduce(e, e.remaining)
                else:
                    e.tries += 1
