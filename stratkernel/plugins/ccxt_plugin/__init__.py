"""Built-in ccxt plugin: the ``ccxt`` broker, the ``ccxt`` data source and ``ccxt:`` data URIs.

See docs/ccxt.md for configuration (credentials come from STRATKERNEL_CCXT_API_KEY and
STRATKERNEL_CCXT_SECRET) and :mod:`stratkernel.testing.exchange_emulator` for testing against a local
Binance-spot emulator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stratkernel.core.broker import BrokerEvents
from stratkernel.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .broker import CcxtBroker, venue_client_id
    from .data import CcxtDataSource, Gap, OhlcvCache, parse_uri
    from .exchange import ENV_API_KEY, ENV_PASSWORD, ENV_SECRET, Backoff, make_exchange

# ccxt takes ~0.9 s to import. Every stratkernel command loads every plugin, so the heavy modules are
# imported on first use (a ccxt broker, data source or URI), not when the plugin registers.
_LAZY = {
    "CcxtBroker": "broker", "venue_client_id": "broker",
    "CcxtDataSource": "data", "Gap": "data", "OhlcvCache": "data", "parse_uri": "data",
    "ENV_API_KEY": "exchange", "ENV_PASSWORD": "exchange", "ENV_SECRET": "exchange", "Backoff": "exchange",
    "make_exchange": "exchange",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "ENV_API_KEY",
    "ENV_PASSWORD",
    "ENV_SECRET",
    "Backoff",
    "CcxtBroker",
    "CcxtDataSource",
    "Gap",
    "OhlcvCache",
    "make_exchange",
    "parse_uri",
    "venue_client_id",
]


def _broker_factory(config: dict[str, Any], events: BrokerEvents) -> CcxtBroker:
    from .broker import CcxtBroker

    return CcxtBroker(config, events)


def _data_factory(options: dict[str, Any]) -> CcxtDataSource:
    from .data import CcxtDataSource

    return CcxtDataSource(options)


@hookimpl
def register_brokers(register: Callable[..., None]) -> None:
    register(
        "ccxt",
        _broker_factory,
        description="Spot trading on any ccxt exchange (websocket order status where ccxt.pro has it)",
    )


@hookimpl
def register_data_sources(register: Callable[..., None]) -> None:
    register(
        "ccxt",
        _data_factory,
        description="OHLCV history with a local SQLite cache and live bars/quotes via ccxt.pro",
    )


@hookimpl
def resolve_data_source(uri: str) -> tuple[str, dict[str, Any]] | None:
    if not uri.startswith("ccxt:"):
        return None
    from .data import parse_uri

    return parse_uri(uri)
