"""A faithful, stateful stand-in for the Windows-only ``MetaTrader5`` Python package.

The real package talks over IPC to a running MetaTrader 5 terminal and only installs on Windows. This
double lets the MT5 plugin (and anyone writing against the MT5 API) be tested on Linux against the same
surface:

* the same function names and call signatures (``initialize``, ``login``, ``order_check``,
  ``order_send``, ``copy_rates_range``, ``positions_get`` ...);
* the same result shapes: named tuples with the real field names in the real order (``TerminalInfo``,
  ``AccountInfo``, ``SymbolInfo``, ``Tick``, ``TradePosition``, ``TradeOrder``, ``TradeDeal``,
  ``TradeRequest``, ``OrderCheckResult``, ``OrderSendResult``), numpy structured arrays with the real
  dtypes for rates and ticks, ``None`` plus ``last_error()`` on failure;
* the same constants, names and values (checked against the real wheel by
  ``tests/plugins/test_mt5_double_conformance.py``);
* trading state that behaves like a terminal attached to a trade server: netting or hedging accounts,
  market and pending orders, stop-loss / take-profit, pending orders triggering on price moves, deals,
  balance / equity / margin, symbol constraints (volume min/step/max, stops level, filling modes,
  trade mode, sessions) producing the server's retcodes, the terminal's AutoTrading switch (retcode
  10027), manual positions (magic 0), and a terminal that can die and come back (IPC errors).

Everything that is *not* part of the real API is a ``sim_*`` method or attribute: that is how a test
plays the market, the broker and the person at the terminal::

    mt5 = MetaTrader5Double()
    mt5.sim_add_symbol("EURUSD", bid=1.1000, ask=1.1002)
    mt5.initialize(); mt5.login(1234, password="pw", server="Demo")
    mt5.sim_set_price("EURUSD", bid=1.1050)       # moves the market; pending orders and SL/TP react
    mt5.sim_set_autotrading(False)                # the user pressed the AutoTrading button
    mt5.sim_kill_terminal()                       # the terminal process died

Known simplifications (documented in docs/mt5.md): one account currency, profit = price difference x
tick value / tick size, margin = volume x contract size x price / leverage (x margin rate for CFDs),
no hedged-margin relief, no commissions, swaps or stop-outs, a one-level order book
(``market_book_get``), M1 bars built from the ticks a test sets (or loads) and aggregated upwards.
"""

from __future__ import annotations

import calendar
import fnmatch
import math
from collections import namedtuple
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = [
    "RATES_DTYPE",
    "TICKS_DTYPE",
    "AccountInfo",
    "BookInfo",
    "MetaTrader5Double",
    "OrderCheckResult",
    "OrderSendResult",
    "SymbolInfo",
    "TerminalInfo",
    "Tick",
    "TradeDeal",
    "TradeOrder",
    "TradePosition",
    "TradeRequest",
]

# -- result types: field names and order as the real package returns them ------------------------------
TerminalInfo = namedtuple(
    "TerminalInfo",
    "community_account community_connection connected dlls_allowed trade_allowed tradeapi_disabled "
    "email_enabled ftp_enabled notifications_enabled mqid build maxbars codepage ping_last "
    "community_balance retransmission company name language path data_path commondata_path",
)
AccountInfo = namedtuple(
    "AccountInfo",
    "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert margin_mode "
    "currency_digits fifo_close balance credit profit equity margin margin_free margin_level "
    "margin_so_call margin_so_so margin_initial margin_maintenance assets liabilities commission_blocked "
    "name server currency company",
)
SymbolInfo = namedtuple(
    "SymbolInfo",
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders volume "
    "volumehigh volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode trade_mode "
    "start_time expiration_time trade_stops_level trade_freeze_level trade_exemode swap_mode "
    "swap_rollover3days margin_hedged_use_leg expiration_mode filling_mode order_mode order_gtc_mode "
    "option_mode option_right bid bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real "
    "volumehigh_real volumelow_real option_strike point trade_tick_value trade_tick_value_profit "
    "trade_tick_value_loss trade_tick_size trade_contract_size trade_accrued_interest trade_face_value "
    "trade_liquidity_rate volume_min volume_max volume_step volume_limit swap_long swap_short "
    "margin_initial margin_maintenance session_volume session_turnover session_interest "
    "session_buy_orders_volume session_sell_orders_volume session_open session_close session_aw "
    "session_price_settlement session_price_limit_min session_price_limit_max margin_hedged "
    "price_change price_volatility price_theoretical price_greeks_delta price_greeks_theta "
    "price_greeks_gamma price_greeks_vega price_greeks_rho price_greeks_omega price_sensitivity basis "
    "category currency_base currency_profit currency_margin bank description exchange formula isin "
    "name page path",
)
Tick = namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
TradePosition = namedtuple(
    "TradePosition",
    "ticket time time_msc time_update time_update_msc type magic identifier reason volume price_open "
    "sl tp price_current swap profit symbol comment external_id",
)
TradeOrder = namedtuple(
    "TradeOrder",
    "ticket time_setup time_setup_msc time_done time_done_msc time_expiration type type_time "
    "type_filling state magic position_id position_by_id reason volume_initial volume_current "
    "price_open sl tp price_current price_stoplimit symbol comment external_id",
)
TradeDeal = namedtuple(
    "TradeDeal",
    "ticket order time time_msc type entry magic position_id reason volume price commission swap "
    "profit fee symbol comment external_id",
)
TradeRequest = namedtuple(
    "TradeRequest",
    "action magic order symbol volume price stoplimit sl tp deviation type type_filling type_time "
    "expiration comment position position_by",
)
OrderCheckResult = namedtuple(
    "OrderCheckResult",
    "retcode balance equity profit margin margin_free margin_level comment request",
)
OrderSendResult = namedtuple(
    "OrderSendResult",
    "retcode deal order volume price bid ask comment request_id retcode_external request",
)

BookInfo = namedtuple("BookInfo", "type price volume volume_dbl")

RATES_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)
TICKS_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)

# last_error() texts, as the real _core module reports them.
_ERROR_TEXT = {
    1: "Success",
    -1: "Terminal: Call failed",
    -2: "Terminal: Invalid params",
    -3: "Terminal: Out of memory",
    -4: "Terminal: Not found",
    -5: "Terminal: Incompatible versions, please install the latest version of Terminal and Python module",
    -6: "Terminal: Authorization failed",
    -7: "Terminal: Unsupported function",
    -8: "Auto-Trading using Python API disabled in Terminal",
    -10000: "IPC call failed",
    -10001: "IPC send failed",
    -10002: "IPC recv failed",
    -10003: "IPC initialize failed, MetaTrader 5 x64 not found",
    -10004: "No IPC connection",
    -10005: "IPC timeout",
}

# Trade server comments that accompany each retcode in OrderSendResult / OrderCheckResult.
_RETCODE_COMMENT = {
    0: "Done",
    10004: "Requote",
    10006: "Request rejected",
    10008: "Order placed",
    10009: "Request executed",
    10013: "Invalid request",
    10014: "Invalid volume",
    10015: "Invalid price",
    10016: "Invalid stops",
    10017: "Trade disabled",
    10018: "Market closed",
    10019: "No money",
    10021: "No prices",
    10022: "Invalid expiration",
    10026: "AutoTrading disabled by server",
    10027: "AutoTrading disabled by client",
    10030: "Unsupported filling mode",
    10031: "No connection with the trade server",
    10036: "Position already closed",
    10038: "Invalid close volume",
    10042: "Only long positions are allowed",
    10043: "Only short positions are allowed",
    10044: "Only position closing is allowed",
}

# SYMBOL_FILLING_* are MQL5 flags (SymbolInfo.filling_mode bits); the Python module does not export them.
_FILL_FLAG_FOK = 1
_FILL_FLAG_IOC = 2
_FILL_FLAG_BOC = 4

_REQUEST_DEFAULTS: dict[str, Any] = {
    "action": 0,
    "magic": 0,
    "order": 0,
    "symbol": "",
    "volume": 0.0,
    "price": 0.0,
    "stoplimit": 0.0,
    "sl": 0.0,
    "tp": 0.0,
    "deviation": 0,
    "type": 0,
    "type_filling": 0,
    "type_time": 0,
    "expiration": 0,
    "comment": "",
    "position": 0,
    "position_by": 0,
}
_INT_FIELDS = ("action", "magic", "order", "deviation", "type", "type_filling", "type_time", "expiration",
               "position", "position_by")  # fmt: skip
_FLOAT_FIELDS = ("volume", "price", "stoplimit", "sl", "tp")
MAX_COMMENT = 31  # MqlTradeRequest.comment is a 32-byte buffer


class _Refused(Exception):
    """Internal: a request is refused with a trade-server retcode."""

    def __init__(self, retcode: int, comment: str = "") -> None:
        self.retcode = retcode
        self.comment = comment or _RETCODE_COMMENT.get(retcode, "Request rejected")
        super().__init__(f"{retcode} {self.comment}")


class _CallFailed(Exception):
    """Internal: the call returns None and sets last_error."""

    def __init__(self, code: int, text: str | None = None) -> None:
        self.code = code
        self.text = text or _ERROR_TEXT.get(code, "Terminal: Call failed")
        super().__init__(self.text)


@dataclass
class _Symbol:
    name: str
    bid: float
    ask: float
    digits: int = 5
    point: float = 0.00001
    trade_tick_size: float = 0.00001
    trade_tick_value: float = 1.0
    trade_contract_size: float = 100000.0
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    volume_limit: float = 0.0
    trade_stops_level: int = 0
    trade_freeze_level: int = 0
    filling_mode: int = _FILL_FLAG_FOK | _FILL_FLAG_IOC
    trade_exemode: int = 2  # SYMBOL_TRADE_EXECUTION_MARKET
    trade_mode: int = 4  # SYMBOL_TRADE_MODE_FULL
    trade_calc_mode: int = 0  # SYMBOL_CALC_MODE_FOREX
    margin_rate: float = 1.0
    currency_base: str = "EUR"
    currency_profit: str = "USD"
    currency_margin: str = "EUR"
    description: str = ""
    path: str = ""
    select: bool = True
    visible: bool = True
    session_open: bool = True
    book_volume: float = 10.0  # lots offered at the top of the book on each side
    liquidity: float = math.inf  # lots one market order can get: FOK refuses more, IOC fills part
    last: float = 0.0
    time_msc: int = 0
    # M1 bars: time -> [open, high, low, close, tick_volume, spread, real_volume]
    m1: dict[int, list[float]] = field(default_factory=dict)
    ticks: list[tuple[int, float, float, float, int, int, int, float]] = field(default_factory=list)


@dataclass
class _Position:
    ticket: int
    symbol: str
    type: int  # POSITION_TYPE_BUY / SELL
    volume: float
    price_open: float
    time_msc: int
    time_update_msc: int
    magic: int
    reason: int
    sl: float = 0.0
    tp: float = 0.0
    comment: str = ""
    identifier: int = 0


