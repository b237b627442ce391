"""``GET /events``: the kernel's event stream over a websocket.

Authentication never goes in the URL (URLs end up in logs and browser history). A client either

- offers the subprotocols ``stratkernel.v1`` and ``bearer.<access token>``; the server accepts with
  ``stratkernel.v1`` only (the token is never echoed back), or
- connects with no credentials and sends ``{"type": "auth", "token": "<access token>"}`` or
  ``{"type": "auth", "api_key": "<key>"}`` as its first message, within ``ws_auth_timeout_seconds``.

The server then sends ``{"type": "hello", ...}`` and every kernel event as
``{"type": ..., "ts": ..., "data": {...}}``, plus ``{"type": "heartbeat", "ts": ...}`` every
``ws_heartbeat_seconds``. At each heartbeat the credential is checked again, so logout, a revoked
session or API key, or a disabled user closes the stream.

The kernel is never slowed by a client: the kernel's callback only does ``put_nowait`` on each
client's bounded queue. A client whose queue is full is dropped (close code 1013, "slow consumer")
and may reconnect.

Close codes: 4401 not authenticated, 4403 role too low, 4429 rate limited, 1008 origin not allowed,
1011 no kernel in this process, 1013 slow consumer, 1013 too many connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Response, WebSocket, WebSocketDisconnect

from ..core.errors import AuthError
from ..core.events import Event
from .auth import ROLE_ATTR, Principal, TokenService
from .limits import RateLimited
from .routes_kernel import jsonable

log = logging.getLogger("stratkernel.api.events")

SUBPROTOCOL = "stratkernel.v1"
BEARER_PREFIX = "bearer."
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429
CLOSE_POLICY = 1008
CLOSE_NO_KERNEL = 1011
CLOSE_TRY_LATER = 1013


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Event]
    dropped: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class EventHub:
    """Fans kernel events out to websocket clients. One kernel subscription however many clients."""

    def __init__(self, queue_size: int, max_connections: int) -> None:
        self.queue_size = queue_size
        self.max_connections = max_connections
        self.subscribers: set[Subscriber] = set()
        self.dropped_total = 0
        self._unsubscribe: Callable[[], Any] | None = None

    def attach(self, service: Any) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = service.subscribe(self.publish)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def publish(self, event: Event) -> None:
        """Called synchronously by the kernel for every event: constant work per client, never waits."""
        for sub in tuple(self.subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.dropped = True
                sub.wake.set()
                self.subscribers.discard(sub)
                self.dropped_total += 1

    def connect(self) -> Subscriber | None:
        if len(self.subscribers) >= self.max_connections:
            return None
        sub = Subscriber(asyncio.Queue(maxsize=self.queue_size))
        self.subscribers.add(sub)
        return sub

    def disconnect(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)


class EventsRole:
    """Role marker for the websocket route: authentication happens in-band, after ``accept``."""

    role = "viewer"

    def __init__(self) -> None:
        setattr(self, ROLE_ATTR, self.role)

    async def __call__(self, websocket: WebSocket) -> str:
        websocket.state.required_role = self.role
        return self.role


events_role = EventsRole()
router = APIRouter()


def _encode(event: Event) -> str:
    return json.dumps(jsonable(event.as_dict()), default=str, separators=(",", ":"))


async def _authenticate(
    websocket: WebSocket, offered_token: str | None, timeout: float
) -> tuple[Principal, Any]:
    """Return the principal and a coroutine factory that re-checks the credential."""
    tokens: TokenService = websocket.app.state.tokens
    if offered_token is not None:
        token: str | None = offered_token
        api_key = None
    else:
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), timeout)
        except TimeoutError:
            raise AuthError("no auth message in time") from None
        except KeyError:
            # Starlette's receive_text on a binary frame.
            raise AuthError("the auth message must be a text frame") from None
        try:
            msg = json.loads(raw)
        except ValueError:
            raise AuthError('the first message must be JSON: {"type": "auth", "token": ...}') from None
        if not isinstance(msg, dict) or msg.get("type") != "auth":
            raise AuthError('the first message must be {"type": "auth", ...}')
        token, api_key = msg.get("token"), msg.get("api_key")
        if (
            not isinstance(token, str | None)
            or not isinstance(api_key, str | None)
            or (token is None) == (api_key is None)
        ):
            raise AuthError("send exactly one of token or api_key")
    if token is not None:
        principal = await tokens.authenticate_token(token)
        assert principal.family_id is not None
        family_id, user_id = principal.family_id, principal.user.id

        async def recheck() -> Any:
            return await tokens.store.check_session(family_id, user_id)

    else:
        assert api_key is not None
        principal = await tokens.authenticate_api_key(api_key)
        key = api_key

        async def recheck() -> Any:
            return await tokens.store.verify_api_key(key)

    return principal, recheck


@router.websocket("/events", dependencies=[Depends(events_role)])
async def events(websocket: WebSocket) -> None:
    app = websocket.app
    config = app.state.config
    hub: EventHub = app.state.events
    origin = websocket.headers.get("origin")
    # Browsers do not apply CORS to websockets, so the origin is checked here against the same list.
    if origin is not None and origin not in config.cors_origins:
        await websocket.close(code=CLOSE_POLICY, reason="origin not allowed")
        return
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    bearer = [p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)]
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        principal, recheck = await _authenticate(
            websocket, bearer[0] if bearer else None, config.ws_auth_timeout_seconds
        )
    except AuthError as exc:
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=str(exc)[:120])
        return
    except WebSocketDisconnect:
        return
    if not principal.has_role(websocket.state.required_role):
        await websocket.close(code=CLOSE_FORBIDDEN, reason="role too low")
        return
    try:
        await app.state.limits.hit_general(principal.rate_key, Response())
    except RateLimited as exc:
        await websocket.close(code=CLOSE_RATE_LIMITED, reason=f"rate limited; retry in {exc.retry_after}s")
        return
    service = app.state.service
    if service is None:
        await websocket.close(code=CLOSE_NO_KERNEL, reason="the kernel is not running in this process")
        return
    hub.attach(service)
    sub = hub.connect()
    if sub is None:
        await websocket.close(code=CLOSE_TRY_LATER, reason="too many event clients")
        return
    try:
        with contextlib.suppress(WebSocketDisconnect):  # the client left: nothing to report
            await websocket.send_text(
                json.dumps(
                    {"type": "hello", "user": principal.username, "role": principal.role, "ts": _now_ms()}
                )
            )
            await _pump(websocket, sub, recheck, config.ws_heartbeat_seconds)
    finally:
        hub.disconnect(sub)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _pump(websocket: WebSocket, sub: Subscriber, recheck: Any, heartbeat: float) -> None:
    """Send queued events and heartbeats until the client leaves, is dropped, or loses its credential."""
    reader = asyncio.create_task(_drain_client(websocket))
    try:
        while True:
            if sub.dropped:
                await websocket.close(code=CLOSE_TRY_LATER, reason="slow consumer")
                return
            if reader.done():
                return
            get = asyncio.ensure_future(sub.queue.get())
            woke = asyncio.ensure_future(sub.wake.wait())
            done, _ = await asyncio.wait(
                {get, woke, reader}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            woke.cancel()
            if get in done:
                await websocket.send_text(_encode(get.result()))
                continue
            get.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await get
            if not done:
                try:
                    await recheck()
                except AuthError as exc:
                    await websocket.close(code=CLOSE_UNAUTHORIZED, reason=str(exc)[:120])
                    return
                await websocket.send_text(json.dumps({"type": "heartbeat", "ts": _now_ms()}))
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
            await reader


async def _drain_client(websocket: WebSocket) -> None:
    # Clients have nothing to say after auth; reading keeps control frames flowing and notices a
    # disconnect. Anything a client sends is discarded.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
