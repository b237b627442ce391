"""API benchmark: authenticated ``GET /positions`` under concurrent load, and whether that load slows
the kernel.

Run with ``python -m stratkernel.api.bench`` (prints one JSON object; ``--help`` for knobs); the
``make bench`` driver can call :func:`run_api_bench`. What it does, all real, on loopback:

1. Starts a live kernel (paper broker, synthetic symbol, the built-in ``sma_cross`` strategy) and the
   API in one event loop, exactly as ``stratkernel run`` does, on a fresh database in a temp dir.
2. Kernel alone: feeds pre-generated bars through ``kernel.on_live_bar`` for ``phase_s`` seconds,
   yielding to the loop after each bar as a network feed would, and counts bars and kernel events.
3. Kernel under load: the same while a separate process (so the load generator does not share the
   server's CPU time slice accounting) runs ``concurrency`` keep-alive clients that each loop
   ``GET /positions`` with a bearer token, recording every latency.
4. Reports requests/s, latency p50/p90/p99/max, non-200 count, and kernel bars/s and events/s with
   and without load.

The general per-user rate limit is raised for the run so the figure is the API's throughput rather
than the limiter's refusal rate (the limiter still counts every request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_SECRET_BYTES = 48
NOTE = (
    "loop: API on the kernel's event loop; thread: API on its own thread via KernelBridge; process: API "
    "in its own process over the kernel's Unix socket (the default of stratkernel run). The load "
    "generator is a separate process. 2 shared cores: figures are indicative, compare modes run together."
)


async def _load(url: str, token: str, concurrency: int, duration: float) -> dict[str, Any]:
    """The load generator (runs in its own process)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                async with session.get(f"{url}/positions") as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3) if latencies else 0.0
        )

    return {
        "requests": len(latencies),
        "non_200": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
    }


async def _feed(kernel: Any, bars: list[Any], start: int, seconds: float) -> tuple[int, float, int]:
    """Feed bars from ``start`` for ``seconds``; returns (bars fed, elapsed, kernel events seen)."""
    events = [0]
    unsubscribe = kernel.subscribe(lambda ev: events.__setitem__(0, events[0] + 1))
    i = start
    t0 = time.perf_counter()
    deadline = t0 + seconds
    try:
        while time.perf_counter() < deadline and i < len(bars):
            await kernel.on_live_bar(bars[i])
            i += 1
            # A live feed awaits the network between bars; this lets the API's tasks run too.
            await asyncio.sleep(0)
    finally:
        unsubscribe()
    return i - start, time.perf_counter() - t0, events[0]


