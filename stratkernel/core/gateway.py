"""The order gateway: the one path from an order request to a broker.

Every request, from a trusted strategy, a sandboxed script, the API or the CLI, goes through
:meth:`Gateway.decide`. The gate runs its rules in stage order (validation → state → order →
portfolio → loss); the first rule that objects produces a denial :class:`Decision` with a reason code.
Denials are values: they are audited and returned, never raised and never dropped.

Approval mints a *ticket*. The kernel keeps the broker behind :class:`GatedBroker`, which submits an
order only with the ticket the gate issued for exactly that order id. So even code that somehow got
hold of the gated broker cannot send an order the gate did not approve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import BrokerError
from .model import Account, Decision, Order, OrderRequest, Position, Side, TradingState

if TYPE_CHECKING:
    from .broker import Broker, SymbolSpec

STAGES = ("validation", "state", "order", "portfolio", "loss")


class GateView(Protocol):
    """What rules may read. Implemented by the kernel; everything is read-only and cheap."""

    trading_state: TradingState

    def now_ms(self) -> int: ...
    def last_price(self, symbol: str) -> float | None: ...
    def last_quote_ms(self, symbol: str) -> int | None: ...
    def position(self, symbol: str) -> Position: ...
    def strategy_position(self, strategy: str, symbol: str) -> Position: ...
    def account(self) -> Account: ...
    def broker_open_positions(self) -> int: ...
    def symbol_spec(self, symbol: str) -> SymbolSpec | None: ...
    def known_symbol(self, symbol: str) -> bool: ...
    def indicator_value(self, symbol: str, name: str, *args: Any) -> float | None: ...


class Rule(Protocol):
    name: str
    stage: str

    def check(self, req: OrderRequest, view: GateView) -> Decision | None: ...


def deny(req: OrderRequest, rule: str, code: str, message: str, **details: Any) -> Decision:
    return Decision(False, code, message, req, rule, details)


def reduces_position(req: OrderRequest, pos: Position) -> bool:
    """True when the order only shrinks the position (never flips it or opens a new one)."""
    if pos.is_flat:
        return False
    if (pos.qty > 0 and req.side is Side.SELL) or (pos.qty < 0 and req.side is Side.BUY):
        return req.qty <= abs(pos.qty) + 1e-12
    return False


@dataclass(frozen=True, slots=True)
class GateStats:
    approved: int
    denied: int
    by_code: dict[str, int]


@dataclass(slots=True)
class _Ticket:
    order_id: str
    request: OrderRequest


class Gateway:
    """Runs the rules in order; approves by minting a ticket, denies with a reason code."""

    def __init__(
        self,
        rules: list[Rule],
        view: GateView,
        *,
        audit: Callable[[Decision], None] | None = None,
        enabled: bool = True,
    ) -> None:
        unknown = [r.name for r in rules if r.stage not in STAGES]
        if unknown:
            raise ValueError(f"rules with unknown stage: {unknown}")
        # stable sort: stage order first, registration order within a stage
        self.rules = sorted(rules, key=lambda r: STAGES.index(r.stage))
        self.view = view
        self.audit = audit
        self.enabled = enabled
        self._tickets: dict[str, _Ticket] = {}
        self._approved = 0
        self._denied = 0
        self._by_code: dict[str, int] = {}

    def decide(self, req: OrderRequest, order_id: str) -> Decision:
        decision: Decision | None = None
        if self.enabled:
            view = self.view
            for rule in self.rules:
                decision = rule.check(req, view)
                if decision is not None:
                    if decision.approved:
                        # a rule may amend the request (e.g. attach a default stop) and let it go on
                        req = decision.request
                        decision = None
                        continue
                    break
        if decision is None:
            decision = Decision(True, "ok", "approved", req, "", {}, order_id)
            self._tickets[order_id] = _Ticket(order_id, req)
            self._approved += 1
        else:
            self._denied += 1
            self._by_code[decision.code] = self._by_code.get(decision.code, 0) + 1
        if self.audit is not None:
            self.audit(decision)
        return decision

    def redeem(self, order: Order) -> None:
        """Consume the ticket for ``order``; raise if the gate never approved exactly this order."""
        ticket = self._tickets.pop(order.id, None)
        if ticket is None or ticket.request is not order.request:
            raise BrokerError(f"order {order.id} was not approved by the risk gate; refusing to submit")

    def stats(self) -> GateStats:
        return GateStats(self._approved, self._denied, dict(self._by_code))


class GatedBroker:
    """The only object in the process that can reach a broker's ``submit``.

    The raw broker lives in a closure, not an attribute, so it isn't reachable by walking attributes;
    ``submit`` works only for an order the gateway approved (its ticket is redeemed once).
    """

    def __init__(self, broker: Broker, gateway: Gateway) -> None:
        def _submit(order: Order) -> Any:
            gateway.redeem(order)
            return broker.submit(order)

        def _get() -> Broker:
            return broker

        self.submit = _submit
        self._get = _get
        self.name = broker.name
        self.simulated = hasattr(broker, "on_market")

    async def cancel(self, order_id: str) -> None:
        await self._get().cancel(order_id)

    async def connect(self) -> None:
        await self._get().connect()

    async def close(self) -> None:
        await self._get().close()

    async def positions(self) -> list[Position]:
        return await self._get().positions()

    async def open_orders(self) -> list[Order]:
        return await self._get().open_orders()

    async def account(self) -> Account:
        return await self._get().account()

    async def preflight(self) -> Any:
        return await self._get().preflight()

    def symbol_spec(self, symbol: str) -> SymbolSpec | None:
        return self._get().symbol_spec(symbol)

    def on_market(self, data: Any) -> None:
        self._get().on_market(data)  # type: ignore[attr-defined]

    async def reconcile(self, orders: list[Order]) -> bool:
        """Let a real broker bring the kernel's restored open orders up to date (fills while we were
        down come back through BrokerEvents). Returns False if the broker has no such capability."""
        fn = getattr(self._get(), "reconcile", None)
        if fn is None:
            return False
        await fn(orders)
        return True

    def working_triggers(self, strategy: str) -> list[Any] | None:
        b = self._get()
        fn = getattr(b, "working_triggers", None)
        return None if fn is None else fn(strategy)

    def restore(self, positions: list[Position], orders: list[Order], cash: float) -> None:
        b = self._get()
        if hasattr(b, "restore"):
            b.restore(positions, orders, cash)


# -- the trading-state rule lives with the gate; every other rule is in risk_rules.py ------------


@dataclass
class TradingStateRule:
    """HALTED: nothing new passes. REDUCING: only orders that shrink a position pass."""

    name: str = "trading_state"
    stage: str = "state"

    def check(self, req: OrderRequest, view: GateView) -> Decision | None:
        state = view.trading_state
        if state is TradingState.ACTIVE:
            return None
        if state is TradingState.HALTED:
            return deny(req, self.name, "halted", "trading is halted: no new orders", state=state.value)
        pos = view.strategy_position(req.strategy, req.symbol) if req.strategy else view.position(req.symbol)
        if reduces_position(req, pos):
            return None
        return deny(
            req,
            self.name,
            "reducing_only",
            "trading state is REDUCING: only position-reducing orders pass",
            state=state.value,
            position=pos.qty,
        )
