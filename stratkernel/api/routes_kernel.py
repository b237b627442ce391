"""Routes over the running kernel, through :class:`stratkernel.core.service.KernelService` only.

Routes never reach into the kernel: manual orders go through the facade's ``submit_order``, which
takes the same risk-gate path as a strategy's orders, and every operator action is recorded by the
facade with the acting user (``api:<username>``). Without a service (an API built for user admin
only) these routes answer 503.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import PurePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ValidationError
from .auth import Principal, require_role
from .bridge import call_service

router = APIRouter()

Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Trader = Annotated[Principal, Depends(require_role("trader"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
StrategyName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["sma_cross"])]
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$", examples=["3f9a1c2b7d4e"])]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]

MAX_SCRIPT_BYTES = 256 * 1024


async def _call(request: Request, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(service)`` on the kernel's loop (directly, or through a KernelBridge) and return it."""
    service = request.app.state.service
    if service is None:
        raise HTTPException(503, "the kernel is not running in this process")
    return await call_service(service, fn)


def jsonable(value: Any) -> Any:
    """Replace non-finite floats (an unlimited risk limit is ``inf``) with None: JSON has no Infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _known(exc: ValidationError) -> HTTPException | None:
    # The facade reports unknown names as a ValidationError on the name; that is a 404 for a path.
    if exc.field in ("name", "job_id") and "unknown" in exc.reason:
        return HTTPException(404, str(exc))
    return None


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "news at 14:30"}]})
    reason: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f]+$")


class ScriptUpload(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "language": "python",
                    "source": "PARAMS = {'qty': 1.0}\n\ndef on_bar(ctx, bar):\n    pass\n",
                    "start": True,
                }
            ]
        },
    )
    source: str = Field(min_length=1, max_length=MAX_SCRIPT_BYTES)
    language: Literal["python", "javascript"] = "python"
    start: bool = True


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"params": {"fast": 5}}]})
    params: dict[str, float | int | str | bool] | None = Field(None, max_length=100)


class ParamsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"params": {"fast": 8, "slow": 21}}]}
    )
    params: dict[str, float | int | str | bool] = Field(max_length=100)


class ManualOrder(BaseModel):
    """A manual order. It passes the same risk gate as a strategy's: a denial comes back as a value."""

    # strict: "1" is not a quantity; numbers must be sent as numbers.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"symbol": "SYNTH-USD", "side": "buy", "qty": 1.0, "type": "market", "stop_loss": 95.0}
            ]
        },
    )
    symbol: str | None = Field(None, min_length=1, max_length=64)
    side: Literal["buy", "sell"]
    qty: float = Field(gt=0, le=1e12, allow_inf_nan=False)
    type: Literal["market", "limit", "stop"] = "market"
    limit_price: float | None = Field(None, gt=0, le=1e12, allow_inf_nan=False)
    stop_price: float | None = Field(None, gt=0, le=1e12, allow_inf_nan=False)
    stop_loss: float | None = Field(None, gt=0, le=1e12, allow_inf_nan=False)
    take_profit: float | None = Field(None, gt=0, le=1e12, allow_inf_nan=False)
    reduce_only: bool = False
    client_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    tag: str | None = Field(None, max_length=64, pattern=r"^[\x20-\x7e]*$")


class LimitChanges(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"changes": {"max_order_qty": 10}}]}
    )
    changes: dict[str, float | int | str | bool | None] = Field(min_length=1, max_length=50)


class BacktestRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"strategy": "sma_cross", "data": "synthetic:SYNTH-USD?bars=5000", "params": {"fast": 5}}
            ]
        },
    )
    strategy: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
        description="a plugin strategy name, or a script file name (.py/.js) in the scripts folder",
    )
    data: str = Field(
        min_length=1,
        max_length=500,
        pattern=r"^[^\x00-\x1f]+$",
        description="data reference for the data-source plugins, e.g. synthetic:bars=5000 or a relative file path",
    )
    params: dict[str, float | int | str | bool] = Field(default_factory=dict, max_length=100)


Json = dict[str, Any]

# ---- status and plugins --------------------------------------------------------------------------


@router.get(
    "/status",
    tags=["kernel"],
    summary="Kernel status",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "mode": "live",
                        "trading_state": "active",
                        "state_reason": "",
                        "equity": 100000.0,
                        "cash": 100000.0,
                        "stats": {"bars": 0, "orders": 0},
                        "strategies": 1,
                        "uptime_s": 3.2,
                    }
                }
            }
        }
    },
)
async def kernel_status(request: Request, principal: Viewer) -> Json:
    return jsonable(await _call(request, lambda s: s.status()))


@router.get("/plugins", tags=["kernel"], summary="Loaded and failed plugins")
async def plugins(request: Request, principal: Viewer) -> Json:
    return jsonable(await _call(request, lambda s: s.plugins_report()))


