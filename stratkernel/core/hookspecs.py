"""Every hook a stratkernel plugin can implement.

A plugin is a module (or object) listed under the ``stratkernel`` entry-point group::

    [project.entry-points.stratkernel]
    myplugin = "my_package.plugin"

and implements any of the hooks below with ``@stratkernel.hookimpl``. Hooks are called with keyword
arguments, so an implementation may accept only the arguments it needs, in any order.

Components are contributed through ``register_*`` hooks that receive a ``register`` callback. The kernel
validates what is registered and refuses duplicate names, reporting the plugin and distribution::

    from stratkernel import hookimpl

    @hookimpl
    def register_indicators(register):
        register(IndicatorSpec(name="hma", params=(("period", 20),), compute=..., incremental=...))

A misspelt hook name fails loudly at load time (``check_pending``), naming the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from .events import Event

hookspec = pluggy.HookspecMarker("stratkernel")
hookimpl = pluggy.HookimplMarker("stratkernel")


@hookspec
def register_brokers(register: Callable[..., None]) -> None:
    """Contribute broker plugins.

    Call ``register(name, factory, *, description="", simulated=False)`` once per broker.
    ``factory(config: dict, events: BrokerEvents) -> Broker`` is called by the kernel, which keeps the
    instance to itself: only the kernel's order gateway ever calls ``Broker.submit``.
    ``config`` is the ``[broker.options]`` table of the user's config (plus secrets from the
    environment). ``simulated=True`` marks brokers that fill against the kernel's own market data
    (the paper broker) and so receive every bar and quote through ``Broker.on_market``.
    See :class:`stratkernel.core.broker.Broker` for the protocol.
    """


@hookspec
def register_data_sources(register: Callable[..., None]) -> None:
    """Contribute data sources (historical replay and/or live feeds).

    Call ``register(name, factory, *, description="")``; ``factory(options: dict) -> DataSource``.
    See :class:`stratkernel.core.data.DataSource`. What a source yields is validated by the kernel at
    the boundary: a bad bar is refused with the field and value, and counted.
    """


@hookspec
def register_indicators(register: Callable[..., None]) -> None:
    """Contribute indicators.

    Call ``register(spec)`` with an :class:`stratkernel.core.indicators.IndicatorSpec`: a vectorized
    ``compute`` (used by backtests over whole arrays) and an ``incremental`` factory (used live, one
    bar at a time). The two must agree; :func:`stratkernel.testing.assert_indicator_consistent`
    checks that for you. Indicators are reachable from every strategy and user script by name via
    ``ctx.indicator(name, *params)``.
    """


@hookspec
def register_strategies(register: Callable[..., None]) -> None:
    """Contribute trusted, in-process strategies.

    Call ``register(cls)`` with a subclass of :class:`stratkernel.Strategy` (its ``name`` attribute is
    the registered name). Trusted strategies get the same ``ctx`` as sandboxed user scripts, and their
    orders pass the same risk gate.
    """


@hookspec
def register_notifiers(register: Callable[..., None]) -> None:
    """Contribute notifiers (chat, e-mail, webhooks...).

    Call ``register(name, factory)``; ``factory(options: dict) -> Notifier`` with an
    ``async notify(event)`` method. Notifiers receive warnings (risk limits at 80%/90%), halts, strategy
    failures and reloads. A slow or failing notifier never blocks the kernel.
    """


@hookspec
def register_risk_rules(register: Callable[..., None]) -> None:
    """Contribute extra rules to the kernel's risk gate.

    Call ``register(name, factory, *, stage="order")``; ``factory(options: dict) -> Rule`` where a
    ``Rule`` has a ``name`` and ``check(request, view) -> Decision | None`` (None means pass). Stages run
    in order: ``validation``, ``state``, ``order``, ``portfolio``, ``loss``. A plugin rule can only add
    denials: it cannot approve what a built-in rule denied.
    """


@hookspec(firstresult=True)
def resolve_data_source(uri: str) -> tuple[str, dict[str, Any]] | None:
    """Turn a data URI or path given on the command line into ``(source_name, options)``.

    ``stratkernel backtest S --data FILE`` asks each plugin in turn; the first that recognises the URI
    (e.g. ``*.csv``, ``*.parquet``, ``ccxt:binance:BTC/USDT:1m``) answers, and the rest are not asked.
    """


@hookspec(historic=True)
def kernel_started(info: dict[str, Any]) -> None:
    """The kernel has started. ``info`` holds mode (live/backtest), broker name, strategies and symbols.

    Historic: a plugin registered after start-up is called with the same ``info`` as soon as it is
    registered, so late plugins see the same world as early ones.
    """


@hookspec
def kernel_stopping(info: dict[str, Any]) -> None:
    """The kernel is about to stop (Ctrl-C, end of a backtest). Release what you hold; don't trade."""


@hookspec
def kernel_event(event: Event) -> None:
    """Observe every kernel event: orders, fills, denials, risk state changes, strategy failures,
    reloads. Called synchronously on the kernel's loop: return fast and never raise (an exception
    is logged and the plugin's hook is disabled). Use a notifier for anything slow.
    """