@dataclass
class _Order:
    ticket: int
    symbol: str
    type: int
    volume_initial: float
    volume_current: float
    price_open: float
    time_setup_msc: int
    magic: int
    reason: int
    state: int
    type_time: int = 0
    type_filling: int = 2
    time_expiration: int = 0
    time_done_msc: int = 0
    position_id: int = 0
    position_by_id: int = 0
    sl: float = 0.0
    tp: float = 0.0
    price_stoplimit: float = 0.0
    comment: str = ""


@dataclass
class _Deal:
    ticket: int
    order: int
    time_msc: int
    type: int
    entry: int
    magic: int
    position_id: int
    reason: int
    volume: float
    price: float
    profit: float
    symbol: str
    comment: str
    commission: float = 0.0
    swap: float = 0.0
    fee: float = 0.0


def _seconds(value: Any, name: str) -> int:
    """MT5 date arguments: a datetime (aware, or naive meaning UTC) or integer seconds since the epoch."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return calendar.timegm(value.timetuple())
        return int(value.timestamp())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _CallFailed(-2, f'Invalid "{name}" argument')


def _is_multiple(value: float, step: float) -> bool:
    if step <= 0:
        return True
    n = value / step
    return abs(n - round(n)) < 1e-7


class MetaTrader5Double:
    """One terminal with one trade account. An instance is used like the ``MetaTrader5`` module."""

    __version__ = "5.0.6231"
    __author__ = "MetaQuotes Ltd."

    # -- constants: the exact names and values of MetaTrader5/__init__.py (5.0.6231) -----------------
    TIMEFRAME_M1 = 1
    TIMEFRAME_M2 = 2
    TIMEFRAME_M3 = 3
    TIMEFRAME_M4 = 4
    TIMEFRAME_M5 = 5
    TIMEFRAME_M6 = 6
    TIMEFRAME_M10 = 10
    TIMEFRAME_M12 = 12
    TIMEFRAME_M15 = 15
    TIMEFRAME_M20 = 20
    TIMEFRAME_M30 = 30
    TIMEFRAME_H1 = 16385
    TIMEFRAME_H2 = 16386
    TIMEFRAME_H4 = 16388
    TIMEFRAME_H3 = 16387
    TIMEFRAME_H6 = 16390
    TIMEFRAME_H8 = 16392
    TIMEFRAME_H12 = 16396
    TIMEFRAME_D1 = 16408
    TIMEFRAME_W1 = 32769
    TIMEFRAME_MN1 = 49153
    COPY_TICKS_ALL = -1
    COPY_TICKS_INFO = 1
    COPY_TICKS_TRADE = 2
    TICK_FLAG_BID = 2
    TICK_FLAG_ASK = 4
    TICK_FLAG_LAST = 8
    TICK_FLAG_VOLUME = 16
    TICK_FLAG_BUY = 32
    TICK_FLAG_SELL = 64
    POSITION_TYPE_BUY = 0
    POSITION_TYPE_SELL = 1
    POSITION_REASON_CLIENT = 0
    POSITION_REASON_MOBILE = 1
    POSITION_REASON_WEB = 2
    POSITION_REASON_EXPERT = 3
    ORDER_TYPE_BUY = 0
    ORDER_TYPE_SELL = 1
    ORDER_TYPE_BUY_LIMIT = 2
    ORDER_TYPE_SELL_LIMIT = 3
    ORDER_TYPE_BUY_STOP = 4
    ORDER_TYPE_SELL_STOP = 5
    ORDER_TYPE_BUY_STOP_LIMIT = 6
    ORDER_TYPE_SELL_STOP_LIMIT = 7
    ORDER_TYPE_CLOSE_BY = 8
    ORDER_STATE_STARTED = 0
    ORDER_STATE_PLACED = 1
    ORDER_STATE_CANCELED = 2
    ORDER_STATE_PARTIAL = 3
    ORDER_STATE_FILLED = 4
    ORDER_STATE_REJECTED = 5
    ORDER_STATE_EXPIRED = 6
    ORDER_STATE_REQUEST_ADD = 7
    ORDER_STATE_REQUEST_MODIFY = 8
    ORDER_STATE_REQUEST_CANCEL = 9
    ORDER_FILLING_FOK = 0
    ORDER_FILLING_IOC = 1
    ORDER_FILLING_RETURN = 2
    ORDER_FILLING_BOC = 3
    ORDER_TIME_GTC = 0
    ORDER_TIME_DAY = 1
    ORDER_TIME_SPECIFIED = 2
    ORDER_TIME_SPECIFIED_DAY = 3
    ORDER_REASON_CLIENT = 0
    ORDER_REASON_MOBILE = 1
    ORDER_REASON_WEB = 2
    ORDER_REASON_EXPERT = 3
    ORDER_REASON_SL = 4
    ORDER_REASON_TP = 5
    ORDER_REASON_SO = 6
    DEAL_TYPE_BUY = 0
    DEAL_TYPE_SELL = 1
    DEAL_TYPE_BALANCE = 2
    DEAL_TYPE_CREDIT = 3
    DEAL_TYPE_CHARGE = 4
    DEAL_TYPE_CORRECTION = 5
    DEAL_TYPE_BONUS = 6
    DEAL_TYPE_COMMISSION = 7
    DEAL_TYPE_COMMISSION_DAILY = 8
    DEAL_TYPE_COMMISSION_MONTHLY = 9
    DEAL_TYPE_COMMISSION_AGENT_DAILY = 10
    DEAL_TYPE_COMMISSION_AGENT_MONTHLY = 11
    DEAL_TYPE_INTEREST = 12
    DEAL_TYPE_BUY_CANCELED = 13
    DEAL_TYPE_SELL_CANCELED = 14
    DEAL_DIVIDEND = 15
    DEAL_DIVIDEND_FRANKED = 16
    DEAL_TAX = 17
    DEAL_ENTRY_IN = 0
    DEAL_ENTRY_OUT = 1
    DEAL_ENTRY_INOUT = 2
    DEAL_ENTRY_OUT_BY = 3
    DEAL_REASON_CLIENT = 0
    DEAL_REASON_MOBILE = 1
    DEAL_REASON_WEB = 2
    DEAL_REASON_EXPERT = 3
    DEAL_REASON_SL = 4
    DEAL_REASON_TP = 5
    DEAL_REASON_SO = 6
    DEAL_REASON_ROLLOVER = 7
    DEAL_REASON_VMARGIN = 8
    DEAL_REASON_SPLIT = 9
    TRADE_ACTION_DEAL = 1
    TRADE_ACTION_PENDING = 5
    TRADE_ACTION_SLTP = 6
    TRADE_ACTION_MODIFY = 7
    TRADE_ACTION_REMOVE = 8
    TRADE_ACTION_CLOSE_BY = 10
    SYMBOL_CHART_MODE_BID = 0
    SYMBOL_CHART_MODE_LAST = 1
    SYMBOL_CALC_MODE_FOREX = 0
    SYMBOL_CALC_MODE_FUTURES = 1
    SYMBOL_CALC_MODE_CFD = 2
    SYMBOL_CALC_MODE_CFDINDEX = 3
    SYMBOL_CALC_MODE_CFDLEVERAGE = 4
    SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE = 5
    SYMBOL_CALC_MODE_EXCH_STOCKS = 32
    SYMBOL_CALC_MODE_EXCH_FUTURES = 33
    SYMBOL_CALC_MODE_EXCH_OPTIONS = 34
    SYMBOL_CALC_MODE_EXCH_OPTIONS_MARGIN = 36
    SYMBOL_CALC_MODE_EXCH_BONDS = 37
    SYMBOL_CALC_MODE_EXCH_STOCKS_MOEX = 38
    SYMBOL_CALC_MODE_EXCH_BONDS_MOEX = 39
    SYMBOL_CALC_MODE_SERV_COLLATERAL = 64
    SYMBOL_TRADE_MODE_DISABLED = 0
    SYMBOL_TRADE_MODE_LONGONLY = 1
    SYMBOL_TRADE_MODE_SHORTONLY = 2
    SYMBOL_TRADE_MODE_CLOSEONLY = 3
    SYMBOL_TRADE_MODE_FULL = 4
    SYMBOL_TRADE_EXECUTION_REQUEST = 0
    SYMBOL_TRADE_EXECUTION_INSTANT = 1
    SYMBOL_TRADE_EXECUTION_MARKET = 2
    SYMBOL_TRADE_EXECUTION_EXCHANGE = 3
    SYMBOL_SWAP_MODE_DISABLED = 0
    SYMBOL_SWAP_MODE_POINTS = 1
    SYMBOL_SWAP_MODE_CURRENCY_SYMBOL = 2
    SYMBOL_SWAP_MODE_CURRENCY_MARGIN = 3
    SYMBOL_SWAP_MODE_CURRENCY_DEPOSIT = 4
    SYMBOL_SWAP_MODE_INTEREST_CURRENT = 5
    SYMBOL_SWAP_MODE_INTEREST_OPEN = 6
    SYMBOL_SWAP_MODE_REOPEN_CURRENT = 7
    SYMBOL_SWAP_MODE_REOPEN_BID = 8
    DAY_OF_WEEK_SUNDAY = 0
    DAY_OF_WEEK_MONDAY = 1
    DAY_OF_WEEK_TUESDAY = 2
    DAY_OF_WEEK_WEDNESDAY = 3
    DAY_OF_WEEK_THURSDAY = 4
    DAY_OF_WEEK_FRIDAY = 5
    DAY_OF_WEEK_SATURDAY = 6
    SYMBOL_ORDERS_GTC = 0
    SYMBOL_ORDERS_DAILY = 1
    SYMBOL_ORDERS_DAILY_NO_STOPS = 2
    SYMBOL_OPTION_RIGHT_CALL = 0
    SYMBOL_OPTION_RIGHT_PUT = 1
    SYMBOL_OPTION_MODE_EUROPEAN = 0
    SYMBOL_OPTION_MODE_AMERICAN = 1
    ACCOUNT_TRADE_MODE_DEMO = 0
    ACCOUNT_TRADE_MODE_CONTEST = 1
    ACCOUNT_TRADE_MODE_REAL = 2
    ACCOUNT_STOPOUT_MODE_PERCENT = 0
    ACCOUNT_STOPOUT_MODE_MONEY = 1
    ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
    ACCOUNT_MARGIN_MODE_EXCHANGE = 1
    ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
    BOOK_TYPE_SELL = 1
    BOOK_TYPE_BUY = 2
    BOOK_TYPE_SELL_MARKET = 3
    BOOK_TYPE_BUY_MARKET = 4
    TRADE_RETCODE_REQUOTE = 10004
    TRADE_RETCODE_REJECT = 10006
    TRADE_RETCODE_CANCEL = 10007
    TRADE_RETCODE_PLACED = 10008
    TRADE_RETCODE_DONE = 10009
    TRADE_RETCODE_DONE_PARTIAL = 10010
    TRADE_RETCODE_ERROR = 10011
    TRADE_RETCODE_TIMEOUT = 10012
    TRADE_RETCODE_INVALID = 10013
    TRADE_RETCODE_INVALID_VOLUME = 10014
    TRADE_RETCODE_INVALID_PRICE = 10015
    TRADE_RETCODE_INVALID_STOPS = 10016
    TRADE_RETCODE_TRADE_DISABLED = 10017
    TRADE_RETCODE_MARKET_CLOSED = 10018
    TRADE_RETCODE_NO_MONEY = 10019
    TRADE_RETCODE_PRICE_CHANGED = 10020
    TRADE_RETCODE_PRICE_OFF = 10021
    TRADE_RETCODE_INVALID_EXPIRATION = 10022
    TRADE_RETCODE_ORDER_CHANGED = 10023
    TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
    TRADE_RETCODE_NO_CHANGES = 10025
    TRADE_RETCODE_SERVER_DISABLES_AT = 10026
    TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
    TRADE_RETCODE_LOCKED = 10028
    TRADE_RETCODE_FROZEN = 10029
    TRADE_RETCODE_INVALID_FILL = 10030
    TRADE_RETCODE_CONNECTION = 10031
    TRADE_RETCODE_ONLY_REAL = 10032
    TRADE_RETCODE_LIMIT_ORDERS = 10033
    TRADE_RETCODE_LIMIT_VOLUME = 10034
    TRADE_RETCODE_INVALID_ORDER = 10035
    TRADE_RETCODE_POSITION_CLOSED = 10036
    TRADE_RETCODE_INVALID_CLOSE_VOLUME = 10038
    TRADE_RETCODE_CLOSE_ORDER_EXIST = 10039
    TRADE_RETCODE_LIMIT_POSITIONS = 10040
    TRADE_RETCODE_REJECT_CANCEL = 10041
    TRADE_RETCODE_LONG_ONLY = 10042
    TRADE_RETCODE_SHORT_ONLY = 10043
    TRADE_RETCODE_CLOSE_ONLY = 10044
    TRADE_RETCODE_FIFO_CLOSE = 10045
    RES_S_OK = 1
    RES_E_FAIL = -1
    RES_E_INVALID_PARAMS = -2
    RES_E_NO_MEMORY = -3
    RES_E_NOT_FOUND = -4
    RES_E_INVALID_VERSION = -5
    RES_E_AUTH_FAILED = -6
    RES_E_UNSUPPORTED = -7
    RES_E_AUTO_TRADING_DISABLED = -8
    RES_E_INTERNAL_FAIL = -10000
    RES_E_INTERNAL_FAIL_SEND = -10001
    RES_E_INTERNAL_FAIL_RECEIVE = -10002
    RES_E_INTERNAL_FAIL_INIT = -10003
    RES_E_INTERNAL_FAIL_CONNECT = -10004
    RES_E_INTERNAL_FAIL_TIMEOUT = -10005

    def __init__(
        self,
        *,
        login: int = 5001234,
        password: str = "demo-password",
        server: str = "Stratkernel-Demo",
        balance: float = 10_000.0,
        leverage: int = 100,
        currency: str = "USD",
        hedging: bool = False,
        start_time: datetime | int = 1_704_153_600,  # 2024-01-02 00:00:00 UTC (server time)
        build: int = 4755,
    ) -> None:
        self._login = login
        self._password = password
        self._server = server
        self._balance = float(balance)
        self._leverage = leverage
        self._currency = currency
        self._margin_mode = 2 if hedging else 0  # ACCOUNT_MARGIN_MODE_RETAIL_HEDGING / _NETTING
        self._now_msc = _seconds(start_time, "start_time") * 1000
        self._build = build
        self._symbols: dict[str, _Symbol] = {}
        self._positions: dict[int, _Position] = {}
        self._orders: dict[int, _Order] = {}
        self._history_orders: dict[int, _Order] = {}
        self._deals: dict[int, _Deal] = {}
        self._next_ticket = 100_001
        self._next_deal = 500_001
        self._next_request_id = 1
        self._last_error: tuple[int, str] = (1, "Success")
        # terminal and connection state
        self._terminal_running = True  # the terminal64.exe process exists
        self._ipc = False  # initialize() succeeded and shutdown() was not called since
        self._killed = False  # the terminal died under an open IPC link (calls fail with IPC errors)
        self._init_failures_left = 0
        self._trade_server_connected = True  # TerminalInfo.connected
        self._autotrading = True  # TerminalInfo.trade_allowed: the AutoTrading button
        self._tradeapi_disabled = False  # Options > Expert Advisors > disable trading via Python API
        self._account_trade_allowed = True  # AccountInfo.trade_allowed (investor password -> False)
        self._trade_expert = True  # AccountInfo.trade_expert (server allows expert advisors)
        self._queued_retcodes: list[int] = []
        self._drop_after: set[str] = set()
        self._books: set[str] = set()  # symbols with market depth subscribed (market_book_add)
        #: names of the MT5 API functions called, in order (lets tests check e.g. order_check before send)
        self.calls: list[str] = []

    # ================================================================================================
    # sim_*: the test's handles on the market, the broker and the person at the terminal
    # ================================================================================================
    def sim_add_symbol(self, name: str, *, bid: float, ask: float | None = None, **spec: Any) -> None:
        """Add a tradable symbol. ``spec`` overrides _Symbol fields (volume_min, trade_stops_level...)."""
        if ask is None:
            ask = bid
        sym = _Symbol(name=name, bid=float(bid), ask=float(ask), **spec)
        if not sym.description:
            sym.description = name
        if not sym.path:
            sym.path = f"Forex\\{name}"
        sym.last = 0.0
        self._symbols[name] = sym
        self._record_tick(sym)

    def sim_update_symbol(self, name: str, **spec: Any) -> None:
        """Change a symbol's specification (e.g. ``trade_mode``, ``filling_mode``, ``session_open``)."""
        sym = self._symbols[name]
        for key, value in spec.items():
            if not hasattr(sym, key):
                raise AttributeError(f"_Symbol has no field {key!r}")
            setattr(sym, key, value)

    @property
    def sim_now(self) -> int:
        """Server time in epoch milliseconds."""
        return self._now_msc

    def sim_advance(self, seconds: float) -> None:
        """Let time pass (pending-order expiration reacts)."""
        self._now_msc += int(seconds * 1000)
        self._expire_orders()

    def sim_set_price(
        self,
        symbol: str,
        bid: float,
        ask: float | None = None,
        *,
        advance_ms: int = 1000,
        volume: int = 1,
    ) -> None:
        """A new tick: moves time forward, builds M1 bars, triggers pending orders and SL/TP."""
        sym = self._symbols[symbol]
        spread = sym.ask - sym.bid
        sym.bid = float(bid)
        sym.ask = float(ask) if ask is not None else float(bid) + spread
        self._now_msc += advance_ms
        self._record_tick(sym, volume=volume)
        self._expire_orders()
        self._trigger_pending(sym)
        self._trigger_stops(sym)

    def sim_load_rates(self, symbol: str, rates: np.ndarray) -> None:
        """Seed M1 history (a RATES_DTYPE array, times in seconds on minute boundaries)."""
        sym = self._symbols[symbol]
        for row in rates:
            t = int(row["time"])
            sym.m1[t - t % 60] = [
                float(row["open"]), float(row["high"]), float(row["low"]), float(row["close"]),
                float(row["tick_volume"]), float(row["spread"]), float(row["real_volume"]),
            ]  # fmt: skip

    def sim_set_autotrading(self, enabled: bool) -> None:
        """Press the terminal's AutoTrading button."""
        self._autotrading = bool(enabled)

    def sim_set_tradeapi_disabled(self, disabled: bool) -> None:
        """Options > Expert Advisors > 'Disable automatic trading via external Python API'."""
        self._tradeapi_disabled = bool(disabled)

    def sim_set_account_trading(self, *, trade_allowed: bool = True, trade_expert: bool = True) -> None:
        """Account permissions: investor (read-only) login, or the server forbidding expert trading."""
        self._account_trade_allowed = trade_allowed
        self._trade_expert = trade_expert

    def sim_set_trade_server_connected(self, connected: bool) -> None:
        """The terminal lost (or regained) its connection to the broker's trade server."""
        self._trade_server_connected = bool(connected)

    def sim_kill_terminal(self, *, restartable: bool = True) -> None:
        """The terminal process died: every call fails with an IPC error until initialize() succeeds."""
        self._terminal_running = restartable
        self._ipc = False
        self._killed = True

    def sim_fail_initializations(self, count: int) -> None:
        """The next ``count`` initialize() calls fail (terminal still starting, or not installed)."""
        self._init_failures_left = count

    def sim_queue_retcode(self, retcode: int, count: int = 1) -> None:
        """The next ``count`` valid order_send calls are answered with ``retcode`` (requote, reject...)."""
        if retcode in (self.TRADE_RETCODE_PLACED, self.TRADE_RETCODE_DONE, self.TRADE_RETCODE_DONE_PARTIAL):
            raise ValueError("queue only refusals; for a partial fill limit the symbol's `liquidity`")
        self._queued_retcodes.extend([retcode] * count)

    def sim_manual_cancel(self, ticket: int) -> None:
        """The person at the terminal deletes a pending order by hand."""
        order = self._orders.pop(ticket)
        order.state, order.time_done_msc = self.ORDER_STATE_CANCELED, self._now_msc
        self._history_orders[order.ticket] = order

    def sim_drop_connection_after(self, function: str) -> None:
        """The next call of ``function`` does its work, then the terminal dies before answering
        (the caller sees None and an IPC error, not knowing whether e.g. an order went out)."""
        self._drop_after.add(function)

    def sim_set_balance(self, balance: float) -> None:
        self._balance = float(balance)

    def sim_manual_trade(
        self,
        symbol: str,
        type: int,
        volume: float,
        *,
        price: float = 0.0,
        sl: float = 0.0,
        tp: float = 0.0,
        comment: str = "",
        position: int = 0,
    ) -> int:
        """The person at the terminal trades by hand (magic 0, reason CLIENT). Returns the order ticket.

        Market types (0/1) execute now; pending types (2..5) are placed at ``price``.
        """
        request = TradeRequest(**{
            **_REQUEST_DEFAULTS,
            "action": self.TRADE_ACTION_DEAL if type in (0, 1) else self.TRADE_ACTION_PENDING,
            "symbol": symbol, "volume": float(volume), "type": type, "price": float(price),
            "sl": float(sl), "tp": float(tp), "comment": comment, "position": position,
            "type_filling": self.ORDER_FILLING_RETURN if type not in (0, 1) else self._any_filling(symbol),
        })  # fmt: skip
        plan = self._check(request)
        result = self._execute(request, plan, reason=self.ORDER_REASON_CLIENT)
        return int(result.order)

    # ================================================================================================
    # connection
    # ================================================================================================
    def _ok(self) -> None:
        self._last_error = (1, "Success")

    def _fail(self, exc: _CallFailed) -> None:
        self._last_error = (exc.code, exc.text)

    def _require(self) -> None:
        """Every call but initialize() needs a live IPC link to a running terminal."""
        if not self._ipc:
            if self._killed:
                raise _CallFailed(-10001)
            raise _CallFailed(-10004)

    def _call(self, name: str, fn: Any, default: Any = None) -> Any:
        self.calls.append(name)
        try:
            self._require()
            result = fn()
            if name in self._drop_after:
                self._drop_after.discard(name)
                self.sim_kill_terminal()
                raise _CallFailed(-10002)  # IPC recv failed: the work was done, the answer is lost
        except _CallFailed as exc:
            self._fail(exc)
            return default
        self._ok()
        return result

    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        """Attach to (or start) the terminal; with ``login`` also authorize that account."""
        self.calls.append("initialize")
        try:
            if path is not None and not isinstance(path, str):
                raise _CallFailed(-2, 'Invalid "path" argument')
            if timeout is not None and (not isinstance(timeout, int) or timeout < 0):
                raise _CallFailed(-2, 'Invalid "timeout" argument')
            if self._init_failures_left > 0:
                self._init_failures_left -= 1
                raise _CallFailed(-10005)
            if not self._terminal_running:
                raise _CallFailed(-10003)
            self._ipc = True
            self._killed = False
            if login is not None:
                self._authorize(login, password, server)
        except _CallFailed as exc:
            self._fail(exc)
            return False
        self._ok()
        return True

    def _authorize(self, login: Any, password: Any, server: Any) -> None:
        if not isinstance(login, int) or isinstance(login, bool):
            raise _CallFailed(-2, 'Invalid "login" argument')
        if password is not None and not isinstance(password, str):
            raise _CallFailed(-2, 'Invalid "password" argument')
        if server is not None and not isinstance(server, str):
            raise _CallFailed(-2, 'Invalid "server" argument')
        if login != self._login or (password is not None and password != self._password):
            raise _CallFailed(-6)
        if server is not None and server != self._server:
            raise _CallFailed(-6)

    def login(
        self,
        login: int,
        *,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        def run() -> bool:
            self._authorize(login, password, server)
            return True

        return bool(self._call("login", run, False))

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        self._ipc = False
        self._killed = False
        self._ok()

    def version(self) -> tuple[int, int, str] | None:
        result: tuple[int, int, str] | None = self._call("version", lambda: (500, self._build, "20 Nov 2025"))
        return result

    def last_error(self) -> tuple[int, str]:
        return self._last_error

    def terminal_info(self) -> TerminalInfo | None:
        def run() -> TerminalInfo:
            return TerminalInfo(
                community_account=False, community_connection=False,
                connected=self._trade_server_connected, dlls_allowed=False,
                trade_allowed=self._autotrading, tradeapi_disabled=self._tradeapi_disabled,
                email_enabled=False, ftp_enabled=False, notifications_enabled=False, mqid=False,
                build=self._build, maxbars=100000, codepage=0, ping_last=25000, community_balance=0.0,
                retransmission=0.0, company="Stratkernel Double Ltd.", name="MetaTrader 5",
                language="English", path="C:\\Program Files\\MetaTrader 5",
                data_path="C:\\Users\\trader\\AppData\\Roaming\\MetaQuotes\\Terminal\\D0E8209F77C8CF37AD8BF550E51FF075",
                commondata_path="C:\\Users\\trader\\AppData\\Roaming\\MetaQuotes\\Terminal\\Common",
            )  # fmt: skip

        return self._call("terminal_info", run)

    def account_info(self) -> AccountInfo | None:
        def run() -> AccountInfo:
            profit, margin = self._floating(), self._used_margin()
            equity = self._balance + profit
            return AccountInfo(
                login=self._login, trade_mode=self.ACCOUNT_TRADE_MODE_DEMO, leverage=self._leverage,
                limit_orders=200, margin_so_mode=self.ACCOUNT_STOPOUT_MODE_PERCENT,
                trade_allowed=self._account_trade_allowed, trade_expert=self._trade_expert,
                margin_mode=self._margin_mode, currency_digits=2, fifo_close=False,
                balance=round(self._balance, 2), credit=0.0, profit=round(profit, 2), equity=round(equity, 2),
                margin=round(margin, 2), margin_free=round(equity - margin, 2),
                margin_level=round(equity / margin * 100.0, 2) if margin > 0 else 0.0,
                margin_so_call=50.0, margin_so_so=30.0, margin_initial=0.0, margin_maintenance=0.0,
                assets=0.0, liabilities=0.0, commission_blocked=0.0, name="Stratkernel Test",
                server=self._server, currency=self._currency, company="Stratkernel Double Ltd.",
            )  # fmt: skip

        return self._call("account_info", run)

    # ================================================================================================
    # symbols and market data
    # ================================================================================================
    def _symbol(self, name: Any) -> _Symbol:
        if not isinstance(name, str):
            raise _CallFailed(-2, 'Invalid "symbol" argument')
        sym = self._symbols.get(name)
        if sym is None:
            raise _CallFailed(-4)
        return sym

    def _symbol_info(self, s: _Symbol) -> SymbolInfo:
        spread = round((s.ask - s.bid) / s.point)
        values: dict[str, Any] = dict.fromkeys(SymbolInfo._fields, 0)
        values.update(
            custom=False, chart_mode=self.SYMBOL_CHART_MODE_BID, select=s.select, visible=s.visible,
            time=s.time_msc // 1000, digits=s.digits, spread=spread, spread_float=True,
            trade_calc_mode=s.trade_calc_mode, trade_mode=s.trade_mode,
            trade_stops_level=s.trade_stops_level, trade_freeze_level=s.trade_freeze_level,
            trade_exemode=s.trade_exemode, swap_mode=self.SYMBOL_SWAP_MODE_POINTS, swap_rollover3days=3,
            expiration_mode=15, filling_mode=s.filling_mode, order_mode=127,
            order_gtc_mode=self.SYMBOL_ORDERS_GTC, bid=s.bid, bidhigh=s.bid, bidlow=s.bid, ask=s.ask,
            askhigh=s.ask, asklow=s.ask, last=s.last, lasthigh=s.last, lastlow=s.last, volume_real=0.0,
            volumehigh_real=0.0, volumelow_real=0.0, option_strike=0.0, point=s.point,
            trade_tick_value=s.trade_tick_value, trade_tick_value_profit=s.trade_tick_value,
            trade_tick_value_loss=s.trade_tick_value, trade_tick_size=s.trade_tick_size,
            trade_contract_size=s.trade_contract_size, trade_accrued_interest=0.0, trade_face_value=0.0,
            trade_liquidity_rate=0.0, volume_min=s.volume_min, volume_max=s.volume_max,
            volume_step=s.volume_step, volume_limit=s.volume_limit, swap_long=0.0, swap_short=0.0,
            margin_initial=0.0, margin_maintenance=0.0, session_volume=0.0, session_turnover=0.0,
            session_interest=0.0, session_buy_orders_volume=0.0, session_sell_orders_volume=0.0,
            session_open=0.0, session_close=0.0, session_aw=0.0, session_price_settlement=0.0,
            session_price_limit_min=0.0, session_price_limit_max=0.0, margin_hedged=s.trade_contract_size,
            price_change=0.0, price_volatility=0.0, price_theoretical=0.0, price_greeks_delta=0.0,
            price_greeks_theta=0.0, price_greeks_gamma=0.0, price_greeks_vega=0.0, price_greeks_rho=0.0,
            price_greeks_omega=0.0, price_sensitivity=0.0, basis="", category="",
            currency_base=s.currency_base, currency_profit=s.currency_profit,
            currency_margin=s.currency_margin, bank="", description=s.description, exchange="",
            formula="", isin="", name=s.name, page="", path=s.path,
        )  # fmt: skip
        return SymbolInfo(**values)

    def symbols_total(self) -> int:
        return int(self._call("symbols_total", lambda: len(self._symbols), 0))

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        def run() -> tuple[SymbolInfo, ...]:
            if group is not None and not isinstance(group, str):
                raise _CallFailed(-2, 'Invalid "group" argument')
            return tuple(self._symbol_info(s) for s in self._symbols.values() if _group_match(s.name, group))

        return self._call("symbols_get", run)

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        return self._call("symbol_info", lambda: self._symbol_info(self._symbol(symbol)))

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        def run() -> Tick:
            s = self._symbol(symbol)
            return Tick(
                s.time_msc // 1000,
                s.bid,
                s.ask,
                s.last,
                0,
                s.time_msc,
                self.TICK_FLAG_BID | self.TICK_FLAG_ASK,
                0.0,
            )

        return self._call("symbol_info_tick", run)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        def run() -> bool:
            s = self._symbol(symbol)
            if not enable and (
                any(p.symbol == symbol for p in self._positions.values())
                or any(o.symbol == symbol for o in self._orders.values())
            ):
                raise _CallFailed(-1)  # the terminal refuses to hide a symbol with positions or orders
            s.select = bool(enable)
            s.visible = bool(enable)
            return True

        return bool(self._call("symbol_select", run, False))

    def _record_tick(self, sym: _Symbol, volume: int = 1) -> None:
        sym.time_msc = self._now_msc
        sym.ticks.append((self._now_msc // 1000, sym.bid, sym.ask, sym.last, 0, self._now_msc,
                          self.TICK_FLAG_BID | self.TICK_FLAG_ASK, 0.0))  # fmt: skip
        minute = (self._now_msc // 1000) // 60 * 60
        spread = round((sym.ask - sym.bid) / sym.point)
        bar = sym.m1.get(minute)
        if bar is None:
            sym.m1[minute] = [sym.bid, sym.bid, sym.bid, sym.bid, float(volume), float(spread), 0.0]
        else:
            bar[1] = max(bar[1], sym.bid)
            bar[2] = min(bar[2], sym.bid)
            bar[3] = sym.bid
            bar[4] += volume
            bar[5] = min(bar[5], spread)

    def _rates(self, symbol: Any, timeframe: Any) -> np.ndarray:
        s = self._symbol(symbol)
        if not isinstance(timeframe, int) or timeframe not in _TIMEFRAME_SECONDS:
            raise _CallFailed(-2, 'Invalid "timeframe" argument')
        period = _TIMEFRAME_SECONDS[timeframe]
        buckets: dict[int, list[float]] = {}
        for t in sorted(s.m1):
            o, h, lo, c, tv, sp, rv = s.m1[t]
            key = _bucket(t, period)
            b = buckets.get(key)
            if b is None:
                buckets[key] = [o, h, lo, c, tv, sp, rv]
            else:
                b[1], b[2], b[3] = max(b[1], h), min(b[2], lo), c
                b[4] += tv
                b[5] = min(b[5], sp)
                b[6] += rv
        out = np.zeros(len(buckets), dtype=RATES_DTYPE)
        for i, (t, b) in enumerate(sorted(buckets.items())):
            out[i] = (t, b[0], b[1], b[2], b[3], int(b[4]), int(b[5]), int(b[6]))
        return out

    def copy_rates_from(
        self, symbol: str, timeframe: int, date_from: datetime | int, count: int
    ) -> np.ndarray | None:
        def run() -> np.ndarray:
            rates = self._rates(symbol, timeframe)
            end = int(np.searchsorted(rates["time"], _seconds(date_from, "date_from"), side="right"))
            return rates[max(0, end - _count(count)) : end]

        return self._call("copy_rates_from", run)

    def copy_rates_from_pos(
        self, symbol: str, timeframe: int, start_pos: int, count: int
    ) -> np.ndarray | None:
        def run() -> np.ndarray:
            rates = self._rates(symbol, timeframe)
            if not isinstance(start_pos, int) or start_pos < 0:
                raise _CallFailed(-2, 'Invalid "start_pos" argument')
            end = len(rates) - start_pos  # position 0 is the current (newest) bar
            return rates[max(0, end - _count(count)) : max(0, end)]

        return self._call("copy_rates_from_pos", run)

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: datetime | int, date_to: datetime | int
    ) -> np.ndarray | None:
        def run() -> np.ndarray:
            rates = self._rates(symbol, timeframe)
            lo, hi = _seconds(date_from, "date_from"), _seconds(date_to, "date_to")
            return rates[(rates["time"] >= lo) & (rates["time"] <= hi)]

        return self._call("copy_rates_range", run)

    def _ticks(self, symbol: Any, flags: Any) -> np.ndarray:
        s = self._symbol(symbol)
        if not isinstance(flags, int):
            raise _CallFailed(-2, 'Invalid "flags" argument')
        return np.array(s.ticks, dtype=TICKS_DTYPE)

    def copy_ticks_from(
        self, symbol: str, date_from: datetime | int, count: int, flags: int
    ) -> np.ndarray | None:
        def run() -> np.ndarray:
            ticks = self._ticks(symbol, flags)
            start = int(
                np.searchsorted(ticks["time_msc"], _seconds(date_from, "date_from") * 1000, side="left")
            )
            return ticks[start : start + _count(count)]

        return self._call("copy_ticks_from", run)

    def copy_ticks_range(
        self, symbol: str, date_from: datetime | int, date_to: datetime | int, flags: int
    ) -> np.ndarray | None:
        def run() -> np.ndarray:
            ticks = self._ticks(symbol, flags)
            lo, hi = _seconds(date_from, "date_from") * 1000, _seconds(date_to, "date_to") * 1000
            return ticks[(ticks["time_msc"] >= lo) & (ticks["time_msc"] <= hi)]

        return self._call("copy_ticks_range", run)

    def market_book_add(self, symbol: str) -> bool:
        def run() -> bool:
            self._symbol(symbol)
            self._books.add(symbol)
            return True

        return bool(self._call("market_book_add", run, False))

    def market_book_release(self, symbol: str) -> bool:
        def run() -> bool:
            self._symbol(symbol)
            self._books.discard(symbol)
            return True

        return bool(self._call("market_book_release", run, False))

    def market_book_get(self, symbol: str) -> tuple[BookInfo, ...] | None:
        """Top of the book only (one level a side): sell at the ask, buy at the bid."""

        def run() -> tuple[BookInfo, ...]:
            s = self._symbol(symbol)
            if symbol not in self._books:
                raise _CallFailed(-1)  # no market_book_add for this symbol
            v = s.book_volume
            return (
                BookInfo(self.BOOK_TYPE_SELL, s.ask, round(v), v),
                BookInfo(self.BOOK_TYPE_BUY, s.bid, round(v), v),
            )

        return self._call("market_book_get", run)

    # ================================================================================================
    # positions, orders, history
    # ================================================================================================
    def _position_tuple(self, p: _Position) -> TradePosition:
        s = self._symbols[p.symbol]
        current = s.bid if p.type == self.POSITION_TYPE_BUY else s.ask
        return TradePosition(
            ticket=p.ticket, time=p.time_msc // 1000, time_msc=p.time_msc, time_update=p.time_update_msc // 1000,
            time_update_msc=p.time_update_msc, type=p.type, magic=p.magic, identifier=p.identifier,
            reason=p.reason, volume=p.volume, price_open=p.price_open, sl=p.sl, tp=p.tp,
            price_current=current, swap=0.0, profit=round(self._position_profit(p), 2), symbol=p.symbol,
            comment=p.comment, external_id="",
        )  # fmt: skip

    def _order_tuple(self, o: _Order) -> TradeOrder:
        s = self._symbols[o.symbol]
        current = s.ask if o.type in (0, 2, 4, 6) else s.bid
        return TradeOrder(
            ticket=o.ticket, time_setup=o.time_setup_msc // 1000, time_setup_msc=o.time_setup_msc,
            time_done=o.time_done_msc // 1000, time_done_msc=o.time_done_msc,
            time_expiration=o.time_expiration, type=o.type, type_time=o.type_time,
            type_filling=o.type_filling, state=o.state, magic=o.magic, position_id=o.position_id,
            position_by_id=o.position_by_id, reason=o.reason, volume_initial=o.volume_initial,
            volume_current=o.volume_current, price_open=o.price_open, sl=o.sl, tp=o.tp,
            price_current=current, price_stoplimit=o.price_stoplimit, symbol=o.symbol, comment=o.comment,
            external_id="",
        )  # fmt: skip

    def _deal_tuple(self, d: _Deal) -> TradeDeal:
        return TradeDeal(
            ticket=d.ticket, order=d.order, time=d.time_msc // 1000, time_msc=d.time_msc, type=d.type,
            entry=d.entry, magic=d.magic, position_id=d.position_id, reason=d.reason, volume=d.volume,
            price=d.price, commission=d.commission, swap=d.swap, profit=round(d.profit, 2), fee=d.fee,
            symbol=d.symbol, comment=d.comment, external_id="",
        )  # fmt: skip

    @staticmethod
    def _filter_args(symbol: Any, group: Any, ticket: Any) -> None:
        if symbol is not None and not isinstance(symbol, str):
            raise _CallFailed(-2, 'Invalid "symbol" argument')
        if group is not None and not isinstance(group, str):
            raise _CallFailed(-2, 'Invalid "group" argument')
        if ticket is not None and (not isinstance(ticket, int) or isinstance(ticket, bool)):
            raise _CallFailed(-2, 'Invalid "ticket" argument')

    def positions_total(self) -> int:
        return int(self._call("positions_total", lambda: len(self._positions), 0))

    def positions_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        def run() -> tuple[TradePosition, ...]:
            self._filter_args(symbol, group, ticket)
            return tuple(
                self._position_tuple(p)
                for p in sorted(self._positions.values(), key=lambda p: p.ticket)
                if (symbol is None or p.symbol == symbol)
                and (ticket is None or p.ticket == ticket)
                and _group_match(p.symbol, group)
            )

        return self._call("positions_get", run)

    def orders_total(self) -> int:
        return int(self._call("orders_total", lambda: len(self._orders), 0))

    def orders_get(
        self, *, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        def run() -> tuple[TradeOrder, ...]:
            self._filter_args(symbol, group, ticket)
            return tuple(
                self._order_tuple(o)
                for o in sorted(self._orders.values(), key=lambda o: o.ticket)
                if (symbol is None or o.symbol == symbol)
                and (ticket is None or o.ticket == ticket)
                and _group_match(o.symbol, group)
            )

        return self._call("orders_get", run)

    def _history_select(
        self,
        items: list[Any],
        time_of: Any,
        date_from: Any,
        date_to: Any,
        group: Any = None,
        ticket: Any = None,
        position: Any = None,
    ) -> list[Any]:
        if ticket is not None:
            if not isinstance(ticket, int) or isinstance(ticket, bool):
                raise _CallFailed(-2, 'Invalid "ticket" argument')
            return [x for x in items if x.ticket == ticket]
        if position is not None:
            if not isinstance(position, int) or isinstance(position, bool):
                raise _CallFailed(-2, 'Invalid "position" argument')
            return [x for x in items if x.position_id == position]
        if date_from is None or date_to is None:
            raise _CallFailed(-2, "Invalid number of arguments")
        if group is not None and not isinstance(group, str):
            raise _CallFailed(-2, 'Invalid "group" argument')
        lo, hi = _seconds(date_from, "date_from") * 1000, _seconds(date_to, "date_to") * 1000
        return [x for x in items if lo <= time_of(x) <= hi and _group_match(x.symbol, group)]

    def history_orders_total(self, date_from: datetime | int, date_to: datetime | int) -> int | None:
        return self._call(
            "history_orders_total",
            lambda: len(
                self._history_select(
                    list(self._history_orders.values()), lambda o: o.time_setup_msc, date_from, date_to
                )
            ),
        )

    def history_orders_get(
        self,
        date_from: datetime | int | None = None,
        date_to: datetime | int | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        """``(date_from, date_to, group=)``, ``(ticket=)`` or ``(position=)``, as the real function."""

        def run() -> tuple[TradeOrder, ...]:
            items = sorted(self._history_orders.values(), key=lambda o: o.ticket)
            return tuple(
                self._order_tuple(o)
                for o in self._history_select(
                    items, lambda o: o.time_setup_msc, date_from, date_to, group, ticket, position
                )
            )

        return self._call("history_orders_get", run)

    def history_deals_total(self, date_from: datetime | int, date_to: datetime | int) -> int | None:
        return self._call(
            "history_deals_total",
            lambda: len(
                self._history_select(list(self._deals.values()), lambda d: d.time_msc, date_from, date_to)
            ),
        )

    def history_deals_get(
        self,
        date_from: datetime | int | None = None,
        date_to: datetime | int | None = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        """``(date_from, date_to, group=)``, ``(ticket=)`` or ``(position=)``, as the real function."""

        def run() -> tuple[TradeDeal, ...]:
            items = sorted(self._deals.values(), key=lambda d: d.ticket)
            return tuple(
                self._deal_tuple(d)
                for d in self._history_select(
                    items, lambda d: d.time_msc, date_from, date_to, group, ticket, position
                )
            )

        return self._call("history_deals_get", run)

    # ================================================================================================
    # money
    # ================================================================================================
    def _profit(self, s: _Symbol, buy: bool, volume: float, price_open: float, price_close: float) -> float:
        diff = (price_close - price_open) if buy else (price_open - price_close)
        return diff / s.trade_tick_size * s.trade_tick_value * volume

    def _position_profit(self, p: _Position) -> float:
        s = self._symbols[p.symbol]
        buy = p.type == self.POSITION_TYPE_BUY
        return self._profit(s, buy, p.volume, p.price_open, s.bid if buy else s.ask)

    def _floating(self) -> float:
        return sum(self._position_profit(p) for p in self._positions.values())

    def _margin(self, s: _Symbol, volume: float, price: float) -> float:
        notional = volume * s.trade_contract_size * price
        if s.trade_calc_mode in (self.SYMBOL_CALC_MODE_FOREX, self.SYMBOL_CALC_MODE_CFDLEVERAGE):
            return notional / self._leverage
        if s.trade_calc_mode == self.SYMBOL_CALC_MODE_FOREX_NO_LEVERAGE:
            return notional
        return notional * s.margin_rate

    def _used_margin(self) -> float:
        return sum(
            self._margin(self._symbols[p.symbol], p.volume, p.price_open) for p in self._positions.values()
        )

    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        def run() -> float:
            if action not in (self.ORDER_TYPE_BUY, self.ORDER_TYPE_SELL):
                raise _CallFailed(-2, 'Invalid "action" argument')
            return round(self._margin(self._symbol(symbol), float(volume), float(price)), 2)

        return self._call("order_calc_margin", run)

    def order_calc_profit(
        self, action: int, symbol: str, volume: float, price_open: float, price_close: float
    ) -> float | None:
        def run() -> float:
            if action not in (self.ORDER_TYPE_BUY, self.ORDER_TYPE_SELL):
                raise _CallFailed(-2, 'Invalid "action" argument')
            s = self._symbol(symbol)
            return round(self._profit(s, action == self.ORDER_TYPE_BUY, float(volume), float(price_open),
                                      float(price_close)), 2)  # fmt: skip

        return self._call("order_calc_profit", run)

    # ================================================================================================
    # trading: order_check / order_send
    # ================================================================================================
    def _parse_request(self, request: Any) -> TradeRequest:
        if not isinstance(request, dict):
            raise _CallFailed(-2, "Invalid arguments")
        values = dict(_REQUEST_DEFAULTS)
        for key, value in request.items():
            if key not in values:
                continue  # the real module ignores keys that are not MqlTradeRequest fields
            if key in _INT_FIELDS and (not isinstance(value, int) or isinstance(value, bool)):
                raise _CallFailed(-2, f'Invalid "{key}" argument')
            if key in _FLOAT_FIELDS and not isinstance(value, float):
                raise _CallFailed(-2, f'Invalid "{key}" argument')
            if key in ("symbol", "comment") and not isinstance(value, str):
                raise _CallFailed(-2, f'Invalid "{key}" argument')
            values[key] = value
        if len(values["comment"]) > MAX_COMMENT:
            raise _CallFailed(-2, 'Invalid "comment" argument')
        return TradeRequest(**values)

    def _any_filling(self, symbol: str) -> int:
        s = self._symbols[symbol]
        if s.filling_mode & _FILL_FLAG_FOK:
            return self.ORDER_FILLING_FOK
        if s.filling_mode & _FILL_FLAG_IOC:
            return self.ORDER_FILLING_IOC
        return self.ORDER_FILLING_RETURN

    def _check_filling(self, s: _Symbol, r: TradeRequest, pending: bool) -> None:
        f = r.type_filling
        allowed = {
            self.ORDER_FILLING_FOK: bool(s.filling_mode & _FILL_FLAG_FOK),
            self.ORDER_FILLING_IOC: bool(s.filling_mode & _FILL_FLAG_IOC),
            self.ORDER_FILLING_BOC: bool(s.filling_mode & _FILL_FLAG_BOC) and r.type in (2, 3, 6, 7),
            # RETURN: pending orders always; market orders only in Market or Exchange execution
            self.ORDER_FILLING_RETURN: pending or s.trade_exemode in (self.SYMBOL_TRADE_EXECUTION_MARKET,
                                                                      self.SYMBOL_TRADE_EXECUTION_EXCHANGE),
        }  # fmt: skip
        if not allowed.get(f, False):
            raise _Refused(self.TRADE_RETCODE_INVALID_FILL)

    def _check_volume(self, s: _Symbol, volume: float) -> None:
        if (
            not math.isfinite(volume)
            or volume <= 0
            or volume < s.volume_min - 1e-12
            or volume > s.volume_max + 1e-12
        ):
            raise _Refused(self.TRADE_RETCODE_INVALID_VOLUME)
        if not _is_multiple(volume, s.volume_step):
            raise _Refused(self.TRADE_RETCODE_INVALID_VOLUME)

    def _check_stops(self, s: _Symbol, buy: bool, sl: float, tp: float, ref: float | None = None) -> None:
        """SL/TP must be on the right side and at least trade_stops_level points from the closing price."""
        gap = s.trade_stops_level * s.point
        close_ref = ref if ref is not None else (s.bid if buy else s.ask)
        for value in (sl, tp):
            if value < 0 or not math.isfinite(value):
                raise _Refused(self.TRADE_RETCODE_INVALID_STOPS)
        if buy:
            if sl and not sl < close_ref - gap + 1e-12 * close_ref:
                raise _Refused(self.TRADE_RETCODE_INVALID_STOPS)
            if tp and not tp > close_ref + gap - 1e-12 * close_ref:
                raise _Refused(self.TRADE_RETCODE_INVALID_STOPS)
        else:
            if sl and not sl > close_ref + gap - 1e-12 * close_ref:
                raise _Refused(self.TRADE_RETCODE_INVALID_STOPS)
            if tp and not tp < close_ref - gap + 1e-12 * close_ref:
                raise _Refused(self.TRADE_RETCODE_INVALID_STOPS)

    def _check_trade_mode(self, s: _Symbol, buy: bool, opening: bool) -> None:
        mode = s.trade_mode
        if mode == self.SYMBOL_TRADE_MODE_DISABLED:
            raise _Refused(self.TRADE_RETCODE_TRADE_DISABLED)
        if opening and mode == self.SYMBOL_TRADE_MODE_CLOSEONLY:
            raise _Refused(self.TRADE_RETCODE_CLOSE_ONLY)
        if opening and mode == self.SYMBOL_TRADE_MODE_LONGONLY and not buy:
            raise _Refused(self.TRADE_RETCODE_LONG_ONLY)
        if opening and mode == self.SYMBOL_TRADE_MODE_SHORTONLY and buy:
            raise _Refused(self.TRADE_RETCODE_SHORT_ONLY)

    def _netting_position(self, symbol: str) -> _Position | None:
        for p in self._positions.values():
            if p.symbol == symbol:
                return p
        return None

    def _check(self, r: TradeRequest) -> dict[str, Any]:
        """Everything the trade server checks. Returns the execution plan or raises _Refused."""
        if not self._trade_server_connected:
            raise _Refused(self.TRADE_RETCODE_CONNECTION)
        if r.action == self.TRADE_ACTION_REMOVE:
            if r.order not in self._orders:
                raise _Refused(self.TRADE_RETCODE_INVALID_ORDER, "Invalid order")
            return {"kind": "remove"}
        if r.action == self.TRADE_ACTION_SLTP:
            p = self._positions.get(r.position)
            if p is None:
                raise _Refused(self.TRADE_RETCODE_POSITION_CLOSED)
            s = self._symbols[p.symbol]
            self._check_stops(s, p.type == self.POSITION_TYPE_BUY, r.sl, r.tp)
            if (r.sl, r.tp) == (p.sl, p.tp):
                raise _Refused(self.TRADE_RETCODE_NO_CHANGES, "No changes")
            return {"kind": "sltp"}
        if r.action == self.TRADE_ACTION_MODIFY:
            o = self._orders.get(r.order)
            if o is None:
                raise _Refused(self.TRADE_RETCODE_INVALID_ORDER, "Invalid order")
            s = self._symbols[o.symbol]
            self._check_pending_price(s, o.type, r.price, r.stoplimit)
            buy = o.type in (2, 4, 6)
            self._check_stops(s, buy, r.sl, r.tp, ref=r.stoplimit if o.type in (6, 7) else r.price)
            return {"kind": "modify"}
        if r.action == self.TRADE_ACTION_CLOSE_BY:
            return self._check_close_by(r)
        if r.action not in (self.TRADE_ACTION_DEAL, self.TRADE_ACTION_PENDING):
            raise _Refused(self.TRADE_RETCODE_INVALID)
        target = self._symbols.get(r.symbol)
        if target is None:
            raise _Refused(self.TRADE_RETCODE_INVALID, "Unknown symbol")
        s = target
        if not s.session_open:
            raise _Refused(self.TRADE_RETCODE_MARKET_CLOSED)
        if r.action == self.TRADE_ACTION_PENDING:
            return self._check_pending(s, r)
        return self._check_deal(s, r)

    def _check_deal(self, s: _Symbol, r: TradeRequest) -> dict[str, Any]:
        if r.type not in (self.ORDER_TYPE_BUY, self.ORDER_TYPE_SELL):
            raise _Refused(self.TRADE_RETCODE_INVALID)
        buy = r.type == self.ORDER_TYPE_BUY
        closing: _Position | None = None
        if r.position:
            closing = self._positions.get(r.position)
            if closing is None or closing.symbol != r.symbol:
                raise _Refused(self.TRADE_RETCODE_POSITION_CLOSED)
            if (closing.type == self.POSITION_TYPE_BUY) == buy:
                raise _Refused(self.TRADE_RETCODE_INVALID)
            if r.volume > closing.volume + 1e-9:
                raise _Refused(self.TRADE_RETCODE_INVALID_CLOSE_VOLUME)
        target = closing  # the position the deal changes (None: a new position)
        if not r.position and self._margin_mode != 2:
            target = self._netting_position(r.symbol)  # netting: at most one position per symbol
            closing = target
            if closing is not None and (closing.type == self.POSITION_TYPE_BUY) == buy:
                closing = None  # adds to the position
        reduces_only = closing is not None and r.volume <= closing.volume + 1e-9
        self._check_trade_mode(s, buy, opening=not reduces_only)
        self._check_volume(s, r.volume)
        self._check_filling(s, r, pending=False)
        price = s.ask if buy else s.bid
        if price <= 0:
            raise _Refused(self.TRADE_RETCODE_PRICE_OFF)
        # instant/request execution: the requested price must be within `deviation` points of the market
        instant = s.trade_exemode in (
            self.SYMBOL_TRADE_EXECUTION_INSTANT,
            self.SYMBOL_TRADE_EXECUTION_REQUEST,
        )
        if instant and abs(r.price - price) > r.deviation * s.point + 1e-12 * price:
            raise _Refused(self.TRADE_RETCODE_REQUOTE)
        if not reduces_only and (r.sl or r.tp):
            self._check_stops(s, buy, r.sl, r.tp)
        opened = r.volume - (closing.volume if closing is not None else 0.0)
        if opened > 1e-9 and s.volume_limit > 0:
            same_side = sum(p.volume for p in self._positions.values()
                            if p.symbol == s.name and (p.type == self.POSITION_TYPE_BUY) == buy)  # fmt: skip
            if same_side + opened > s.volume_limit + 1e-9:
                raise _Refused(self.TRADE_RETCODE_LIMIT_VOLUME, "Volume limit reached")
        margin_before = self._used_margin()
        freed = (
            self._margin(s, min(r.volume, closing.volume), closing.price_open) if closing is not None else 0.0
        )
        margin_after = margin_before - freed + (self._margin(s, opened, price) if opened > 1e-9 else 0.0)
        equity = self._balance + self._floating()
        if margin_after > margin_before and equity - margin_after < 0:
            raise _Refused(self.TRADE_RETCODE_NO_MONEY)
        fill_volume = r.volume
        if r.volume > s.liquidity + 1e-9:
            if r.type_filling == self.ORDER_FILLING_FOK:
                raise _Refused(self.TRADE_RETCODE_REJECT)  # fill or kill: not enough volume, killed
            fill_volume = round(s.liquidity, 8)  # IOC / RETURN: what is there, the rest is cancelled
            if fill_volume <= 0:
                raise _Refused(self.TRADE_RETCODE_REJECT)
        return {"kind": "deal", "price": price, "margin_after": margin_after, "position": target,
                "volume": fill_volume}  # fmt: skip

    def _check_pending_price(self, s: _Symbol, otype: int, price: float, stoplimit: float) -> None:
        gap = s.trade_stops_level * s.point
        if not math.isfinite(price) or price <= 0:
            raise _Refused(self.TRADE_RETCODE_INVALID_PRICE)
        ok = {
            self.ORDER_TYPE_BUY_LIMIT: price <= s.ask - gap,
            self.ORDER_TYPE_SELL_LIMIT: price >= s.bid + gap,
            self.ORDER_TYPE_BUY_STOP: price >= s.ask + gap,
            self.ORDER_TYPE_SELL_STOP: price <= s.bid - gap,
            self.ORDER_TYPE_BUY_STOP_LIMIT: price >= s.ask + gap and 0 < stoplimit <= price - gap,
            self.ORDER_TYPE_SELL_STOP_LIMIT: price <= s.bid - gap and stoplimit >= price + gap,
        }.get(otype)
        if ok is None:
            raise _Refused(self.TRADE_RETCODE_INVALID)
        if not ok:
            raise _Refused(self.TRADE_RETCODE_INVALID_PRICE)

    def _check_pending(self, s: _Symbol, r: TradeRequest) -> dict[str, Any]:
        if r.type not in range(2, 8):
            raise _Refused(self.TRADE_RETCODE_INVALID)
        buy = r.type in (2, 4, 6)
        self._check_trade_mode(s, buy, opening=True)
        self._check_volume(s, r.volume)
        self._check_filling(s, r, pending=True)
        self._check_pending_price(s, r.type, r.price, r.stoplimit)
        self._check_stops(s, buy, r.sl, r.tp, ref=r.stoplimit if r.type in (6, 7) else r.price)
        if r.type_time == self.ORDER_TIME_SPECIFIED and r.expiration <= self._now_msc // 1000:
            raise _Refused(self.TRADE_RETCODE_INVALID_EXPIRATION)
        return {"kind": "pending", "margin_after": self._used_margin()}

    def _check_close_by(self, r: TradeRequest) -> dict[str, Any]:
        a, b = self._positions.get(r.position), self._positions.get(r.position_by)
        if a is None or b is None:
            raise _Refused(self.TRADE_RETCODE_POSITION_CLOSED)
        if self._margin_mode != 2 or a.symbol != b.symbol or a.type == b.type:
            raise _Refused(self.TRADE_RETCODE_INVALID)
        return {"kind": "close_by"}

    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        """Check a request against funds and symbol rules without sending it. retcode 0 means it passes."""

        def run() -> OrderCheckResult:
            r = self._parse_request(request)
            balance, profit = self._balance, self._floating()
            equity, margin = balance + profit, self._used_margin()
            try:
                plan = self._check(r)
            except _Refused as refused:
                level = equity / margin * 100 if margin > 0 else 0.0
                return OrderCheckResult(refused.retcode, round(balance, 2), round(equity, 2), round(profit, 2),
                                        round(margin, 2), round(equity - margin, 2), round(level, 2),
                                        refused.comment, r)  # fmt: skip
            after = float(plan.get("margin_after", margin))
            level = equity / after * 100 if after > 0 else 0.0
            return OrderCheckResult(0, round(balance, 2), round(equity, 2), round(profit, 2), round(after, 2),
                                    round(equity - after, 2), round(level, 2), "Done", r)  # fmt: skip

        return self._call("order_check", run)

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        """Send a trade request. Failures at the server come back as a result with a retcode; a
        malformed request or a dead terminal returns None and sets last_error()."""

        def run() -> OrderSendResult:
            r = self._parse_request(request)
            if self._tradeapi_disabled:
                raise _CallFailed(-8)
            request_id = self._next_request_id
            self._next_request_id += 1
            try:
                if not self._autotrading:
                    raise _Refused(self.TRADE_RETCODE_CLIENT_DISABLES_AT)
                if not self._trade_expert:
                    raise _Refused(self.TRADE_RETCODE_SERVER_DISABLES_AT)
                if not self._account_trade_allowed:
                    raise _Refused(self.TRADE_RETCODE_TRADE_DISABLED)
                plan = self._check(r)
                if self._queued_retcodes:
                    raise _Refused(self._queued_retcodes.pop(0))
            except _Refused as refused:
                s = self._symbols.get(r.symbol)
                bid, ask = (s.bid, s.ask) if s is not None else (0.0, 0.0)
                return OrderSendResult(
                    refused.retcode, 0, 0, 0.0, 0.0, bid, ask, refused.comment, request_id, 0, r
                )
            return self._execute(r, plan, reason=self.ORDER_REASON_EXPERT, request_id=request_id)

        return self._call("order_send", run)

    # -- the package's pure-Python helpers (MetaTrader5/__init__.py): Buy, Sell, Close ------------------
    def _raw_order(
        self,
        order_type: int,
        symbol: str,
        volume: float,
        price: float,
        comment: str | None,
        ticket: int | None,
    ) -> OrderSendResult | None:
        request: dict[str, Any] = {
            "action": self.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume, "type": order_type,
            "price": price, "deviation": 10,
        }  # fmt: skip
        if comment is not None:
            request["comment"] = comment
        if ticket is not None:
            request["position"] = ticket
        return self.order_send(request)

    def _market(
        self,
        order_type: int,
        symbol: str,
        volume: float,
        price: float | None,
        comment: str | None,
        ticket: int | None,
    ) -> OrderSendResult | None:
        if price is not None:
            return self._raw_order(order_type, symbol, volume, price, comment, ticket)
        result = None
        for _ in range(10):  # re-quote with the current price, as the real helper does
            tick = self.symbol_info_tick(symbol)
            if tick is None:
                return None
            now = tick.ask if order_type == self.ORDER_TYPE_BUY else tick.bid
            result = self._raw_order(order_type, symbol, volume, now, comment, ticket)
            if result is None or result.retcode not in (
                self.TRADE_RETCODE_REQUOTE,
                self.TRADE_RETCODE_PRICE_OFF,
            ):
                break
        return result

    def Buy(  # capitalized like the real package's helper
        self, symbol: str, volume: float, price: float | None = None, *, comment: str | None = None,
        ticket: int | None = None,
    ) -> OrderSendResult | None:  # fmt: skip
        return self._market(self.ORDER_TYPE_BUY, symbol, volume, price, comment, ticket)

    def Sell(  # capitalized like the real package's helper
        self, symbol: str, volume: float, price: float | None = None, *, comment: str | None = None,
        ticket: int | None = None,
    ) -> OrderSendResult | None:  # fmt: skip
        return self._market(self.ORDER_TYPE_SELL, symbol, volume, price, comment, ticket)

    def Close(  # capitalized like the real package's helper
        self, symbol: str, *, comment: str | None = None, ticket: int | None = None
    ) -> bool | str | None:
        """Close the symbol's (or one ticket's) positions: True, "Partially", False, or None on error."""
        positions = (
            self.positions_get(ticket=ticket) if ticket is not None else self.positions_get(symbol=symbol)
        )
        if positions is None:
            return None
        tried = done = 0
        for p in positions:
            tried += 1
            closing = self.ORDER_TYPE_SELL if p.type == self.ORDER_TYPE_BUY else self.ORDER_TYPE_BUY
            result = self._market(closing, symbol, p.volume, None, comment, p.ticket)
            if result is None:
                return None
            if result.retcode == self.TRADE_RETCODE_DONE:
                done += 1
        if done > 0:
            return True if done == tried else "Partially"
        return False

    # ================================================================================================
    # execution
    # ================================================================================================
    def _ticket(self) -> int:
        t = self._next_ticket
        self._next_ticket += 1
        return t

    def _execute(
        self, r: TradeRequest, plan: dict[str, Any], *, reason: int, request_id: int = 0
    ) -> OrderSendResult:
        kind = plan["kind"]
        s = self._symbols.get(r.symbol)
        bid, ask = (s.bid, s.ask) if s is not None else (0.0, 0.0)
        done = self.TRADE_RETCODE_DONE
        if kind == "deal":
            assert s is not None
            order = _Order(self._ticket(), r.symbol, r.type, r.volume, r.volume, plan["price"], self._now_msc,
                           r.magic, reason, self.ORDER_STATE_FILLED, r.type_time, r.type_filling,
                           sl=r.sl, tp=r.tp, comment=r.comment)  # fmt: skip
            volume = plan["volume"]
            deal = self._fill(s, order, plan["price"], volume, reason=_deal_reason(reason),
                              position=plan["position"])  # fmt: skip
            if volume < r.volume - 1e-9:  # partly filled: the rest is cancelled
                order.volume_current = round(r.volume - volume, 8)
                order.state = self.ORDER_STATE_CANCELED
                partial = self.TRADE_RETCODE_DONE_PARTIAL
                return OrderSendResult(partial, deal.ticket, order.ticket, volume, deal.price, bid, ask,
                                       "Request executed partially", request_id, 0, r)  # fmt: skip
            return OrderSendResult(done, deal.ticket, order.ticket, volume, deal.price, bid, ask,
                                   _RETCODE_COMMENT[done], request_id, 0, r)  # fmt: skip
        if kind == "pending":
            order = _Order(self._ticket(), r.symbol, r.type, r.volume, r.volume, r.price, self._now_msc, r.magic,
                           reason, self.ORDER_STATE_PLACED, r.type_time, r.type_filling, r.expiration,
                           sl=r.sl, tp=r.tp, price_stoplimit=r.stoplimit, comment=r.comment)  # fmt: skip
            self._orders[order.ticket] = order
            return OrderSendResult(done, 0, order.ticket, r.volume, 0.0, bid, ask, _RETCODE_COMMENT[done],
                                   request_id, 0, r)  # fmt: skip
        if kind == "remove":
            o = self._orders.pop(r.order)
            o.state, o.time_done_msc = self.ORDER_STATE_CANCELED, self._now_msc
            self._history_orders[o.ticket] = o
            return OrderSendResult(
                done, 0, o.ticket, 0.0, 0.0, bid, ask, _RETCODE_COMMENT[done], request_id, 0, r
            )
        if kind == "modify":
            o = self._orders[r.order]
            o.price_open, o.sl, o.tp, o.price_stoplimit = r.price, r.sl, r.tp, r.stoplimit
            if r.type_time:
                o.type_time, o.time_expiration = r.type_time, r.expiration
            return OrderSendResult(
                done, 0, o.ticket, 0.0, 0.0, bid, ask, _RETCODE_COMMENT[done], request_id, 0, r
            )
        if kind == "sltp":
            p = self._positions[r.position]
            p.sl, p.tp, p.time_update_msc = r.sl, r.tp, self._now_msc
            return OrderSendResult(done, 0, 0, 0.0, 0.0, bid, ask, _RETCODE_COMMENT[done], request_id, 0, r)
        if kind == "close_by":
            a, b = self._positions[r.position], self._positions[r.position_by]
            sym = self._symbols[a.symbol]
            volume = min(a.volume, b.volume)
            order = _Order(self._ticket(), a.symbol, self.ORDER_TYPE_CLOSE_BY, volume, volume, 0.0, self._now_msc,
                           r.magic, reason, self.ORDER_STATE_FILLED, position_id=a.ticket,
                           position_by_id=b.ticket, comment=r.comment)  # fmt: skip
            # a closes at b's open price and b at its own: the realized result is the spread between them
            first = self._fill(sym, order, b.price_open, volume, reason=_deal_reason(reason), position=a,
                               entry=self.DEAL_ENTRY_OUT_BY, record_order=False)  # fmt: skip
            self._fill(sym, order, b.price_open, volume, reason=_deal_reason(reason), position=b,
                       entry=self.DEAL_ENTRY_OUT_BY)  # fmt: skip
            return OrderSendResult(done, first.ticket, order.ticket, volume, b.price_open, bid, ask,
                                   _RETCODE_COMMENT[done], request_id, 0, r)  # fmt: skip
        raise _Refused(self.TRADE_RETCODE_INVALID)

    def _fill(
        self,
        s: _Symbol,
        order: _Order,
        price: float,
        volume: float,
        *,
        reason: int,
        position: _Position | None,
        entry: int | None = None,
        record_order: bool = True,
    ) -> _Deal:
        """Execute ``volume`` of ``order`` at ``price``: one deal, and the position it opens/changes/closes."""
        buy = order.type in (self.ORDER_TYPE_BUY, self.ORDER_TYPE_BUY_LIMIT, self.ORDER_TYPE_BUY_STOP,
                             self.ORDER_TYPE_BUY_STOP_LIMIT)  # fmt: skip
        if order.type == self.ORDER_TYPE_CLOSE_BY and position is not None:
            buy = position.type == self.POSITION_TYPE_SELL
        now = self._now_msc
        profit = 0.0
        if position is None:
            position = _Position(order.ticket, s.name, self.POSITION_TYPE_BUY if buy else self.POSITION_TYPE_SELL,
                                 volume, price, now, now, order.magic, _position_reason(reason), order.sl, order.tp,
                                 order.comment, identifier=order.ticket)  # fmt: skip
            self._positions[position.ticket] = position
            deal_entry = self.DEAL_ENTRY_IN
        elif (position.type == self.POSITION_TYPE_BUY) == buy:  # netting: add to the position
            total = position.volume + volume
            position.price_open = (position.price_open * position.volume + price * volume) / total
            position.volume = round(total, 8)
            position.time_update_msc = now
            if order.sl or order.tp:
                position.sl, position.tp = order.sl, order.tp
            deal_entry = self.DEAL_ENTRY_IN
        else:
            closed = min(volume, position.volume)
            profit = self._profit(
                s, position.type == self.POSITION_TYPE_BUY, closed, position.price_open, price
            )
            remaining = round(position.volume - closed, 8)
            reverse = round(volume - closed, 8)
            position.time_update_msc = now
            if remaining > 1e-9:
                position.volume = remaining
                deal_entry = self.DEAL_ENTRY_OUT
            elif reverse > 1e-9:  # netting reversal: same position id, new direction
                position.type = self.POSITION_TYPE_BUY if buy else self.POSITION_TYPE_SELL
                position.volume, position.price_open = reverse, price
                position.sl, position.tp = order.sl, order.tp
                deal_entry = self.DEAL_ENTRY_INOUT
            else:
                del self._positions[position.ticket]
                deal_entry = self.DEAL_ENTRY_OUT
            self._balance += profit
        deal = _Deal(self._next_deal, order.ticket, now, self.DEAL_TYPE_BUY if buy else self.DEAL_TYPE_SELL,
                     entry if entry is not None else deal_entry, order.magic, position.identifier, reason, volume,
                     price, profit, s.name, order.comment)  # fmt: skip
        self._next_deal += 1
        self._deals[deal.ticket] = deal
        if record_order:
            order.state, order.time_done_msc = self.ORDER_STATE_FILLED, now
            order.volume_current = 0.0
            order.position_id = position.identifier
            self._history_orders[order.ticket] = order
        return deal

    def _trigger_pending(self, s: _Symbol) -> None:
        for o in sorted((o for o in self._orders.values() if o.symbol == s.name), key=lambda o: o.ticket):
            t, p = o.type, o.price_open
            hit = (
                (t == self.ORDER_TYPE_BUY_LIMIT and s.ask <= p)
                or (t == self.ORDER_TYPE_SELL_LIMIT and s.bid >= p)
                or (t in (self.ORDER_TYPE_BUY_STOP, self.ORDER_TYPE_BUY_STOP_LIMIT) and s.ask >= p)
                or (t in (self.ORDER_TYPE_SELL_STOP, self.ORDER_TYPE_SELL_STOP_LIMIT) and s.bid <= p)
            )
            if not hit:
                continue
            if t in (self.ORDER_TYPE_BUY_STOP_LIMIT, self.ORDER_TYPE_SELL_STOP_LIMIT):
                # the stop triggers: the order becomes a limit order at the stop-limit price
                o.type = (
                    self.ORDER_TYPE_BUY_LIMIT
                    if t == self.ORDER_TYPE_BUY_STOP_LIMIT
                    else self.ORDER_TYPE_SELL_LIMIT
                )
                o.price_open, o.price_stoplimit = o.price_stoplimit, 0.0
                continue
            buy = t in (self.ORDER_TYPE_BUY_LIMIT, self.ORDER_TYPE_BUY_STOP)
            # limits fill at their price (or better); stops fill at the market
            market = s.ask if buy else s.bid
            price = (min(p, market) if buy else max(p, market)) if t in (2, 3) else market
            target = self._netting_position(s.name) if self._margin_mode != 2 else None
            closing = target
            if closing is not None and (closing.type == self.POSITION_TYPE_BUY) == buy:
                closing = None  # adds to the position
            del self._orders[o.ticket]
            opened = o.volume_current - (closing.volume if closing is not None else 0.0)
            equity = self._balance + self._floating()
            if opened > 1e-9 and equity - self._used_margin() - self._margin(s, opened, price) < 0:
                # no money at trigger time: the server rejects the order
                o.state, o.time_done_msc = self.ORDER_STATE_REJECTED, self._now_msc
                self._history_orders[o.ticket] = o
                continue
            self._fill(s, o, price, o.volume_current, reason=_deal_reason(o.reason), position=target)

    def _trigger_stops(self, s: _Symbol) -> None:
        for p in sorted((p for p in self._positions.values() if p.symbol == s.name), key=lambda p: p.ticket):
            buy = p.type == self.POSITION_TYPE_BUY
            price = s.bid if buy else s.ask
            hit_sl = bool(p.sl) and (price <= p.sl if buy else price >= p.sl)
            hit_tp = bool(p.tp) and (price >= p.tp if buy else price <= p.tp)
            if not (hit_sl or hit_tp):
                continue
            reason = self.ORDER_REASON_SL if hit_sl else self.ORDER_REASON_TP
            level = p.sl if hit_sl else p.tp
            comment = f"[{'sl' if hit_sl else 'tp'} {level:.{s.digits}f}]"
            order = _Order(self._ticket(), s.name, self.ORDER_TYPE_SELL if buy else self.ORDER_TYPE_BUY, p.volume,
                           p.volume, price, self._now_msc, p.magic, reason, self.ORDER_STATE_FILLED,
                           position_id=p.ticket, comment=comment)  # fmt: skip
            self._fill(s, order, price, p.volume, reason=_deal_reason(reason), position=p)

    def _expire_orders(self) -> None:
        now_s = self._now_msc // 1000
        for o in list(self._orders.values()):
            if o.type_time == self.ORDER_TIME_SPECIFIED and o.time_expiration and o.time_expiration <= now_s:
                del self._orders[o.ticket]
                o.state, o.time_done_msc = self.ORDER_STATE_EXPIRED, self._now_msc
                self._history_orders[o.ticket] = o


_DAY = 86_400
_WEEK = 7 * _DAY
_MONTH = -1  # calendar months: bucketed by date, not by a fixed length
_TIMEFRAME_SECONDS: dict[int, int] = {
    **{m: m * 60 for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)},
    **{h | 0x4000: h * 3600 for h in (1, 2, 3, 4, 6, 8, 12, 24)},
    1 | 0x8000: _WEEK,
    1 | 0xC000: _MONTH,
}


def _bucket(t: int, period: int) -> int:
    """Open time of the bar of ``period`` seconds that contains ``t`` (weeks start on Sunday, as in MT5)."""
    if period == _MONTH:
        d = datetime.fromtimestamp(t, tz=UTC)
        return calendar.timegm((d.year, d.month, 1, 0, 0, 0))
    if period == _WEEK:
        sunday_offset = 4 * _DAY  # 1970-01-01 was a Thursday
        return (t + sunday_offset) // _WEEK * _WEEK - sunday_offset
    return t // period * period


def _count(count: Any) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        raise _CallFailed(-2, 'Invalid "count" argument')
    return count


def _group_match(name: str, group: str | None) -> bool:
    """MT5 group filters: comma-separated patterns with ``*``; ``!pattern`` excludes. Later ones win."""
    if group is None:
        return True
    result = False
    for raw in group.split(","):
        pattern = raw.strip()
        if not pattern:
            continue
        if pattern.startswith("!"):
            if fnmatch.fnmatchcase(name, pattern[1:]):
                result = False
        elif fnmatch.fnmatchcase(name, pattern):
            result = True
    return result


def _deal_reason(order_reason: int) -> int:
    # ORDER_REASON_* 0..6 and DEAL_REASON_* 0..6 share values and meaning (client..stop out)
    return order_reason


def _position_reason(reason: int) -> int:
    # POSITION_REASON_* only has client/mobile/web/expert (0..3)
    return reason if reason <= 3 else 3
