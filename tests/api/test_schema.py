"""schemathesis against the app's own OpenAPI document, over real HTTP, with a live kernel behind it.

Every operation is called with generated inputs, authenticated as an admin API key (so password
changes or logouts among the generated calls do not end the test's credentials). Checked: no 5xx,
documented status codes, documented content types and headers, and bodies matching their schemas.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stratkernel.api.app import create_app
from stratkernel.api.server import build_server
from stratkernel.api.users import UserStore
from stratkernel.core.config import KernelConfig
from stratkernel.core.runtime import Runtime

from .conftest import FAST_HASHER, make_config, seed_users

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # Inputs that break the schema (wrong types, out of bounds, unknown fields) must get a 4xx.
    negative_data_rejection,
]


class ServerThread:
    """A live kernel and the API, in one event loop on a thread, serving 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.base_url = ""
        self.api_key = ""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        kcfg = KernelConfig(data_dir=str(self.tmp / "k"), sandbox={"scripts_dir": str(self.tmp / "scripts")})
        runtime = Runtime(kcfg)
        kernel = await runtime.start()
        store = UserStore(kcfg.db_path, password_hasher=FAST_HASHER)
        await store.open()
        await seed_users(store)
        _, self.api_key = await store.create_api_key("ada", "schemathesis", "admin")
        # Limits high enough that the generated traffic is not all 429s (the limits have their own tests).
        config = make_config(
            self.tmp,
            db_path=kcfg.db_path,
            rate_limit_general="100000/minute",
            rate_limit_login_ip="100000/minute",
            rate_limit_login_user="100000/minute",
            rate_limit_refresh="100000/minute",
        )
        app = create_app(config, service=runtime.service, user_store=store)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = build_server(app, config, log_level="error")
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        self.ready.set()
        await self.stop.wait()
        server.should_exit = True
        await task
        await kernel.shutdown()
        await runtime._close()
        await store.close()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(120)
        if self.error is not None:
            raise self.error
        assert self.base_url, "server did not start"

    def close(self) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    server = ServerThread(tmp_path_factory.mktemp("schema"))
    server.start()
    yield server
    server.close()


def _operations(base_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # Each backtest is a separate Python process: generated submissions would load the shared
    # machine for minutes. The route has its own test in test_kernel_routes.py.
    return [op for op in operations if not (op.method.upper() == "POST" and op.path == "/backtests")]


@pytest.mark.slow
def test_api_conforms_to_its_schema(live_api: ServerThread) -> None:
    # Driven through hypothesis directly: schemathesis' pytest plugin does not support pytest 9 yet.
    operations = _operations(live_api.base_url)
    assert len(operations) >= 40
    failures: list[str] = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
            print_blob=False,
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=live_api.base_url,
                headers={"X-API-Key": live_api.api_key},
                checks=CHECKS,
                timeout=60,
            )

        try:
            run()
        except Exception as exc:
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
