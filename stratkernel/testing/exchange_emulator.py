"""A Binance-spot exchange emulator on 127.0.0.1, for testing ccxt-based plugins with real ccxt code.

It speaks enough of Binance's real spot REST API and websocket protocols that unmodified ccxt (sync,
async and pro) can load markets, sign and send orders, poll them, download klines and watch klines,
tickers and order updates. Point ccxt at it with :meth:`ExchangeEmulator.ccxt_urls`::

    emu = ExchangeEmulator(api_key="k", secret="s", balances={"USDT": 10_000.0})
    emu.add_market("BTC/USDT", price=20_000.0, qty_step=0.0001, price_tick=0.01, min_notional=10.0)
    await emu.start()
    ex = ccxt.pro.binance({"apiKey": "k", "secret": "s", "enableRateLimit": False,
                           "options": EMULATOR_CCXT_OPTIONS})
    ex.urls["api"] = emu.ccxt_urls(ex.urls["api"])
    ...
    await emu.stop()

What it checks like Binance does: the ``X-MBX-APIKEY`` header (-2015), the HMAC-SHA256 signature of the
exact query string/body with the secret (-1022), ``timestamp`` within ``recvWindow`` (-1021), symbol
filters (LOT_SIZE, PRICE_FILTER, NOTIONAL: -1013), balances (-2010 insufficient balance) and duplicate
``newClientOrderId`` among open orders (-2010 "Duplicate order sent.").

The price is driven by the test. Market orders fill at once at the current price (plus half the
spread); :meth:`set_price` moves the market, fills the limit orders the price crosses (up to
``liquidity`` if given, which makes partial fills) and triggers STOP_LOSS / TAKE_PROFIT orders and OCO
legs. Each change is pushed to websocket subscribers.

Faults are injected through :attr:`faults` (:class:`Faults`): the next N REST requests time out (and,
with ``execute_after_timeout``, still execute after the client gave up), answer 5xx or 429 with
``Retry-After``; the next order POST is executed but its response is lost (the connection is closed);
``drop_websockets()`` closes every websocket.

Order events reach clients both ways Binance offers: the WebSocket API's
``userDataStream.subscribe.signature`` (what ccxt 4.5 uses for spot ``watch_orders``) and the legacy
listenKey stream (``POST /api/v3/userDataStream``, then ``/ws/<listenKey>``).

Simplifications (documented, not hidden): commissions are charged at ``fee_rate`` in the asset received;
there is no order book depth (the spread is ``spread`` around the price); OCO is the only order list
type; margin and futures are not implemented.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import time
import urllib.parse
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["EMULATOR_CCXT_OPTIONS", "ExchangeEmulator", "Faults", "ccxt_config", "interval_ms"]

#: ccxt ``options`` that keep ccxt from asking for what the emulator does not serve (futures markets,
#: currencies, margin pairs): load_markets becomes a single exchangeInfo request.
EMULATOR_CCXT_OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
}

_INTERVALS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def interval_ms(interval: str) -> int:
    """Milliseconds of a Binance kline interval such as ``1m``, ``15m``, ``4h``, ``1d``."""
    try:
        return int(interval[:-1]) * _INTERVALS[interval[-1]]
    except (KeyError, ValueError):
        raise ValueError(f"unsupported kline interval {interval!r}") from None


def _fmt(value: float) -> str:
    """Binance sends decimals as strings; 8 decimals is what its spot API uses."""
    return f"{value:.8f}"


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.http_status = http_status


@dataclass
class Faults:
    """Fault-injection knobs. Counters are decremented as requests consume them."""

    timeouts: int = 0  #: next N REST requests hang for ``timeout_delay`` s then get a 504
    timeout_delay: float = 2.0
    execute_after_timeout: bool = False  #: a timed-out request is still executed after the delay (late)
    server_errors: int = 0  #: next N REST requests answer 503
    rate_limited: int = 0  #: next N REST requests answer 429 with Retry-After
    retry_after: int = 1
    lose_order_responses: int = 0  #: next N order POSTs are executed, then the connection is closed
    only_paths: tuple[str, ...] = ()  #: if set, the REST faults above hit only these paths
    after: int = 0  #: let this many (matching) requests through before the faults above apply
    reject_ws_auth: bool = False


@dataclass
class Market:
    symbol: str  # unified, e.g. BTC/USDT
    base: str
    quote: str
    price: float
    qty_step: float
    min_qty: float
    max_qty: float
    price_tick: float
    min_notional: float
    spread: float
    status: str = "TRADING"

    @property
    def id(self) -> str:
        return self.base + self.quote


@dataclass
class EmuOrder:
    order_id: int
    client_id: str
    symbol_id: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | STOP_LOSS | STOP_LOSS_LIMIT | TAKE_PROFIT | TAKE_PROFIT_LIMIT
    qty: float
    price: float
    stop_price: float
    time_in_force: str
    created: int
    status: str = "NEW"
    executed: float = 0.0
    quote_executed: float = 0.0
    updated: int = 0
    working: bool = True
    locked_asset: str = ""
    locked: float = 0.0
    list_id: int = -1  # an OCO order list this order belongs to
    sibling: int = 0  # the other leg of the OCO

    @property
    def remaining(self) -> float:
        return max(self.qty - self.executed, 0.0)

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class Trade:
    trade_id: int
    order_id: int
    symbol_id: str
    side: str
    price: float
    qty: float
    commission: float
    commission_asset: str
    time: int
    maker: bool


@dataclass
class _UserSub:
    ws: web.WebSocketResponse
    sub_id: int


@dataclass
class _Stats:
    requests: dict[str, int] = field(default_factory=dict)
    order_posts: int = 0
    ws_connections: int = 0
    bad_signatures: int = 0
    late_requests: int = 0  # timed-out requests executed afterwards (Faults.execute_after_timeout)


class ExchangeEmulator:
    """A Binance-spot emulator. ``start()`` binds a random port on 127.0.0.1; ``stop()`` closes it."""

    def __init__(
        self,
        *,
        api_key: str = "emulator-key",
        secret: str = "emulator-secret",
        balances: dict[str, float] | None = None,
        fee_rate: float = 0.0,
        can_trade: bool = True,
    ) -> None:
        self.api_key = api_key
        self.secret = secret
        self.fee_rate = fee_rate
        self.can_trade = can_trade
        self.system_status = 0  # 0 normal, 1 maintenance (sapi/v1/system/status)
        self.faults = Faults()
        self.stats = _Stats()
        self.markets: dict[str, Market] = {}  # by market id (BTCUSDT)
        self.free: dict[str, float] = dict(balances or {})
        self.locked: dict[str, float] = {}
        self.orders: dict[int, EmuOrder] = {}
        self.trades: list[Trade] = []
        self.klines: dict[tuple[str, str], dict[int, list[float]]] = {}  # (id, interval) -> ts -> ohlcv
        self._order_ids = itertools.count(1001)
        self._trade_ids = itertools.count(50001)
        self._sub_ids = itertools.count(0)
        self._public_subs: dict[str, set[web.WebSocketResponse]] = {}
        self._user_subs: list[_UserSub] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._now_override: int | None = None
        self._list_ids = itertools.count(1)
        self._list_locks: dict[int, tuple[str, float]] = {}
        self._listen_keys: set[str] = set()
        self._listen_key_sockets: set[web.WebSocketResponse] = set()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> ExchangeEmulator:
        app = web.Application()
        app.router.add_route("*", "/api/v3/{path:.*}", self._rest)
        app.router.add_route("*", "/sapi/v1/{path:.*}", self._rest)
        app.router.add_get("/ws", self._public_ws)
        app.router.add_get("/ws/{stream:.*}", self._public_ws)
        app.router.add_get("/ws-api/v3", self._ws_api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ExchangeEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def ccxt_urls(self, api_urls: dict[str, Any]) -> dict[str, Any]:
        """Rewrite a ccxt binance ``urls['api']`` dict so every spot endpoint points at the emulator."""
        out: dict[str, Any] = {}
        # sync/async ccxt has no "ws" entry; add one so the same dict also serves ccxt.pro
        for key, value in {"ws": {}, **api_urls}.items():
            if key == "ws":
                ws = dict(value)
                ws["spot"] = ws["margin"] = f"{self.ws_url}/ws"
                ws["ws-api"] = dict(ws.get("ws-api", {}), spot=f"{self.ws_url}/ws-api/v3")
                out[key] = ws
            elif isinstance(value, str):
                parsed = urllib.parse.urlsplit(value)
                out[key] = f"{self.http_url}{parsed.path}"
            else:
                out[key] = value
        return out

    # -- test-facing API -----------------------------------------------------------------------------
    def now(self) -> int:
        return self._now_override if self._now_override is not None else int(time.time() * 1000)

    def add_market(
        self,
        symbol: str,
        *,
        price: float,
        qty_step: float = 0.00001,
        min_qty: float | None = None,
        max_qty: float = 9000.0,
        price_tick: float = 0.01,
        min_notional: float = 5.0,
        spread: float = 0.0,
    ) -> None:
        base, quote = symbol.split("/")
        m = Market(
            symbol,
            base,
            quote,
            price,
            qty_step,
            qty_step if min_qty is None else min_qty,
            max_qty,
            price_tick,
            min_notional,
            spread,
        )
        self.markets[m.id] = m

    def market(self, symbol: str) -> Market:
        mid = symbol.replace("/", "")
        if mid not in self.markets:
            raise KeyError(f"emulator has no market {symbol!r}")
        return self.markets[mid]

    def balance(self, asset: str) -> tuple[float, float]:
        """(free, locked) of an asset."""
        return self.free.get(asset, 0.0), self.locked.get(asset, 0.0)

    def add_klines(self, symbol: str, interval: str, rows: list[list[float]]) -> None:
        """Add historical klines ``[ts, open, high, low, close, volume]`` (ts = open time in ms)."""
        book = self.klines.setdefault((self.market(symbol).id, interval), {})
        for r in rows:
            book[int(r[0])] = [float(x) for x in r[1:6]]

    def generate_klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        count: int,
        *,
        start_price: float = 100.0,
        skip: set[int] | None = None,
    ) -> list[list[float]]:
        """Deterministic klines (a gentle zig-zag); indexes in ``skip`` are left out to make gaps."""
        step = interval_ms(interval)
        rows = []
        price = start_price
        for i in range(count):
            o = price
            c = price * (1.0 + (0.001 if (i // 7) % 2 == 0 else -0.001))
            rows.append([start_ms + i * step, o, max(o, c) * 1.0005, min(o, c) * 0.9995, c, 1.0 + (i % 5)])
            price = c
        keep = [r for i, r in enumerate(rows) if not skip or i not in skip]
        self.add_klines(symbol, interval, keep)
        return keep

    async def set_price(
        self, symbol: str, price: float, *, liquidity: float | None = None, klines: bool = True
    ) -> None:
        """Move the market: trigger stops, fill crossed limit orders, push ticker/kline updates.

        ``liquidity`` caps the total quantity resting orders can fill at this price (partial fills).
        ``klines=False`` pushes only the ticker (tests that drive klines with :meth:`push_kline`).
        """
        m = self.market(symbol)
        m.price = price
        left = math.inf if liquidity is None else liquidity
        for o in sorted(self.orders.values(), key=lambda o: o.order_id):
            if o.symbol_id != m.id or not o.is_open:
                continue
            if (
                o.type in ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
                and not o.working
            ):
                if self._triggered(o, price):
                    o.working = True
                    if o.type in ("STOP_LOSS", "TAKE_PROFIT"):
                        await self._fill(o, m, o.remaining, self._exec_price(m, o.side), maker=False)
                        continue
                else:
                    continue
            if o.type in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and left > 0:
                crossed = price <= o.price if o.side == "BUY" else price >= o.price
                if crossed:
                    qty = min(o.remaining, left)
                    qty = self._round_qty(m, qty)
                    if qty > 0:
                        left -= qty
                        await self._fill(o, m, qty, o.price, maker=True)
        await self._push_market(m, klines=klines)

    async def drop_websockets(self) -> int:
        """Close every websocket connection (public streams and the WebSocket API). Returns how many."""
        sockets = list(self._sockets)
        for ws in sockets:
            await ws.close(code=1001, message=b"dropped by emulator")
        self._public_subs.clear()
        self._user_subs.clear()
        return len(sockets)

    def order_by_client_id(self, client_id: str) -> EmuOrder | None:
        found = [o for o in self.orders.values() if o.client_id == client_id]
        return found[-1] if found else None

    # -- REST ---------------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.stats.requests[f"{request.method} {path}"] = (
            self.stats.requests.get(f"{request.method} {path}", 0) + 1
        )
        # The body is read first: a request that "times out" may still execute after the client is gone.
        body = (await request.text()) if request.can_read_body else ""
        fault, late = await self._rest_fault(path)
        if fault is not None:
            return fault
        try:
            return await self._rest_execute(request, path, body)
        finally:
            if late:
                self.stats.late_requests += 1

    async def _rest_execute(self, request: web.Request, path: str, body: str) -> web.StreamResponse:
        params: dict[str, str] = dict(urllib.parse.parse_qsl(request.query_string, keep_blank_values=True))
        params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        try:
            if path == "/api/v3/userDataStream" and request.method in ("POST", "PUT", "DELETE"):
                return web.json_response(self._user_data_stream(request))
            handler = self._routes().get((request.method, path))
            if handler is None:
                raise BinanceError(-1000, f"emulator does not implement {request.method} {path}", 404)
            signed, fn = handler
            if signed:
                self._check_signature(request, body, params)
            result = fn(params)
            if asyncio.iscoroutine(result):
                result = await result
        except BinanceError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.http_status)
        if path == "/api/v3/order" and request.method == "POST" and self.faults.lose_order_responses > 0:
            self.faults.lose_order_responses -= 1
            # The order is live at the "exchange"; the client just never hears about it.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        return web.json_response(result)

    async def _rest_fault(self, path: str) -> tuple[web.StreamResponse | None, bool]:
        """(the fault's response or None, whether the request goes on to execute late)."""
        f = self.faults
        if f.only_paths and path not in f.only_paths:
            return None, False
        if f.after > 0:
            f.after -= 1
            return None, False
        if f.timeouts > 0:
            f.timeouts -= 1
            await asyncio.sleep(f.timeout_delay)
            if f.execute_after_timeout:
                return None, True  # Binance: a timed-out request's status is UNKNOWN; it may execute late
            return web.Response(status=504, text="Gateway Time-out"), False
        if f.server_errors > 0:
            f.server_errors -= 1
            return web.Response(status=503, text="Service Unavailable"), False
        if f.rate_limited > 0:
            f.rate_limited -= 1
            return web.json_response(
                {
                    "code": -1003,
                    "msg": "Too many requests; current limit is 1200 request weight per 1 MINUTE.",
                },
                status=429,
                headers={"Retry-After": str(f.retry_after)},
            ), False
        return None, False

    def _routes(self) -> dict[tuple[str, str], tuple[bool, Any]]:
        return {
            ("GET", "/api/v3/ping"): (False, lambda p: {}),
            ("GET", "/api/v3/time"): (False, lambda p: {"serverTime": self.now()}),
            ("GET", "/api/v3/exchangeInfo"): (False, self._exchange_info),
            ("GET", "/api/v3/klines"): (False, self._get_klines),
            ("GET", "/api/v3/ticker/24hr"): (False, self._ticker_24hr),
            ("GET", "/api/v3/ticker/bookTicker"): (False, self._book_ticker),
            ("GET", "/sapi/v1/system/status"): (
                False,
                lambda p: {
                    "status": self.system_status,
                    "msg": "normal" if self.system_status == 0 else "system maintenance",
                },
            ),
            ("GET", "/api/v3/account"): (True, self._account),
            ("POST", "/api/v3/order"): (True, self._post_order),
            ("POST", "/api/v3/orderList/oco"): (True, self._post_oco),
            ("GET", "/api/v3/order"): (True, self._get_order),
            ("DELETE", "/api/v3/order"): (True, self._delete_order),
            ("GET", "/api/v3/openOrders"): (True, self._open_orders),
            ("GET", "/api/v3/allOrders"): (True, self._all_orders),
            ("GET", "/api/v3/myTrades"): (True, self._my_trades),
        }

    def _check_signature(self, request: web.Request, body: str, params: dict[str, str]) -> None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        # Binance signs totalParams = query string concatenated with the body, exactly as sent.
        total = request.query_string + body
        payload, sep, signature = total.rpartition("&signature=")
        if not sep or not hmac.compare_digest(
            hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest(), signature
        ):
            self.stats.bad_signatures += 1
            raise BinanceError(-1022, "Signature for this request is not valid.")
        self._check_timestamp(params)

    def _check_timestamp(self, params: dict[str, Any]) -> None:
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            raise BinanceError(
                -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        now = self.now()
        if ts > now + 1000 or now - ts > window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    # -- public endpoints --------------------------------------------------------------------------
    def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        symbols = []
        for m in self.markets.values():
            symbols.append(
                {
                    "symbol": m.id,
                    "status": m.status,
                    "baseAsset": m.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": m.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": [
                        "LIMIT",
                        "LIMIT_MAKER",
                        "MARKET",
                        "STOP_LOSS",
                        "STOP_LOSS_LIMIT",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_LIMIT",
                    ],
                    "icebergAllowed": True,
                    "ocoAllowed": False,
                    "otoAllowed": False,
                    "quoteOrderQtyMarketAllowed": True,
                    "allowTrailingStop": False,
                    "cancelReplaceAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _fmt(m.price_tick),
                            "maxPrice": "1000000.00000000",
                            "tickSize": _fmt(m.price_tick),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": _fmt(m.min_qty),
                            "maxQty": _fmt(m.max_qty),
                            "stepSize": _fmt(m.qty_step),
                        },
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": _fmt(m.min_notional),
                            "applyMinToMarket": True,
                            "maxNotional": "9000000.00000000",
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now(),
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _market_param(self, params: dict[str, str]) -> Market:
        sid = params.get("symbol", "")
        if not sid:
            raise BinanceError(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        if sid not in self.markets:
            raise BinanceError(-1121, "Invalid symbol.")
        return self.markets[sid]

    def _get_klines(self, params: dict[str, str]) -> list[list[Any]]:
        m = self._market_param(params)
        interval = params.get("interval", "")
        try:
            step = interval_ms(interval)
        except ValueError:
            raise BinanceError(-1120, "Invalid interval.") from None
        limit = min(int(params.get("limit", 500)), 1000)
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
        book = self.klines.get((m.id, interval), {})
        keys = sorted(k for k in book if (start is None or k >= start) and (end is None or k <= end))
        keys = keys[:limit] if start is not None or end is None else keys[-limit:]
        if start is None and end is None:
            keys = sorted(book)[-limit:]
        out = []
        for k in keys:
            o, h, lo, c, v = book[k]
            out.append(
                [
                    k,
                    _fmt(o),
                    _fmt(h),
                    _fmt(lo),
                    _fmt(c),
                    _fmt(v),
                    k + step - 1,
                    _fmt(v * c),
                    10,
                    _fmt(v / 2),
                    _fmt(v * c / 2),
                    "0",
                ]
            )
        return out

    def _ticker_obj(self, m: Market) -> dict[str, Any]:
        now = self.now()
        bid, ask = m.price - m.spread / 2, m.price + m.spread / 2
        return {
            "symbol": m.id,
            "priceChange": "0.00000000",
            "priceChangePercent": "0.000",
            "weightedAvgPrice": _fmt(m.price),
            "prevClosePrice": _fmt(m.price),
            "lastPrice": _fmt(m.price),
            "lastQty": "1.00000000",
            "bidPrice": _fmt(bid),
            "bidQty": "10.00000000",
            "askPrice": _fmt(ask),
            "askQty": "10.00000000",
            "openPrice": _fmt(m.price),
            "highPrice": _fmt(m.price),
            "lowPrice": _fmt(m.price),
            "volume": "100.00000000",
            "quoteVolume": _fmt(100 * m.price),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": 1,
            "lastId": 100,
            "count": 100,
        }

    def _ticker_24hr(self, params: dict[str, str]) -> Any:
        if "symbol" in params:
            return self._ticker_obj(self._market_param(params))
        if "symbols" in params:
            try:
                wanted = json.loads(params["symbols"])
            except ValueError:
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
            for sid in wanted:
                if sid not in self.markets:
                    raise BinanceError(-1121, "Invalid symbol.")
            return [self._ticker_obj(self.markets[s]) for s in wanted]
        return [self._ticker_obj(m) for m in self.markets.values()]

    def _book_ticker(self, params: dict[str, str]) -> Any:
        def one(m: Market) -> dict[str, Any]:
            return {
                "symbol": m.id,
                "bidPrice": _fmt(m.price - m.spread / 2),
                "bidQty": "10.00000000",
                "askPrice": _fmt(m.price + m.spread / 2),
                "askQty": "10.00000000",
            }

        if "symbol" in params:
            return one(self._market_param(params))
        return [one(m) for m in self.markets.values()]

    # -- private endpoints -------------------------------------------------------------------------
    def _account(self, params: dict[str, str]) -> dict[str, Any]:
        assets = sorted(set(self.free) | set(self.locked))
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0", "seller": "0"},
            "canTrade": self.can_trade,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.now(),
            "accountType": "SPOT",
            "permissions": ["SPOT"],
            "uid": 1,
            "balances": [
                {"asset": a, "free": _fmt(self.free.get(a, 0.0)), "locked": _fmt(self.locked.get(a, 0.0))}
                for a in assets
            ],
        }

    def _num(self, params: dict[str, str], name: str, required: bool = True) -> float:
        raw = params.get(name)
        if raw is None or raw == "":
            if required:
                raise BinanceError(
                    -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
                )
            return 0.0
        try:
            value = float(raw)
        except ValueError:
            raise BinanceError(
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise BinanceError(-1013, f"Invalid {name}.")
        return value

    @staticmethod
    def _on_step(value: float, step: float) -> bool:
        if step <= 0:
            return True
        n = Decimal(repr(value)) / Decimal(repr(step))
        return n == n.to_integral_value()

    def _round_qty(self, m: Market, qty: float) -> float:
        d = (
            Decimal(repr(qty)).quantize(Decimal(repr(m.qty_step)), rounding=ROUND_DOWN)
            if m.qty_step > 0
            else qty
        )
        return float(d)

    async def _post_order(self, params: dict[str, str]) -> dict[str, Any]:
        self.stats.order_posts += 1
        if not self.can_trade:
            raise BinanceError(-2010, "This action is disabled on this account.")
        m = self._market_param(params)
        side = params.get("side", "")
        otype = params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(
                -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."
            )
        if otype not in (
            "MARKET",
            "LIMIT",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ):
            raise BinanceError(-1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"emu{next(self._order_ids)}"
        if not (1 <= len(client_id) <= 36) or not all(ch.isalnum() or ch in "-_" for ch in client_id):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-zA-Z0-9-_]{1,36}$'.",
            )
        if any(o.client_id == client_id and o.is_open for o in self.orders.values()):
            raise BinanceError(-2010, "Duplicate order sent.")
        if "quoteOrderQty" in params:
            raise BinanceError(-1013, "emulator: quoteOrderQty orders are not supported; send quantity")
        qty = self._num(params, "quantity")
        limit_price = self._num(
            params, "price", required=otype in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
        )
        stop_price = self._num(params, "stopPrice", required=otype.startswith(("STOP_LOSS", "TAKE_PROFIT")))
        if qty < m.min_qty or qty > m.max_qty or not self._on_step(qty, m.qty_step):
            raise BinanceError(-1013, "Filter failure: LOT_SIZE")
        for p in (limit_price, stop_price):
            if p and not self._on_step(p, m.price_tick):
                raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
        ref_price = limit_price or stop_price or m.price
        if qty * ref_price < m.min_notional:
            raise BinanceError(-1013, "Filter failure: NOTIONAL")
        now = self.now()
        order = EmuOrder(
            next(self._order_ids),
            client_id,
            m.id,
            side,
            otype,
            qty,
            limit_price,
            stop_price,
            params.get("timeInForce", "GTC") if otype.endswith("LIMIT") else "GTC",
            now,
            updated=now,
            working=otype in ("MARKET", "LIMIT"),
        )
        # Lock what the order may spend, as Binance does; refuse if the balance does not cover it.
        if side == "BUY":
            asset, need = m.quote, qty * (limit_price or self._exec_price(m, side))
        else:
            asset, need = m.base, qty
        if self.free.get(asset, 0.0) + 1e-12 < need:
            raise BinanceError(-2010, "Account has insufficient balance for requested action.")
        if otype == "MARKET":
            order.working = True
        else:
            self.free[asset] = self.free.get(asset, 0.0) - need
            self.locked[asset] = self.locked.get(asset, 0.0) + need
            order.locked_asset, order.locked = asset, need
        self.orders[order.order_id] = order
        await self._push_execution(order, "NEW")
        fills: list[Trade] = []
        if otype == "MARKET":
            fills.append(await self._fill(order, m, qty, self._exec_price(m, side), maker=False))
        elif otype == "LIMIT":
            crossed = m.price <= limit_price if side == "BUY" else m.price >= limit_price
            if crossed:  # marketable limit: takes at the current price
                fills.append(await self._fill(order, m, qty, self._exec_price(m, side), maker=False))
        elif self._triggered(order, m.price):
            raise BinanceError(-2010, "Stop price would trigger immediately.")
        resp = self._order_json(order)
        resp["transactTime"] = now
        resp["fills"] = [
            {
                "price": _fmt(t.price),
                "qty": _fmt(t.qty),
                "commission": _fmt(t.commission),
                "commissionAsset": t.commission_asset,
                "tradeId": t.trade_id,
            }
            for t in fills
        ]
        return resp

    async def _post_oco(self, params: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/orderList/oco: two legs (above/below the price), one lock, one-cancels-other."""
        self.stats.order_posts += 1
        if not self.can_trade:
            raise BinanceError(-2010, "This action is disabled on this account.")
        m = self._market_param(params)
        side = params.get("side", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(
                -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."
            )
        qty = self._num(params, "quantity")
        if qty < m.min_qty or qty > m.max_qty or not self._on_step(qty, m.qty_step):
            raise BinanceError(-1013, "Filter failure: LOT_SIZE")
        legs = []
        for pos in ("above", "below"):
            otype = params.get(f"{pos}Type", "")
            if otype not in (
                "LIMIT_MAKER",
                "STOP_LOSS",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT",
                "TAKE_PROFIT_LIMIT",
            ):
                raise BinanceError(-1116, f"Invalid {pos}Type.")
            price = self._num(params, f"{pos}Price", required=otype.endswith(("LIMIT", "LIMIT_MAKER")))
            stop = self._num(params, f"{pos}StopPrice", required=otype.startswith(("STOP", "TAKE")))
            for p in (price, stop):
                if p and not self._on_step(p, m.price_tick):
                    raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
            if (price or stop) * qty < m.min_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
            level = stop or price
            if (pos == "above") != (level > m.price):
                raise BinanceError(-2010, "The relationship of the prices for the orders is not correct.")
            cid = params.get(f"{pos}ClientOrderId") or f"emu{next(self._order_ids)}"
            if any(o.client_id == cid and o.is_open for o in self.orders.values()):
                raise BinanceError(-2010, "Duplicate order sent.")
            legs.append((otype, price, stop, cid))
        if side == "BUY":
            asset, need = m.quote, qty * max(p or s for _, p, s, _ in legs)
        else:
            asset, need = m.base, qty
        if self.free.get(asset, 0.0) + 1e-12 < need:
            raise BinanceError(-2010, "Account has insufficient balance for requested action.")
        self.free[asset] -= need
        self.locked[asset] = self.locked.get(asset, 0.0) + need
        list_id = next(self._list_ids)
        self._list_locks[list_id] = (asset, need)
        now = self.now()
        made = []
        for otype, price, stop, cid in legs:
            made.append(
                EmuOrder(
                    next(self._order_ids),
                    cid,
                    m.id,
                    side,
                    otype,
                    qty,
                    price,
                    stop,
                    "GTC",
                    now,
                    updated=now,
                    working=otype == "LIMIT_MAKER",
                    list_id=list_id,
                )
            )
        made[0].sibling, made[1].sibling = made[1].order_id, made[0].order_id
        for o in made:
            self.orders[o.order_id] = o
            await self._push_execution(o, "NEW")
        return {
            "orderListId": list_id,
            "contingencyType": "OCO",
            "listStatusType": "EXEC_STARTED",
            "listOrderStatus": "EXECUTING",
            "listClientOrderId": params.get("listClientOrderId") or f"list{list_id}",
            "transactionTime": now,
            "symbol": m.id,
            "orders": [{"symbol": m.id, "orderId": o.order_id, "clientOrderId": o.client_id} for o in made],
            "orderReports": [self._order_json(o) for o in made],
        }

    @staticmethod
    def _triggered(o: EmuOrder, price: float) -> bool:
        # Binance spot: a SELL STOP_LOSS triggers when the price falls to stopPrice, a SELL TAKE_PROFIT when
        # it rises to it; BUY orders mirror that.
        falls = (o.side == "SELL") == o.type.startswith("STOP_LOSS")
        return price <= o.stop_price if falls else price >= o.stop_price

    @staticmethod
    def _exec_price(m: Market, side: str) -> float:
        return m.price + m.spread / 2 if side == "BUY" else m.price - m.spread / 2

    async def _fill(self, o: EmuOrder, m: Market, qty: float, price: float, *, maker: bool) -> Trade:
        now = self.now()
        if o.list_id >= 0:
            # One-cancels-other: the first execution of a leg expires the other leg, and the balance the
            # list had locked moves to the executing leg.
            other = self.orders.get(o.sibling)
            if other is not None and other.is_open:
                other.status = "EXPIRED"
                other.updated = now
                await self._push_execution(other, "EXPIRED")
            lock = self._list_locks.pop(o.list_id, None)
            if lock is not None:
                o.locked_asset, o.locked = lock
        quote_amt = qty * price
        if o.side == "BUY":
            spend_asset, spend, get_asset, get = m.quote, quote_amt, m.base, qty
        else:
            spend_asset, spend, get_asset, get = m.base, qty, m.quote, quote_amt
        if o.locked > 0:
            # Release the lock pro rata (limit price may beat the fill price for buys).
            release = o.locked * (qty / o.remaining) if o.remaining > 0 else o.locked
            self.locked[spend_asset] = self.locked.get(spend_asset, 0.0) - release
            o.locked -= release
            self.free[spend_asset] = self.free.get(spend_asset, 0.0) + release
        self.free[spend_asset] = self.free.get(spend_asset, 0.0) - spend
        fee = get * self.fee_rate
        self.free[get_asset] = self.free.get(get_asset, 0.0) + get - fee
        o.executed += qty
        o.quote_executed += quote_amt
        o.updated = now
        o.status = "FILLED" if o.remaining <= 1e-12 else "PARTIALLY_FILLED"
        if o.status == "FILLED" and o.locked:
            self.locked[o.locked_asset] -= o.locked
            self.free[o.locked_asset] = self.free.get(o.locked_asset, 0.0) + o.locked
            o.locked = 0.0
        t = Trade(next(self._trade_ids), o.order_id, m.id, o.side, price, qty, fee, get_asset, now, maker)
        self.trades.append(t)
        await self._push_execution(o, "TRADE", t)
        return t

    def _find_order(self, params: dict[str, str]) -> EmuOrder:
        m = self._market_param(params)
        if "orderId" in params:
            o = self.orders.get(int(params["orderId"]))
        elif "origClientOrderId" in params:
            found = [
                x
                for x in self.orders.values()
                if x.client_id == params["origClientOrderId"] and x.symbol_id == m.id
            ]
            o = found[-1] if found else None
        else:
            raise BinanceError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        if o is None or o.symbol_id != m.id:
            raise BinanceError(-2013, "Order does not exist.")
        return o

    def _get_order(self, params: dict[str, str]) -> dict[str, Any]:
        return self._order_json(self._find_order(params))

    async def _delete_order(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            o = self._find_order(params)
        except BinanceError as exc:
            if exc.code == -2013:
                raise BinanceError(-2011, "Unknown order sent.") from None
            raise
        if not o.is_open:
            raise BinanceError(-2011, "Unknown order sent.")
        legs = [o]
        if o.list_id >= 0:  # cancelling one leg of an OCO cancels the whole list, as on Binance
            other = self.orders.get(o.sibling)
            if other is not None and other.is_open:
                legs.append(other)
            lock = self._list_locks.pop(o.list_id, None)
            if lock is not None:
                self.locked[lock[0]] -= lock[1]
                self.free[lock[0]] = self.free.get(lock[0], 0.0) + lock[1]
        for leg in legs:
            leg.status = "CANCELED"
            leg.updated = self.now()
            if leg.locked:
                self.locked[leg.locked_asset] -= leg.locked
                self.free[leg.locked_asset] = self.free.get(leg.locked_asset, 0.0) + leg.locked
                leg.locked = 0.0
            await self._push_execution(leg, "CANCELED")
        out = self._order_json(o)
        out["origClientOrderId"] = o.client_id
        out["clientOrderId"] = f"cancel{o.order_id}"
        out["transactTime"] = o.updated
        return out

    def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        sid = params.get("symbol")
        if sid is not None:
            self._market_param(params)
        return [
            self._order_json(o)
            for o in self.orders.values()
            if o.is_open and (sid is None or o.symbol_id == sid)
        ]

    def _all_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market_param(params)
        return [self._order_json(o) for o in self.orders.values() if o.symbol_id == m.id]

    def _my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market_param(params)
        oid = int(params["orderId"]) if "orderId" in params else None
        start = int(params.get("startTime", 0))
        limit = min(int(params.get("limit", 500)), 1000)
        out = []
        for t in self.trades:
            if t.symbol_id != m.id or (oid is not None and t.order_id != oid) or t.time < start:
                continue
            o = self.orders[t.order_id]
            out.append(
                {
                    "symbol": t.symbol_id,
                    "id": t.trade_id,
                    "orderId": t.order_id,
                    "orderListId": -1,
                    "price": _fmt(t.price),
                    "qty": _fmt(t.qty),
                    "quoteQty": _fmt(t.price * t.qty),
                    "commission": _fmt(t.commission),
                    "commissionAsset": t.commission_asset,
                    "time": t.time,
                    "isBuyer": o.side == "BUY",
                    "isMaker": t.maker,
                    "isBestMatch": True,
                }
            )
        return out[:limit]

    def _order_json(self, o: EmuOrder) -> dict[str, Any]:
        return {
            "symbol": o.symbol_id,
            "orderId": o.order_id,
            "orderListId": o.list_id,
            "clientOrderId": o.client_id,
            "price": _fmt(o.price),
            "origQty": _fmt(o.qty),
            "executedQty": _fmt(o.executed),
            "cummulativeQuoteQty": _fmt(o.quote_executed),
            "status": o.status,
            "timeInForce": o.time_in_force,
            "type": o.type,
            "side": o.side,
            "stopPrice": _fmt(o.stop_price),
            "icebergQty": "0.00000000",
            "time": o.created,
            "updateTime": o.updated,
            "isWorking": o.working,
            "workingTime": o.created,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    # -- websockets ---------------------------------------------------------------------------------
    async def _public_ws(self, request: web.Request) -> web.WebSocketResponse:
        stream = request.match_info.get("stream", "")
        if stream in self._listen_keys or stream.startswith("lk"):
            if stream not in self._listen_keys:
                raise web.HTTPBadRequest(text='{"code":-1125,"msg":"This listenKey does not exist."}')
            return await self._listen_key_ws(request, stream)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.stats.ws_connections += 1
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    await ws.send_json({"error": {"code": 3, "msg": "Invalid JSON"}})
                    continue
                method, streams, rid = req.get("method"), req.get("params") or [], req.get("id")
                if method == "SUBSCRIBE":
                    for s in streams:
                        self._public_subs.setdefault(s, set()).add(ws)
                elif method == "UNSUBSCRIBE":
                    for s in streams:
                        self._public_subs.get(s, set()).discard(ws)
                await ws.send_json({"result": None, "id": rid})
        finally:
            self._forget(ws)
        return ws

    async def _ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.stats.ws_connections += 1
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    await ws.send_json(
                        {"id": None, "status": 400, "error": {"code": -1000, "msg": "Invalid JSON"}}
                    )
                    continue
                rid, method, params = req.get("id"), req.get("method"), dict(req.get("params") or {})
                if method != "userDataStream.subscribe.signature":
                    await ws.send_json(
                        {
                            "id": rid,
                            "status": 400,
                            "error": {"code": -1000, "msg": f"emulator does not implement {method}"},
                        }
                    )
                    continue
                try:
                    self._check_ws_signature(params)
                except BinanceError as exc:
                    await ws.send_json(
                        {"id": rid, "status": exc.http_status, "error": {"code": exc.code, "msg": exc.msg}}
                    )
                    continue
                sub = _UserSub(ws, next(self._sub_ids))
                self._user_subs.append(sub)
                await ws.send_json({"id": rid, "status": 200, "result": {"subscriptionId": sub.sub_id}})
        finally:
            self._forget(ws)
        return ws

    def _check_ws_signature(self, params: dict[str, Any]) -> None:
        if self.faults.reject_ws_auth or params.get("apiKey") != self.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        signature = str(params.pop("signature", ""))
        # WebSocket API: the payload is the params sorted by name, joined as key=value&... (not url-encoded).
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            self.stats.bad_signatures += 1
            raise BinanceError(-1022, "Signature for this request is not valid.")
        self._check_timestamp(params)

    async def _listen_key_ws(self, request: web.Request, key: str) -> web.WebSocketResponse:
        """The legacy user data stream ``/ws/<listenKey>``: raw executionReport events, no requests."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        self._listen_key_sockets.add(ws)
        self.stats.ws_connections += 1
        try:
            async for _msg in ws:
                pass  # the stream is one-way; whatever the client sends is ignored, as Binance does
        finally:
            self._forget(ws)
        return ws

    def _user_data_stream(self, request: web.Request) -> dict[str, Any]:
        """POST/PUT/DELETE /api/v3/userDataStream: API key header only, no signature (as on Binance)."""
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if request.method == "POST":
            key = "lk" + hashlib.sha256(f"{self.api_key}{next(self._sub_ids)}".encode()).hexdigest()[:58]
            self._listen_keys.add(key)
            return {"listenKey": key}
        key = request.query.get("listenKey", "")
        if key not in self._listen_keys:
            raise BinanceError(-1125, "This listenKey does not exist.")
        if request.method == "DELETE":
            self._listen_keys.discard(key)
        return {}

    def _forget(self, ws: web.WebSocketResponse) -> None:
        self._sockets.discard(ws)
        self._listen_key_sockets.discard(ws)
        for subs in self._public_subs.values():
            subs.discard(ws)
        self._user_subs = [s for s in self._user_subs if s.ws is not ws]

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        if ws.closed:
            self._forget(ws)
            return
        try:
            await ws.send_json(payload)
        except (ConnectionError, RuntimeError):
            self._forget(ws)

    async def _push_market(self, m: Market, *, klines: bool = True) -> None:
        now = self.now()
        lid = m.id.lower()
        ticker = self._ticker_obj(m)
        tmsg = {
            "e": "24hrTicker",
            "E": now,
            "s": m.id,
            "p": ticker["priceChange"],
            "P": ticker["priceChangePercent"],
            "w": ticker["weightedAvgPrice"],
            "x": ticker["prevClosePrice"],
            "c": ticker["lastPrice"],
            "Q": ticker["lastQty"],
            "b": ticker["bidPrice"],
            "B": ticker["bidQty"],
            "a": ticker["askPrice"],
            "A": ticker["askQty"],
            "o": ticker["openPrice"],
            "h": ticker["highPrice"],
            "l": ticker["lowPrice"],
            "v": ticker["volume"],
            "q": ticker["quoteVolume"],
            "O": ticker["openTime"],
            "C": now,
            "F": 1,
            "L": 100,
            "n": 100,
        }
        for ws in list(self._public_subs.get(f"{lid}@ticker", ())):
            await self._send(ws, tmsg)
        mini = {
            "e": "24hrMiniTicker",
            "E": now,
            "s": m.id,
            "c": tmsg["c"],
            "o": tmsg["o"],
            "h": tmsg["h"],
            "l": tmsg["l"],
            "v": tmsg["v"],
            "q": tmsg["q"],
        }
        for ws in list(self._public_subs.get(f"{lid}@miniTicker", ())):
            await self._send(ws, mini)
        for stream, subs in list(self._public_subs.items()):
            if not klines or not stream.startswith(f"{lid}@kline_") or not subs:
                continue
            interval = stream.split("_", 1)[1]
            step = interval_ms(interval)
            start = now - now % step
            book = self.klines.setdefault((m.id, interval), {})
            bar = book.get(start)
            if bar is None:
                bar = [m.price, m.price, m.price, m.price, 0.0]
                book[start] = bar
            bar[1] = max(bar[1], m.price)
            bar[2] = min(bar[2], m.price)
            bar[3] = m.price
            bar[4] += 1.0
            kmsg = {
                "e": "kline",
                "E": now,
                "s": m.id,
                "k": {
                    "t": start,
                    "T": start + step - 1,
                    "s": m.id,
                    "i": interval,
                    "f": 1,
                    "L": 2,
                    "o": _fmt(bar[0]),
                    "c": _fmt(bar[3]),
                    "h": _fmt(bar[1]),
                    "l": _fmt(bar[2]),
                    "v": _fmt(bar[4]),
                    "n": 2,
                    "x": False,
                    "q": _fmt(bar[4] * m.price),
                    "V": "0",
                    "Q": "0",
                    "B": "0",
                },
            }
            for ws in list(subs):
                await self._send(ws, kmsg)

    async def push_kline(
        self,
        symbol: str,
        interval: str,
        ts: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        v: float,
        *,
        closed: bool = True,
    ) -> None:
        """Send one kline event for ``ts`` to subscribers (and store it), independent of the clock."""
        m = self.market(symbol)
        step = interval_ms(interval)
        self.klines.setdefault((m.id, interval), {})[ts] = [o, h, lo, c, v]
        kmsg = {
            "e": "kline",
            "E": ts + step - 1,
            "s": m.id,
            "k": {
                "t": ts,
                "T": ts + step - 1,
                "s": m.id,
                "i": interval,
                "f": 1,
                "L": 2,
                "o": _fmt(o),
                "c": _fmt(c),
                "h": _fmt(h),
                "l": _fmt(lo),
                "v": _fmt(v),
                "n": 2,
                "x": closed,
                "q": _fmt(v * c),
                "V": "0",
                "Q": "0",
                "B": "0",
            },
        }
        for ws in list(self._public_subs.get(f"{m.id.lower()}@kline_{interval}", ())):
            await self._send(ws, kmsg)

    def subscribers(self, stream: str) -> int:
        """How many open connections subscribe to a public stream such as ``btcusdt@kline_1m``."""
        return sum(1 for ws in self._public_subs.get(stream, ()) if not ws.closed)

    @property
    def user_subscribers(self) -> int:
        return sum(1 for s in self._user_subs if not s.ws.closed)

    async def _push_execution(self, o: EmuOrder, exec_type: str, trade: Trade | None = None) -> None:
        if not self._user_subs and not self._listen_key_sockets:
            return
        now = self.now()
        ev = {
            "e": "executionReport",
            "E": now,
            "s": o.symbol_id,
            "c": o.client_id,
            "S": o.side,
            "o": o.type,
            "f": o.time_in_force,
            "q": _fmt(o.qty),
            "p": _fmt(o.price),
            "P": _fmt(o.stop_price),
            "F": "0.00000000",
            "g": o.list_id,
            "C": o.client_id if exec_type == "CANCELED" else "",
            "x": exec_type,
            "X": o.status,
            "r": "NONE",
            "i": o.order_id,
            "l": _fmt(trade.qty if trade else 0.0),
            "z": _fmt(o.executed),
            "L": _fmt(trade.price if trade else 0.0),
            "n": _fmt(trade.commission if trade else 0.0),
            "N": trade.commission_asset if trade else None,
            "T": trade.time if trade else now,
            "t": trade.trade_id if trade else -1,
            "v": 0,
            "I": next(self._trade_ids),
            "w": o.is_open and o.working,
            "m": bool(trade.maker) if trade else False,
            "M": False,
            "O": o.created,
            "Z": _fmt(o.quote_executed),
            "Y": _fmt(trade.price * trade.qty if trade else 0.0),
            "Q": "0.00000000",
            "W": o.created,
            "V": "EXPIRE_MAKER",
        }
        for sub in list(self._user_subs):
            await self._send(sub.ws, {"subscriptionId": sub.sub_id, "event": ev})
        for ws in list(self._listen_key_sockets):
            await self._send(ws, ev)


def ccxt_config(emulator: ExchangeEmulator, **extra: Any) -> dict[str, Any]:
    """stratkernel ``ccxt`` broker/data-source options that reach ``emulator`` (rate limiter off)."""
    import ccxt  # local: the emulator itself does not need ccxt

    cfg: dict[str, Any] = {
        "exchange": "binance",
        "api_key": emulator.api_key,
        "secret": emulator.secret,
        "urls": emulator.ccxt_urls(ccxt.binance().urls["api"]),
        "options": dict(EMULATOR_CCXT_OPTIONS),
        "rate_limit": False,
    }
    cfg.update(extra)
    return cfg
