"""The FastAPI application: :func:`create_app` wires config, auth, limits, middleware and routes.

Usage::

    from stratkernel.api.app import create_app
    from stratkernel.api.config import ApiConfig

    app = create_app(ApiConfig())          # ConfigError without a strong JWT secret
    # serve with stratkernel.api.server.build_server(app, config) or any ASGI server

Every route declares a role (``public``, ``viewer``, ``trader``, ``admin``) through its dependencies;
the declared role is published in the OpenAPI document as ``x-required-role`` on each operation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts

from .. import __version__
from .auth import TokenService, public, route_roles
from .config import ApiConfig, load_signing_keys
from .events import EventHub
from .events import router as events_router
from .examples import RESPONSE_EXAMPLES
from .http_errors import install_error_handlers
from .limits import RateLimits
from .middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from .routes_auth import router as auth_router
from .routes_kernel import router as kernel_router
from .schemas import ErrorResponse, Health, Version
from .users import UserStore

API_DESCRIPTION = """\
Drive a stratkernel instance: sessions, users, API keys (and, as they land, strategies, orders, risk
and backtests).

Authenticate with `POST /auth/token` (OAuth2 password form) and send `Authorization: Bearer <token>`,
or send a program's key as `X-API-Key`. Every operation states its minimum role in `x-required-role`.
Errors always have the shape `{"error": {"code": ..., "message": ...}}`.
"""

# Documented on every operation; all of them use the one error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad request"},
    401: {"model": ErrorResponse, "description": "missing, invalid, expired or revoked credentials"},
    403: {"model": ErrorResponse, "description": "the caller's role does not allow this"},
    404: {"model": ErrorResponse, "description": "not found"},
    413: {"model": ErrorResponse, "description": "request body too large"},
    422: {"model": ErrorResponse, "description": "request validation failed"},
    429: {"model": ErrorResponse, "description": "rate limit exceeded (see Retry-After)"},
    500: {"model": ErrorResponse, "description": "internal error (no details are disclosed)"},
}


def _meta_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(public)], responses=ERROR_RESPONSES)

    @router.get("/health", response_model=Health, tags=["meta"], summary="Liveness")
    async def health() -> Health:
        return Health()

    @router.get("/version", response_model=Version, tags=["meta"], summary="Version")
    async def version() -> Version:
        return Version(version=__version__)

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    @router.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="stratkernel API")

    return router


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for ctx in iter_route_contexts(app.routes):
        if not isinstance(ctx.original_route, APIRoute) or not ctx.include_in_schema:
            continue
        roles = route_roles(ctx)
        path_item = schema.get("paths", {}).get(ctx.path_format, {})
        for method in ctx.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            if len(roles) == 1:
                operation["x-required-role"] = next(iter(roles))
            example = RESPONSE_EXAMPLES.get((method.upper(), str(ctx.path_format)))
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {}).get("application/json")
                if example is not None and code.startswith("2") and content is not None:
                    content.setdefault("example", example)
    app.openapi_schema = schema
    return schema


def create_app(
    config: ApiConfig,
    *,
    service: Any = None,
    user_store: UserStore | None = None,
) -> FastAPI:
    """Build the API. Refuses (:class:`ConfigError`) without a strong signing secret or valid keys.

    ``user_store``: an existing store to use (opened if needed, left open); without it the app opens
    ``config.db_path`` at startup and closes it at shutdown. ``service``: the kernel facade routes use.
    """
    keys = load_signing_keys(config)
    owns_store = user_store is None
    store = user_store if user_store is not None else UserStore(config.db_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        try:
            yield
        finally:
            hub.detach()
            if owns_store:
                await store.close()

    app = FastAPI(
        title="stratkernel",
        version=__version__,
        description=API_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.user_store = store
    app.state.tokens = TokenService(config, keys, store)
    app.state.limits = RateLimits(config)
    app.state.service = service
    hub = app.state.events = EventHub(config.ws_queue_size, config.ws_max_connections)

    install_error_handlers(app)
    # Added innermost first: the security headers wrap everything, including CORS and 413 answers.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
            # Credentials are headers, never cookies, so the browser need not send cookies.
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)

    app.include_router(_meta_router())
    app.include_router(auth_router, responses=ERROR_RESPONSES)
    app.include_router(events_router)
    app.include_router(
        kernel_router,
        responses={**ERROR_RESPONSES, 503: {"model": ErrorResponse, "description": "kernel not running"}},
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def iter_routes(app: FastAPI) -> list[tuple[str, str, set[str]]]:
    """Every route the app serves, flattened through included routers: (methods, path, declared roles).

    Routes that are not API routes (plain Starlette routes, mounts) get ``{"<not an API route>"}``,
    since they cannot carry a role dependency.
    """
    found = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute | APIWebSocketRoute):
            methods = ",".join(sorted(getattr(route, "methods", None) or {"WS"}))
            found.append((methods, str(ctx.path), route_roles(ctx)))
        else:
            found.append(("?", str(getattr(route, "path", route)), {"<not an API route>"}))
    return found


def undeclared_routes(app: FastAPI) -> list[str]:
    """Routes that declare no role, or more than one (a mistake either way). Empty when all is well."""
    return [
        f"{methods} {path}: {sorted(roles) or 'no role'}"
        for methods, path, roles in iter_routes(app)
        if len(roles) != 1 or not roles <= {"public", "viewer", "trader", "admin"}
    ]
