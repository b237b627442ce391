"""Fixtures for the sandbox tests: real plugins, a real indicator engine, real worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sandbox_support import FAST_LIMITS, make_series

from stratkernel.core.context import IndicatorEngine
from stratkernel.core.data import BarSeries
from stratkernel.core.plugins import PluginHost, load_plugins
from stratkernel.sandbox.host import SandboxLimits, ScriptHost


@pytest.fixture(scope="session")
def plugins() -> PluginHost:
    return load_plugins()


@pytest.fixture
def series() -> BarSeries:
    return make_series()


@pytest.fixture
def make_host(plugins: PluginHost, series: BarSeries) -> Iterator[Callable[..., ScriptHost]]:
    """Build (not load) a ScriptHost over ``series``; every host is closed after the test."""
    made: list[ScriptHost] = []

    def build(
        source: str,
        *,
        name: str = "s",
        filename: str = "script.py",
        limits: SandboxLimits = FAST_LIMITS,
        data: BarSeries | None = None,
    ) -> ScriptHost:
        engine = IndicatorEngine(plugins.registry)
        engine.attach_series(data or series)
        host = ScriptHost(
            source,
            name=name,
            filename=filename,
            limits=limits,
            indicators=engine.provider((data or series).symbol),
            symbol=(data or series).symbol,
        )
        made.append(host)
        return host

    yield build
    for host in made:
        host.close()
