"""Configuration: one frozen, typed model per component, loaded from a TOML file and the environment.

Precedence (highest first): environment variables (``STRATKERNEL_`` prefix, ``__`` for nesting, e.g.
``STRATKERNEL_RISK__MAX_ORDER_QTY=5``), the TOML file (``--config FILE`` or ``./stratkernel.toml``),
then the embedded defaults, which run a paper broker on a synthetic feed with the example strategy.

Secrets never live in the file: broker credentials come from the environment (see each broker's doc)
and the API's JWT secret from ``STRATKERNEL_JWT_SECRET`` or a secret file.

A wrong value is refused with a :class:`ConfigError` naming the field and what is allowed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError
from .risk import RiskConfig

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class DataConfig(BaseModel):
    model_config = _FROZEN
    source: str = Field("synthetic", description="Registered data-source name.")
    options: dict[str, Any] = Field(
        default_factory=lambda: {"interval_ms": 1000, "speed": 20.0, "seed": 7},
        description="Passed to the data source's factory.",
    )


class BrokerConfig(BaseModel):
    model_config = _FROZEN
    name: str = Field("paper", description="Registered broker name.")
    options: dict[str, Any] = Field(default_factory=dict, description="Passed to the broker's factory.")


class StrategyConfig(BaseModel):
    model_config = _FROZEN
    name: str = Field(
        ..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="Instance name (unique)."
    )
    strategy: str = Field(..., description="A registered strategy name, or a script path (.py/.js).")
    symbol: str | None = Field(None, description="Primary symbol; defaults to the first kernel symbol.")
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of the strategy's PARAMS.")


class SandboxConfig(BaseModel):
    model_config = _FROZEN
    call_timeout_s: float = Field(0.5, gt=0, le=60, description="Wall-time budget per callback (per bar).")
    load_timeout_s: float = Field(
        5.0, gt=0, le=120, description="Wall-time budget to load and validate a script."
    )
    memory_mb: int = Field(512, ge=64, le=16384, description="RSS cap of a script's worker process.")
    max_orders_per_bar: int = Field(10, ge=1, le=1000, description="Order requests one callback may make.")
    scripts_dir: str = Field("user_strategies", description="Folder watched for user scripts.")
    load_scripts: bool = Field(False, description="Load every script in scripts_dir at start.")
    on_delete: Literal["keep", "flatten"] = Field(
        "keep", description="What happens to a deleted script's positions."
    )


class ApiSection(BaseModel):
    model_config = _FROZEN
    enabled: bool = Field(True, description="Serve the HTTP API from `stratkernel run`.")
    host: str = Field("127.0.0.1", description="Listen address; keep loopback unless behind a proxy.")
    port: int = Field(8787, ge=0, le=65535, description="Listen port (0: any free port).")
    mode: Literal["process", "thread"] = Field(
        "process",
        description="`process`: the API runs in its own process and calls the kernel over a private Unix "
        "socket, so API load cannot slow trading; `thread`: in the kernel's process on its own thread.",
    )


class KernelConfig(BaseSettings):
    """The whole runtime configuration."""

    model_config = SettingsConfigDict(
        env_prefix="STRATKERNEL_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    data_dir: str = Field(".stratkernel", description="Where the database, secret and caches live.")
    db: str | None = Field(None, description="SQLite file; default <data_dir>/stratkernel.db.")
    symbols: list[str] = Field(
        default_factory=lambda: ["SYNTH-USD"],
        min_length=1,
        description="Symbols the kernel trades; the first is the default for strategies.",
    )
    initial_cash: float = Field(100_000.0, gt=0, description="Paper account starting cash.")
    currency: str = Field("USD", description="Account currency of the paper broker.")
    equity_snapshot_s: float = Field(5.0, gt=0, description="Live: seconds between equity snapshots.")
    preflight_interval_s: float = Field(300.0, gt=0, description="Live: seconds between broker preflights.")
    data: DataConfig = Field(default_factory=DataConfig, description="The live data feed.")
    broker: BrokerConfig = Field(
        default_factory=BrokerConfig, description="The broker plugin and its options."
    )
    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [StrategyConfig(name="sma_cross", strategy="sma_cross", params={"qty": 1.0})],
        description="Strategy instances `stratkernel run` starts.",
    )
    risk: RiskConfig = Field(default_factory=RiskConfig, description="Risk-gate rules and limits.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="User-script sandbox budgets.")
    api: ApiSection = Field(default_factory=ApiSection, description="The HTTP API of `stratkernel run`.")

    @property
    def db_path(self) -> Path:
        return Path(self.db) if self.db else Path(self.data_dir) / "stratkernel.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env beats the file (init kwargs carry the file's content)
        return (env_settings, init_settings)


def load_config(path: str | Path | None = None, **overrides: Any) -> KernelConfig:
    """Load the TOML file (if any) and the environment; refuse bad values by field name."""
    data: dict[str, Any] = {}
    if path is None and Path("stratkernel.toml").is_file():
        path = "stratkernel.toml"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("--config", f"file not found: {p}")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    data.update(overrides)
    try:
        return KernelConfig(**data)
    except PydanticValidationError as exc:
        raise config_error_from(exc) from None


def config_error_from(exc: PydanticValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "config"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown setting (check the spelling; see docs/configuration.md)"
    elif err["type"] == "enum" and "expected" in err.get("ctx", {}):
        msg = f"must be one of {err['ctx']['expected']}"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(loc, f"{msg}; got {err.get('input')!r}{more}")
