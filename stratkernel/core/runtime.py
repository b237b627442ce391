"""``stratkernel run``: the live kernel with its store, data feed, API server and control channel."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from pathlib import Path
from typing import Any

from .config import KernelConfig
from .errors import ConfigError, StratkernelError
from .kernel import Kernel, tune_gc_for_trading
from .model import Bar, Quote, TradingState
from .plugins import PluginHost, load_plugins
from .store import Store

log = logging.getLogger("stratkernel.run")


class Runtime:
    def __init__(self, config: KernelConfig, *, plugins: PluginHost | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.kernel: Kernel | None = None
        self.store: Store | None = None
        self.service: Any = None
        self.api_url: str | None = None
        self.ready = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> Kernel:
        cfg = self.config
        self.plugins = self.plugins or load_plugins()
        for f in self.plugins.failures:
            log.warning("plugin %s (%s) not loaded: %s", f.plugin, f.distribution, f.reason)
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        self.store = await Store.open(cfg.db_path)
        kernel = self.kernel = Kernel(cfg, self.plugins, store=self.store, mode="live")
        await kernel.setup()
        saved = {row["name"]: row for row in await self.store.strategies()}
        for sc in cfg.strategies:
            state = saved.get(sc.name, {}).get("state")
            kernel.add_strategy(sc.name, sc.strategy, symbol=sc.symbol, params=sc.params, state=state)
        if cfg.sandbox.load_scripts:
            scripts = Path(cfg.sandbox.scripts_dir)
            for path in sorted(scripts.glob("*.py")) + sorted(scripts.glob("*.js")):
                if path.stem not in kernel.slots:
                    kernel.add_strategy(path.stem, str(path), state=saved.get(path.stem, {}).get("state"))
        await kernel.preflight()
        await kernel.start_live()
        from .service import KernelService

        self.service = KernelService(kernel, self.store, self.plugins)
        tune_gc_for_trading()
        return kernel

    async def run(self, stop: asyncio.Event) -> None:
        try:
            kernel = await self.start()
        except StratkernelError:
            await self._close()
            raise
        cfg = self.config
        log.info(
            "stratkernel running: broker=%s data=%s strategies=%s db=%s",
            cfg.broker.name,
            cfg.data.source,
            ",".join(kernel.slots) or "-",
            cfg.db_path,
        )
        if kernel.trading_state is not TradingState.ACTIVE:
            log.warning(
                "trading state is %s (%s): resume with `stratkernel risk resume`",
                kernel.trading_state.value,
                kernel.state_reason,
            )
        server = None
        if cfg.api.enabled:
            server = await self._start_api()
        self._tasks = [
            asyncio.create_task(self._feed(stop), name="feed"),
            asyncio.create_task(self._periodic(stop), name="periodic"),
        ]
        watcher = self._start_watcher(stop)
        if watcher is not None:
            self._tasks.append(watcher)
        self.ready.set()
        try:
            await stop.wait()
        finally:
            log.info("stopping ...")
            if server is not None:
                if inspect.iscoroutinefunction(server.stop):
                    await server.stop()  # the API process: SIGTERM, then wait
                else:
                    await asyncio.to_thread(server.stop)  # uvicorn finishes its lifespan on its own thread
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await kernel.shutdown()
            await self._close()
            s = kernel.stats
            log.info(
                "stopped: %d bars, %d orders, %d denied, %d fills; state saved in %s",
                s["bars"],
                s["orders"],
                s["denied"],
                s["fills"],
                cfg.db_path,
            )

    async def _close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None

    def _start_watcher(self, stop: asyncio.Event) -> asyncio.Task[Any] | None:
        try:
            from stratkernel.sandbox.reload import ScriptWatcher
        except ImportError:
            return None
        assert self.kernel is not None
        watcher = ScriptWatcher(self.kernel, Path(self.config.sandbox.scripts_dir), self.config.sandbox)
        return asyncio.create_task(watcher.run(stop), name="watcher")

    async def _start_api(self) -> Any:
        try:
            from stratkernel.api.app import create_app
            from stratkernel.api.bridge import KernelBridge
            from stratkernel.api.config import ApiConfig, ensure_local_secret, load_signing_keys
            from stratkernel.api.process import start_api_process
            from stratkernel.api.server import ApiThread
            from stratkernel.api.users import UserStore
        except ImportError as exc:
            log.warning("API not available: %s", exc)
            return None
        cfg = self.config
        env_secret = os.environ.get("STRATKERNEL_JWT_SECRET") or os.environ.get("STRATKERNEL_API_JWT_SECRET")
        kwargs: dict[str, Any] = {"host": cfg.api.host, "port": cfg.api.port, "db_path": cfg.db_path}
        if not env_secret and not os.environ.get("STRATKERNEL_API_JWT_SECRET_FILE"):
            secret_file = Path(cfg.data_dir) / "jwt.secret"
            ensure_local_secret(secret_file)  # generated on the first local run, mode 0600, never logged
            kwargs["jwt_secret_file"] = secret_file
        try:
            api_cfg = ApiConfig(**kwargs)
        except Exception as exc:
            raise ConfigError("api", str(exc)) from None
        users = UserStore(cfg.db_path)
        await users.open()
        try:
            password = await users.ensure_admin("admin")
        finally:
            await users.close()
        if password:
            # printed once, to the terminal only: it is not stored anywhere in clear
            print(
                f"\n  Created local API user 'admin' with password: {password}\n"
                f"  (shown once; change it with `stratkernel users passwd admin`)\n",
                flush=True,
            )
        load_signing_keys(api_cfg)  # refuse a weak secret here, before anything listens
        if cfg.api.mode == "process":
            # The API in its own process, calling the kernel over a private Unix socket: API load can
            # take a CPU, never the kernel's interpreter (measured in make bench).
            try:
                proc = await start_api_process(
                    self.service,
                    host=cfg.api.host,
                    port=cfg.api.port,
                    db_path=cfg.db_path,
                    secret_file=kwargs.get("jwt_secret_file"),
                )
            except RuntimeError as exc:
                log.error(
                    "API could not start on %s:%s (%s; port in use? set [api] port or STRATKERNEL_API__PORT); "
                    "the kernel keeps running without the API",
                    cfg.api.host,
                    cfg.api.port,
                    exc,
                )
                return None
            self.api_url = f"http://{cfg.api.host}:{proc.port}"
            log.info("API listening on %s (own process, pid %d)", self.api_url, proc.proc.pid)
            return proc
        # The API on its own thread and loop; each facade call is scheduled onto the kernel's loop.
        bridge = KernelBridge(self.service, asyncio.get_running_loop())
        api = ApiThread(create_app(api_cfg, service=bridge), api_cfg, log_level="warning")
        try:
            await asyncio.to_thread(api.start)
        except RuntimeError as exc:
            log.error(
                "API could not listen on %s:%s (%s; port in use? set [api] port or STRATKERNEL_API__PORT); "
                "the kernel keeps running without the API",
                cfg.api.host,
                cfg.api.port,
                exc,
            )
            return None
        self.api_url = f"http://{cfg.api.host}:{api.port}"
        log.info("API listening on %s", self.api_url)
        return api

    async def _feed(self, stop: asyncio.Event) -> None:
        kernel = self.kernel
        assert kernel is not None and self.plugins is not None
        dcfg = self.config.data
        factory = self.plugins.registry.get("data_source", dcfg.source).obj
        options = dict(dcfg.options)
        options.setdefault("symbol", self.config.symbols[0])
        source = factory(options)
        backoff = 1.0
        while not stop.is_set():
            try:
                async for item in source.stream():
                    if isinstance(item, Bar):
                        await kernel.on_live_bar(item)
                    elif isinstance(item, Quote):
                        await kernel.on_live_quote(item)
                    else:
                        kernel.stats["refused_data"] += 1
                        log.warning(
                            "data source %s yielded %s, not a Bar or Quote", dcfg.source, type(item).__name__
                        )
                    backoff = 1.0
                    if stop.is_set():
                        return
                log.info("data source %s ended", dcfg.source)
                return
            except asyncio.CancelledError:
                raise
            except StratkernelError as exc:
                log.error("data source %s: %s; retrying in %.0fs", dcfg.source, exc, backoff)
            except Exception:
                log.exception("data source %s failed; retrying in %.0fs", dcfg.source, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)

    async def _periodic(self, stop: asyncio.Event) -> None:
        kernel = self.kernel
        assert kernel is not None and self.store is not None
        loop = asyncio.get_running_loop()
        next_equity = next_preflight = loop.time()
        while not stop.is_set():
            now = loop.time()
            try:
                # between two live events, never inside one: risk_tick drains fills, and two drains
                # interleaving on the one SQLite connection broke record_fill's transaction
                async with kernel.lock:
                    await self._control()
                    if now >= next_equity:
                        await kernel.snapshot_equity()
                        kernel.emit(
                            "heartbeat",
                            {
                                "equity": kernel.portfolio.equity(),
                                "bars": kernel.stats["bars"],
                                "state": kernel.trading_state.value,
                            },
                        )
                        next_equity = now + self.config.equity_snapshot_s
                    if now >= next_preflight:
                        await kernel.preflight()
                        next_preflight = now + self.config.preflight_interval_s
                    await kernel.risk_tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic task failed")
            await asyncio.sleep(0.25)

    async def _control(self) -> None:
        """Apply a halt/resume/flatten requested by the CLI through the store."""
        assert self.store is not None and self.kernel is not None
        cmd = await self.store.get_meta("control")
        if not cmd:
            return
        await self.store.db.execute("DELETE FROM meta WHERE key = 'control'")
        await self.apply_command(
            cmd.get("command", ""), cmd.get("reason", ""), source=f"cli:{cmd.get('user', '?')}"
        )

    async def apply_command(self, command: str, reason: str, *, source: str) -> None:
        kernel = self.kernel
        assert kernel is not None
        if command == "halt":
            if kernel.risk is not None:  # the kill switch: flattens first when [risk] halt_flattens is set
                await kernel.risk.kill_switch(reason, source=source)
            else:
                await kernel.set_trading_state(TradingState.HALTED, reason, source=source)
        elif command == "resume":
            await kernel.set_trading_state(TradingState.ACTIVE, reason, source=source)
        elif command == "flatten":
            await kernel.set_trading_state(TradingState.REDUCING, reason, source=source)
            await kernel.flatten(source=source)
            await kernel.set_trading_state(TradingState.HALTED, f"flattened: {reason}", source=source)
        else:
            log.warning("ignoring unknown control command %r", command)
