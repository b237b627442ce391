"""The ``stratkernel`` command line: run, backtest, plugins, risk, users, apikeys."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import click

from . import __version__
from .core.errors import ConfigError, StrategyError, StratkernelError, ValidationError

EXIT_STRATEGY_FAILED = 2


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("aiosqlite", "asyncio", "uvicorn.access", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stratkernel")
def main() -> None:
    """stratkernel: plugin-based trading runtime with sandboxed scripts and a kernel risk gate."""


# -- plugins ---------------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="One machine-readable JSON object.")
def plugins(as_json: bool) -> None:
    """List loaded plugins (kind, name, version, distribution) and every plugin that failed."""
    from .core.plugins import PluginHost

    logging.getLogger("stratkernel.plugins").setLevel(logging.ERROR)
    host = PluginHost()
    host.load_entry_points()
    host.collect()
    report = host.report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{'KIND':<12} {'NAME':<16} {'PLUGIN':<14} {'DISTRIBUTION':<28} VERSION")
    for reg in host.registry.all():
        click.echo(f"{reg.kind:<12} {reg.name:<16} {reg.plugin:<14} {reg.distribution:<28} {reg.version}")
    if report["failures"]:
        click.echo("\nFAILED:")
        for f in report["failures"]:
            click.echo(f"  {f['plugin']} ({f['distribution']}): {f['reason']}")


# -- backtest --------------------------------------------------------------------------------------
def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint="--param")
        k, v = pair.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@main.command()
@click.argument("strategy")
@click.option("--data", "data", required=True, help="Bars: a .csv/.parquet file or a data URI.")
@click.option("--param", "-p", "params", multiple=True, help="Override a parameter: NAME=VALUE (repeatable).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (no progress bar).")
@click.option("--symbol", help="Symbol name for the data (default: the file name).")
def backtest(
    strategy: str,
    data: str,
    params: tuple[str, ...],
    config_path: str | None,
    as_json: bool,
    symbol: str | None,
) -> None:
    """Backtest STRATEGY (a registered strategy or a .py/.js script) over --data.

    Exit codes: 0 done, 1 kernel/config/data error, 2 the strategy failed.
    """
    from .core.backtest import load_data, run_backtest
    from .core.config import load_config
    from .core.plugins import load_plugins

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("stratkernel.plugins").setLevel(logging.ERROR)
    try:
        cfg = load_config(config_path)
        host = load_plugins()
        if not as_json:
            click.echo(f"loading {data} ...", err=True)
        series = load_data(data, host, symbol)
        bar = None
        if not as_json and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=len(series), unit="bar", unit_scale=True, file=sys.stderr, mininterval=0.2)

        def progress(i: int, n: int) -> None:
            if bar is not None:
                bar.n = i
                bar.refresh()

        result = run_backtest(
            strategy, series, params=_parse_params(params), config=cfg, plugins=host, progress=progress
        )
        if bar is not None:
            bar.close()
    except (ConfigError, ValidationError, StrategyError) as exc:
        if as_json:
            click.echo(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
            sys.exit(1)
        _fail(str(exc))
        return
    except StratkernelError as exc:
        _fail(str(exc))
        return
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key in (
            "strategy",
            "symbol",
            "bars",
            "trades",
            "win_rate",
            "pnl",
            "return_pct",
            "max_drawdown_pct",
            "sharpe",
            "orders",
            "denied",
            "elapsed_s",
            "bars_per_s",
        ):
            click.echo(f"{key:>18}: {summary[key]}")
        if result.failure:
            f = result.failure
            where = f" at line {f['line']}" if f.get("line") else ""
            click.echo(f"\nSTRATEGY FAILED ({f['kind']}){where}: {f['message']}", err=True)
    if result.failure:
        sys.exit(EXIT_STRATEGY_FAILED)


# -- run -------------------------------------------------------------------------------------------
@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--no-api", is_flag=True, help="Do not serve the HTTP API.")
@click.option(
    "--reload", "reload_", is_flag=True, help="Restart when plugin code or config changes (development)."
)
@click.option("--verbose", "-v", is_flag=True)
def run(config_path: str | None, no_api: bool, reload_: bool, verbose: bool) -> None:
    """Run the live kernel (default: paper broker on a synthetic feed, API on 127.0.0.1)."""
    _setup_logging(verbose)
    if reload_:
        from .core.devreload import run_with_reload

        args = [a for a in sys.argv[1:] if a != "--reload"]
        sys.exit(run_with_reload(args, config_path))
    from .core.config import load_config
    from .core.runtime import Runtime

    try:
        cfg = load_config(config_path)
        if no_api:
            cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"enabled": False})})
        runtime = Runtime(cfg)
    except StratkernelError as exc:
        _fail(str(exc))
        return

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.run(stop)

    try:
        asyncio.run(_main())
    except StratkernelError as exc:
        _fail(str(exc))


# -- risk ------------------------------------------------------------------------------------------
@main.group()
def risk() -> None:
    """Show the risk state and limits; halt, resume or flatten a running kernel."""


def _store_call(config_path: str | None, fn: Any) -> Any:
    from .core.config import load_config
    from .core.store import Store

    cfg = load_config(config_path)

    async def go() -> Any:
        store = await Store.open(cfg.db_path)
        try:
            return await fn(store, cfg)
        finally:
            await store.close()

    return asyncio.run(go())


@risk.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def risk_show(config_path: str | None, as_json: bool) -> None:
    """The persisted trading state, its reason, and the configured limits."""

    async def fn(store: Any, cfg: Any) -> dict[str, Any]:
        state = await store.load_risk_state()
        return {
            "state": state,
            "limits": cfg.risk.model_dump(mode="json"),
            "pending_command": await store.get_meta("control"),
        }

    try:
        out = _store_call(config_path, fn)
    except StratkernelError as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    st = out["state"]
    click.echo(
        f"trading state: {st.get('trading_state', 'active (never changed)')}  {st.get('state_reason', '')}"
    )
    from .core.risk_report import state_lines

    for line in state_lines(st):
        click.echo(line)
    click.echo("limits:")
    for k, v in out["limits"].items():
        click.echo(f"  {k}: {v}")


def _control(config_path: str | None, command: str, reason: str) -> None:
    from .core.store import now_ms

    async def fn(store: Any, cfg: Any) -> None:
        await store.set_meta(
            "control",
            {"command": command, "reason": reason, "ts": now_ms(), "user": os.environ.get("USER", "cli")},
        )

    try:
        _store_call(config_path, fn)
    except StratkernelError as exc:
        _fail(str(exc))
    click.echo(f"{command} requested; a running kernel applies it within a second (audited).")


@risk.command("halt")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--reason", default="operator halt from CLI")
def risk_halt(config_path: str | None, reason: str) -> None:
    """Kill switch: halt trading (nothing new passes the gate)."""
    _control(config_path, "halt", reason)


@risk.command("resume")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--reason", default="operator resume from CLI")
def risk_resume(config_path: str | None, reason: str) -> None:
    """Resume trading after a halt (the operator's recovery condition)."""
    _control(config_path, "resume", reason)


@risk.command("flatten")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--reason", default="operator flatten from CLI")
def risk_flatten(config_path: str | None, reason: str) -> None:
    """Close every position through the gate, then halt."""
    _control(config_path, "flatten", reason)


def _attach_optional_groups() -> None:
    try:
        from .api.cli_users import apikeys_group, users_group
    except ImportError as exc:  # the API extra is part of the base install; this guards partial installs
        logging.getLogger("stratkernel.cli").debug("users/apikeys commands unavailable: %s", exc)
        return
    main.add_command(users_group, "users")
    main.add_command(apikeys_group, "apikeys")


_attach_optional_groups()

from .cli_data import data_group  # noqa: E402  (market-data commands; kept next to the other groups)

main.add_command(data_group, "data")


if __name__ == "__main__":  # pragma: no cover
    main()
