"""Positions, cash and equity, from fills.

The kernel keeps two views: positions per (strategy, symbol), which is what ``ctx.position`` shows,
and the account's net position per symbol. Cash moves with every fill (notional and fees), so
``equity = cash + sum(qty * price)`` holds at any time: a test checks that it adds up.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Account, Fill, Position

_EPS = 1e-12


@dataclass(slots=True)
class _Pos:
    qty: float = 0.0
    avg: float = 0.0
    realized: float = 0.0

    def apply(self, signed_qty: float, price: float) -> float:
        """Apply a fill; return the realized PnL it produced."""
        q = self.qty
        if abs(q) < _EPS or (q > 0) == (signed_qty > 0):
            new = q + signed_qty
            self.avg = (self.avg * abs(q) + price * abs(signed_qty)) / abs(new) if abs(new) > _EPS else 0.0
            self.qty = new
            return 0.0
        closing = min(abs(signed_qty), abs(q))
        pnl = (price - self.avg) * closing * (1.0 if q > 0 else -1.0)
        self.realized += pnl
        new = q + signed_qty
        if abs(new) < _EPS:
            self.qty, self.avg = 0.0, 0.0
        elif (new > 0) != (q > 0):  # flipped: the rest opens at the fill price
            self.qty, self.avg = new, price
        else:
            self.qty = new
        return pnl


class Portfolio:
    def __init__(self, initial_cash: float, currency: str = "USD") -> None:
        self.initial_cash = initial_cash
        self.cash = initial_cash
        self.currency = currency
        self.fees = 0.0
        self.realized = 0.0
        self._net: dict[str, _Pos] = {}
        self._by_strategy: dict[tuple[str, str], _Pos] = {}
        self._marks: dict[str, float] = {}
        # ctx.position is read on every bar: hand out the same immutable object until a fill changes it
        self._pos_cache: dict[tuple[str, str], Position] = {}
        # account() is read by several gate rules per order: recomputed only after a fill or a new mark
        self._account: Account | None = None

    def apply(self, fill: Fill) -> float:
        self._account = None
        signed = fill.signed_qty
        self.cash -= signed * fill.price + fill.fee
        self.fees += fill.fee
        net = self._net.get(fill.symbol)
        if net is None:
            net = self._net[fill.symbol] = _Pos()
        pnl = net.apply(signed, fill.price)
        self.realized += pnl
        key = (fill.strategy, fill.symbol)
        sp = self._by_strategy.get(key)
        if sp is None:
            sp = self._by_strategy[key] = _Pos()
        sp.apply(signed, fill.price)
        self._pos_cache.pop(key, None)
        self._marks[fill.symbol] = fill.price
        return pnl

    def mark(self, symbol: str, price: float) -> None:
        if self._marks.get(symbol) != price:
            self._marks[symbol] = price
            self._account = None

    def position(self, symbol: str) -> Position:
        p = self._net.get(symbol)
        return Position(symbol) if p is None else Position(symbol, p.qty, p.avg, p.realized)

    def strategy_position(self, strategy: str, symbol: str) -> Position:
        key = (strategy, symbol)
        pos = self._pos_cache.get(key)
        if pos is None:
            p = self._by_strategy.get(key)
            pos = (
                Position(symbol, strategy=strategy)
                if p is None
                else Position(symbol, p.qty, p.avg, p.realized, strategy)
            )
            self._pos_cache[key] = pos
        return pos

    def strategy_qty(self, strategy: str, symbol: str) -> float:
        p = self._by_strategy.get((strategy, symbol))
        return 0.0 if p is None else p.qty

    def positions(self) -> list[Position]:
        return [Position(s, p.qty, p.avg, p.realized) for s, p in self._net.items() if abs(p.qty) > _EPS]

    def strategy_positions(self, strategy: str | None = None) -> list[Position]:
        return [
            Position(sym, p.qty, p.avg, p.realized, strat)
            for (strat, sym), p in self._by_strategy.items()
            if (strategy is None or strat == strategy) and abs(p.qty) > _EPS
        ]

    def market_value(self) -> float:
        return sum(p.qty * self._marks.get(s, p.avg) for s, p in self._net.items() if abs(p.qty) > _EPS)

    def gross_exposure(self) -> float:
        return sum(abs(p.qty) * self._marks.get(s, p.avg) for s, p in self._net.items() if abs(p.qty) > _EPS)

    def equity(self) -> float:
        return self.cash + self.market_value()

    def account(self) -> Account:
        acct = self._account
        if acct is None:
            eq = self.equity()
            gross = self.gross_exposure()
            acct = self._account = Account(
                cash=self.cash,
                equity=eq,
                margin_used=gross,
                free_margin=eq - gross,
                currency=self.currency,
                leverage=1.0,
            )
        return acct

    def restore(self, fills: list[Fill]) -> None:
        """Rebuild from the recorded fills (the store's source of truth)."""
        self._account = None
        self.cash = self.initial_cash
        self.fees = self.realized = 0.0
        self._net.clear()
        self._by_strategy.clear()
        self._pos_cache.clear()
        for f in fills:
            self.apply(f)