# ---- strategies ----------------------------------------------------------------------------------


@router.get(
    "/strategies",
    tags=["strategies"],
    summary="Strategies with status, version and last error",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": [
                        {
                            "name": "sma_cross",
                            "ref": "sma_cross",
                            "kind": "plugin",
                            "symbol": "SYNTH-USD",
                            "version": "5620988b2686",
                            "status": "running",
                            "params": {"fast": 10},
                            "error": None,
                            "resource_use": None,
                        }
                    ]
                }
            }
        }
    },
)
async def strategies(request: Request, principal: Viewer) -> list[Json]:
    return jsonable(await _call(request, lambda s: s.strategies()))


@router.put(
    "/strategies/{name}/script",
    tags=["strategies"],
    summary="Upload or replace a script",
    status_code=status.HTTP_201_CREATED,
)
async def upload_script(request: Request, principal: Trader, name: StrategyName, body: ScriptUpload) -> Json:
    """The script is loaded and validated in the sandbox first; only one that loads is saved and (if
    ``start``) started. A refused script answers 422 with the error and its line."""
    from ..core.errors import StrategyError

    if len(body.source.encode()) > MAX_SCRIPT_BYTES:
        raise ValidationError(
            "source", f"<{len(body.source.encode())} bytes>", f"at most {MAX_SCRIPT_BYTES} bytes"
        )
    try:
        result = await _call(
            request, lambda s: s.upload_script(name, body.source, language=body.language, start=body.start)
        )
    except StrategyError as exc:
        raise HTTPException(422, f"script refused: {exc}") from None
    except ModuleNotFoundError as exc:
        # A language whose sandbox runner is not installed in this build.
        raise ValidationError(
            "language", body.language, f"not available in this build ({exc.name} is missing)"
        ) from None
    return jsonable(result)


@router.post("/strategies/{name}/start", tags=["strategies"], summary="(Re)start a strategy")
async def start_strategy(request: Request, principal: Trader, name: StrategyName, body: StartRequest) -> Json:
    try:
        return jsonable(await _call(request, lambda s: s.start_strategy(name, params=body.params)))
    except ValidationError as exc:
        raise _known(exc) or exc from None


@router.post("/strategies/{name}/stop", tags=["strategies"], summary="Stop a strategy")
async def stop_strategy(request: Request, principal: Trader, name: StrategyName) -> Json:
    try:
        return jsonable(await _call(request, lambda s: s.stop_strategy(name)))
    except ValidationError as exc:
        raise _known(exc) or exc from None


@router.put("/strategies/{name}/params", tags=["strategies"], summary="Change a strategy's params")
async def set_params(request: Request, principal: Trader, name: StrategyName, body: ParamsRequest) -> Json:
    try:
        return jsonable(await _call(request, lambda s: s.set_params(name, body.params)))
    except ValidationError as exc:
        raise _known(exc) or exc from None


@router.get("/strategies/{name}/logs", tags=["strategies"], summary="Recent log lines of a strategy")
async def strategy_logs(
    request: Request, principal: Viewer, name: StrategyName, limit: Limit = 100
) -> list[Json]:
    return jsonable(await _call(request, lambda s: s.logs(name, limit=limit)))


# ---- orders and portfolio ------------------------------------------------------------------------


@router.get("/orders", tags=["trading"], summary="Orders, newest first")
async def orders(
    request: Request,
    principal: Viewer,
    open_only: bool = False,
    strategy: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Json]:
    result = await _call(
        request, lambda s: s.orders(open_only=open_only, strategy=strategy, limit=limit, offset=offset)
    )
    return jsonable(result)


@router.post(
    "/orders",
    tags=["trading"],
    summary="Submit a manual order through the risk gate",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "approved": False,
                        "code": "stop_loss_missing",
                        "message": "an opening order must carry a stop_loss",
                        "rule": "stop_loss",
                        "details": {},
                        "order_id": "",
                    }
                }
            }
        }
    },
)
async def submit_order(request: Request, principal: Trader, body: ManualOrder) -> Json:
    """Returns the gate's decision: ``approved`` with ``order_id``, or a denial with its reason code."""
    raw = body.model_dump(exclude_none=True)
    return jsonable(await _call(request, lambda s: s.submit_order(raw, user=principal.username)))


@router.delete("/orders/{order_id}", tags=["trading"], summary="Cancel an order")
async def cancel_order(
    request: Request,
    principal: Trader,
    order_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")],
) -> Json:
    cancelled = await _call(request, lambda s: s.cancel_order(order_id))
    if not cancelled:
        raise HTTPException(404, f"no open order {order_id!r}")
    return {"cancelled": True, "order_id": order_id}


