"""stratkernel: a plugin-based trading strategy runtime.

The public SDK for plugin and strategy authors. Import from here, never from pluggy::

    from stratkernel import hookimpl, Strategy, Bar, IndicatorSpec
"""

from .core.broker import Broker, BrokerEvents, Preflight, SimulatedBroker, SymbolSpec
from .core.data import BarSeries, DataSource
from .core.errors import (
    AuthError,
    BrokerConnectionError,
    BrokerError,
    ConfigError,
    DuplicateNameError,
    OrderRejectedError,
    PluginError,
    StoreError,
    StrategyError,
    StratkernelError,
    ValidationError,
)
from .core.events import Event
from .core.hookspecs import hookimpl
from .core.indicators import IndicatorSpec
from .core.model import (
    Account,
    Bar,
    Decision,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
    TradingState,
)
from .core.strategy import STRATEGY_API_VERSION, Context, Param, Strategy

__version__ = "0.1.0"

__all__ = [
    "STRATEGY_API_VERSION",
    "Account",
    "AuthError",
    "Bar",
    "BarSeries",
    "Broker",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerEvents",
    "ConfigError",
    "Context",
    "DataSource",
    "Decision",
    "DuplicateNameError",
    "Event",
    "Fill",
    "IndicatorSpec",
    "Order",
    "OrderRejectedError",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "Param",
    "PluginError",
    "Position",
    "Preflight",
    "Quote",
    "Side",
    "SimulatedBroker",
    "StoreError",
    "Strategy",
    "StrategyError",
    "StratkernelError",
    "SymbolSpec",
    "TradingState",
    "ValidationError",
    "__version__",
    "hookimpl",
]
