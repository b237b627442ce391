"""The broker protocol. Broker plugins implement it; only the kernel ever holds an instance.

A broker reports what happens at the venue through the :class:`BrokerEvents` callbacks it was
constructed with (acknowledgements, fills, cancels, rejections); the kernel turns them into portfolio
updates, store rows and events. Fill ids must be unique and stable per venue: the kernel ignores a
fill id it has already recorded, which is what makes restarts and replays safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .model import Account, Bar, Fill, Order, Position, Quote


@dataclass(frozen=True, slots=True)
class Preflight:
    """Whether the venue allows trading right now (for MT5: the terminal's AutoTrading switch)."""

    trading_allowed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A venue's constraints for one symbol, enforced by the gate before an order is sent."""

    symbol: str
    qty_step: float = 0.0
    min_qty: float = 0.0
    max_qty: float = float("inf")
    price_tick: float = 0.0
    min_notional: float = 0.0
    min_stop_distance: float = 0.0  # absolute price distance (MT5 stops level x point)
    contract_size: float = 1.0
    margin_rate: float = 1.0  # required margin = notional * margin_rate


class BrokerEvents(Protocol):
    def on_order_update(self, order: Order) -> None: ...
    def on_fill(self, fill: Fill) -> None: ...


@runtime_checkable
class Broker(Protocol):
    name: str

    async def connect(self) -> None:
        """Connect and load what the gate needs (symbols, account). Raise BrokerConnectionError."""

    async def close(self) -> None: ...

    async def submit(self, order: Order) -> None:
        """Send an approved order. ``order.id`` is the client order id: sending the same id twice
        must not create two orders at the venue. Report acks/fills through BrokerEvents."""

    async def cancel(self, order_id: str) -> None: ...

    async def positions(self) -> list[Position]:
        """Every open position at the venue, including ones the kernel did not open."""

    async def open_orders(self) -> list[Order]: ...

    async def account(self) -> Account: ...

    async def preflight(self) -> Preflight: ...

    def symbol_spec(self, symbol: str) -> SymbolSpec | None: ...


class SimulatedBroker(Broker, Protocol):
    """A broker that fills against the kernel's own market data (backtests, paper trading)."""

    def on_market(self, data: Bar | Quote) -> None:
        """Called with every bar/quote *before* strategies see it, so orders placed on bar N
        fill on bar N+1 at the earliest."""

    def restore(self, positions: list[Position], orders: list[Order], cash: float) -> None:
        """Adopt the kernel's restored view after a restart."""