@router.get("/fills", tags=["trading"], summary="Fills, newest first")
async def fills(
    request: Request,
    principal: Viewer,
    strategy: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Json]:
    return jsonable(await _call(request, lambda s: s.fills(strategy=strategy, limit=limit, offset=offset)))


@router.get("/positions", tags=["trading"], summary="Open positions per strategy")
async def positions(request: Request, principal: Viewer) -> list[Json]:
    return jsonable(await _call(request, lambda s: s.positions()))


@router.get("/equity", tags=["trading"], summary="Equity curve")
async def equity(
    request: Request,
    principal: Viewer,
    since: Annotated[int, Query(ge=0, le=2**53, description="ms epoch")] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> list[Json]:
    return jsonable(await _call(request, lambda s: s.equity(since=since, limit=limit)))


@router.get("/audit", tags=["trading"], summary="Risk-gate audit log (approvals and denials)")
async def audit(
    request: Request, principal: Viewer, limit: Limit = 100, offset: Offset = 0, denied_only: bool = False
) -> list[Json]:
    rows = await _call(request, lambda s: s.audit(limit=limit, offset=offset, denied_only=denied_only))
    return jsonable(rows)


# ---- risk ----------------------------------------------------------------------------------------


@router.get("/risk", tags=["risk"], summary="Trading state and risk limits")
async def risk(request: Request, principal: Viewer) -> Json:
    """Limits that are unlimited (infinite) are shown as null."""
    return jsonable(await _call(request, lambda s: s.risk()))


@router.post("/risk/halt", tags=["risk"], summary="Halt trading")
async def halt(request: Request, principal: Trader, body: Reason) -> Json:
    return jsonable(await _call(request, lambda s: s.halt(body.reason, user=principal.username)))


@router.post("/risk/resume", tags=["risk"], summary="Resume trading (admin: also after a loss-limit halt)")
async def resume(request: Request, principal: Admin, body: Reason) -> Json:
    return jsonable(await _call(request, lambda s: s.resume(body.reason, user=principal.username)))


@router.post("/risk/flatten", tags=["risk"], summary="Close every position, then halt")
async def flatten(request: Request, principal: Trader, body: Reason) -> list[Json]:
    return jsonable(await _call(request, lambda s: s.flatten(body.reason, user=principal.username)))


@router.patch("/risk/limits", tags=["risk"], summary="Change risk limits (audited)")
async def set_limits(request: Request, principal: Admin, body: LimitChanges) -> Json:
    # A refused change raises ConfigError, answered 422 naming the limit.
    return jsonable(await _call(request, lambda s: s.set_limits(body.changes, user=principal.username)))


# ---- backtests -----------------------------------------------------------------------------------


@router.post(
    "/backtests", tags=["backtests"], summary="Submit a backtest job", status_code=status.HTTP_202_ACCEPTED
)
async def submit_backtest(request: Request, principal: Trader, body: BacktestRequest) -> Json:
    """Runs in its own process; poll ``GET /backtests/{id}`` for progress and results.

    A script is named by file name only and taken from the scripts folder; data paths must be
    relative and stay inside the working directory, so a request cannot point at arbitrary files.
    """
    strategy = body.strategy
    if strategy.endswith((".py", ".js")):
        scripts_dir = await _call(request, lambda s: s.scripts_dir())
        strategy = str(PurePath(scripts_dir) / strategy)
    data_path = PurePath(body.data)
    if data_path.is_absolute() or ".." in data_path.parts or "\\" in body.data:
        raise ValidationError(
            "data", body.data, "must be a relative path inside the working directory or a URI"
        )
    job = await _call(
        request,
        lambda s: s.submit_backtest(
            strategy=strategy, data=body.data, params=body.params, user=principal.username
        ),
    )
    return jsonable(job)


@router.get("/backtests", tags=["backtests"], summary="Backtest jobs of this process")
async def list_backtests(request: Request, principal: Viewer) -> list[Json]:
    return jsonable(await _call(request, lambda s: s.backtest_jobs()))


@router.get("/backtests/{job_id}", tags=["backtests"], summary="Progress and results of a backtest")
async def get_backtest(request: Request, principal: Viewer, job_id: JobId) -> Json:
    try:
        return jsonable(await _call(request, lambda s: s.backtest(job_id)))
    except ValidationError as exc:
        raise _known(exc) or exc from None


@router.delete("/backtests/{job_id}", tags=["backtests"], summary="Cancel a backtest")
async def cancel_backtest(request: Request, principal: Trader, job_id: JobId) -> Json:
    try:
        return jsonable(await _call(request, lambda s: s.cancel_backtest(job_id)))
    except ValidationError as exc:
        raise _known(exc) or exc from None
