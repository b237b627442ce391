"""Built-in ccxt plugin: the ``ccxt`` broker, the ``ccxt`` data source and ``ccxt:`` data URIs.

See docs/ccxt.md for configuration (credentials come from STRATKERNEL_CCXT_API_KEY and
STRATKERNEL_CCXT_SECRET) and :mod:`stratkernel.testing.exchange_emulator` for testing against a local
Binance-spot emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stratkernel.core.broker import BrokerEvents
from stratkernel.core.hookspecs import hookimpl

from .broker import CcxtBroker, venue_client_id
from .data import CcxtDataSource, Gap, OhlcvCache, parse_uri
from .exchange import ENV_API_KEY, ENV_PASSWORD, ENV_SECRET, Backoff, make_exchange

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
    return CcxtBroker(config, events)


def _data_factory(options: dict[str, Any]) -> CcxtDataSource:
    return CcxtDataSource(options)


@hookimpl
def register_brokers(register: Callable[..., None]) -> None:
    register("ccxt", _broker_factory,
             description="Spot trading on any ccxt exchange (websocket order status where ccxt.pro has it)")


@hookimpl
def register_data_sources(register: Callable[..., None]) -> None:
    register("ccxt", _data_factory,
             description="OHLCV history with a local SQLite cache and live bars/quotes via ccxt.pro")


@hookimpl
def resolve_data_source(uri: str) -> tuple[str, dict[str, Any]] | None:
    return parse_uri(uri)