async def run_api_bench(
    concurrency: int = 32, phase_s: float = 5.0, bars: int = 400_000, mode: str = "loop"
) -> dict[str, Any]:
    """Run the benchmark described in the module docstring and return its figures.

    ``mode``: ``loop`` serves the API on the kernel's event loop (as ``stratkernel run`` does today);
    ``thread`` serves it from :class:`~stratkernel.api.server.ApiThread` with a
    :class:`~stratkernel.api.bridge.KernelBridge`, so requests run on their own loop and thread.
    """
    import secrets

    import httpx

    from stratkernel.core.config import KernelConfig
    from stratkernel.core.runtime import Runtime

    from .app import create_app
    from .bridge import KernelBridge
    from .config import ApiConfig
    from .server import ApiThread, build_server
    from .users import UserStore

    if mode not in ("loop", "thread", "process"):
        raise ValueError(f"mode must be 'loop', 'thread' or 'process', not {mode!r}")
    with tempfile.TemporaryDirectory(prefix="sk-api-bench-") as tmp:
        kcfg = KernelConfig(data_dir=tmp, sandbox={"scripts_dir": str(Path(tmp) / "scripts")})
        runtime = Runtime(kcfg)
        kernel = await runtime.start()
        assert runtime.plugins is not None
        source = runtime.plugins.registry.get("data_source", "synthetic").obj(
            {"bars": bars, "symbol": kcfg.symbols[0], "interval_ms": 1000, "seed": 7}
        )
        series = await source.history(kcfg.symbols[0])
        # Live bars must be newer than anything the kernel has seen: shift the series to now.
        offset = int(time.time() * 1000) - int(series.ts[0]) + 60_000
        all_bars = [series.bar(i)._replace(ts=int(series.ts[i]) + offset) for i in range(len(series))]

        password = secrets.token_urlsafe(18)
        async with UserStore(kcfg.db_path) as seed:
            await seed.add_user("bench", password, "viewer")
        secret = secrets.token_urlsafe(BENCH_SECRET_BYTES)
        config = ApiConfig(jwt_secret=secret, db_path=kcfg.db_path, rate_limit_general="100000000/minute")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        api_thread: ApiThread | None = None
        server_task: asyncio.Task[None] | None = None
        server = None
        api_proc = None
        if mode == "process":
            from .process import start_api_process

            port = sock.getsockname()[1]
            sock.close()
            api_proc = await start_api_process(
                runtime.service, host="127.0.0.1", port=port, db_path=kcfg.db_path,
                env={"STRATKERNEL_JWT_SECRET": secret, "STRATKERNEL_API_RATE_LIMIT_GENERAL": "100000000/minute"},
            )  # fmt: skip
        elif mode == "thread":
            app = create_app(config, service=KernelBridge(runtime.service, asyncio.get_running_loop()))
            api_thread = ApiThread(app, config, log_level="error")
            api_thread.start(sockets=[sock])
        else:
            app = create_app(config, service=runtime.service)
            server = build_server(app, config, log_level="error")
            server_task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                r = await client.post("/auth/token", data={"username": "bench", "password": password})
                r.raise_for_status()
                token = r.json()["access_token"]
                assert (
                    await client.get("/positions", headers={"Authorization": f"Bearer {token}"})
                ).status_code == 200

            # Warm-up so both phases start with a running strategy and primed caches.
            idx = (await _feed(kernel, all_bars, 0, 0.5))[0]
            n0, t0, e0 = await _feed(kernel, all_bars, idx, phase_s)
            idx += n0

            loader = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stratkernel.api.bench", "--load", url, "--token-stdin",
                "--concurrency", str(concurrency), "--seconds", str(phase_s + 1.0),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )  # fmt: skip
            assert loader.stdin is not None and loader.stdout is not None
            loader.stdin.write(token.encode() + b"\n")
            await loader.stdin.drain()
            loader.stdin.close()
            await asyncio.sleep(0.5)  # let the clients connect before measuring the kernel
            n1, t1, e1 = await _feed(kernel, all_bars, idx, phase_s)
            out, _ = await loader.communicate()
            load = json.loads(out.decode())
        finally:
            if api_proc is not None:
                await api_proc.stop()
            if api_thread is not None:
                # The thread's loop must finish its shutdown while the kernel's loop keeps running.
                await asyncio.to_thread(api_thread.stop)
            if server is not None and server_task is not None:
                server.should_exit = True
                await server_task
            await kernel.shutdown()
            await runtime._close()

    alone = n0 / t0
    loaded = n1 / t1
    return {
        "mode": mode,
        "positions_get": {"concurrency": concurrency, **load},
        "kernel_alone": {"bars_per_s": round(alone, 1), "events_per_s": round(e0 / t0, 1), "bars": n0},
        "kernel_under_api_load": {
            "bars_per_s": round(loaded, 1),
            "events_per_s": round(e1 / t1, 1),
            "bars": n1,
        },
        "kernel_throughput_ratio": round(loaded / alone, 3) if alone else None,
    }


def run_api_bench_sync(**kwargs: Any) -> dict[str, Any]:
    """:func:`run_api_bench` for callers without an event loop (``make bench``)."""
    return asyncio.run(run_api_bench(**kwargs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stratkernel.api.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase")
    parser.add_argument("--mode", choices=["loop", "thread", "process", "all"], default="all")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--token-stdin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        # Load-generator mode; the token comes on stdin so it never appears in a process listing.
        token = sys.stdin.readline().strip()
        print(json.dumps(asyncio.run(_load(args.load, token, args.concurrency, args.seconds))))
        return 0
    modes = ["loop", "thread", "process"] if args.mode == "all" else [args.mode]
    results = [asyncio.run(run_api_bench(args.concurrency, args.seconds, mode=m)) for m in modes]
    print(json.dumps({"api_bench": results, "note": NOTE}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
