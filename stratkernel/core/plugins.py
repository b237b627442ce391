"""Plugin discovery and the component registry.

Plugins are found through the ``stratkernel`` entry-point group, built-in ones included. Each entry
point is loaded on its own, so one broken plugin is reported (by plugin and distribution, with the
reason) and the rest still load. Components arrive through the ``register_*`` hooks and land in a
:class:`Registry`, which refuses duplicate names.
"""

from __future__ import annotations

import importlib.metadata
import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import DuplicateNameError, PluginError
from .indicators import IndicatorSpec

log = logging.getLogger("stratkernel.plugins")

ENTRY_POINT_GROUP = "stratkernel"
KINDS = ("broker", "data_source", "indicator", "strategy", "notifier", "risk_rule")


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    version: str
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "description": self.description,
        }


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    distribution: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "distribution": self.distribution, "reason": self.reason}


@dataclass(frozen=True)
class _Origin:
    plugin: str
    distribution: str
    version: str


class Registry:
    """Components by kind and name, each remembering which plugin and distribution gave it."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}

    def add(self, reg: Registration) -> None:
        bucket = self._items[reg.kind]
        if reg.name in bucket:
            first = bucket[reg.name]
            raise DuplicateNameError(
                reg.plugin,
                f"{reg.kind} {reg.name!r} is already registered by {first.plugin} ({first.distribution})",
                reg.distribution,
            )
        bucket[reg.name] = reg

    def get(self, kind: str, name: str) -> Registration:
        try:
            return self._items[kind][name]
        except KeyError:
            known = ", ".join(sorted(self._items[kind])) or "none"
            raise PluginError(name, f"no {kind} named {name!r} (known: {known})") from None

    def has(self, kind: str, name: str) -> bool:
        return name in self._items[kind]

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def all(self) -> list[Registration]:
        return [r for k in KINDS for r in self._items[k].values()]

    def indicator(self, name: str) -> IndicatorSpec:
        spec = self.get("indicator", name).obj
        assert isinstance(spec, IndicatorSpec)
        return spec


class PluginHost:
    """Owns the pluggy manager, the registry and the list of failures."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("stratkernel")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.failures: list[PluginFailure] = []
        self._origins: dict[str, _Origin] = {}
        self._collected = False

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- loading --------------------------------------------------------------------------------
    def load_entry_points(self, *, exclude: Iterable[str] = ()) -> None:
        excluded = set(exclude)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in excluded:
                continue
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            if self.pm.has_plugin(ep.name):
                self.failures.append(
                    PluginFailure(ep.name, dist, f"another entry point already uses the name {ep.name!r}")
                )
                continue
            try:
                obj = ep.load()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit) and not isinstance(exc, SystemExit):
                    raise
                self.failures.append(PluginFailure(ep.name, dist, f"import failed: {_describe(exc)}"))
                log.warning("plugin %s (%s) failed to import: %s", ep.name, dist, _describe(exc))
                continue
            self.add_plugin(obj, name=ep.name, distribution=dist, version=version)

    def add_plugin(
        self, obj: ModuleType | object, *, name: str, distribution: str = "", version: str = ""
    ) -> bool:
        """Register one plugin object; on a bad hook, record the failure and leave it out."""
        try:
            self.pm.register(obj, name=name)
        except ValueError as exc:  # pluggy: already registered
            self.failures.append(PluginFailure(name, distribution, str(exc)))
            return False
        except pluggy.PluginValidationError as exc:
            self.failures.append(PluginFailure(name, distribution, f"invalid hook: {exc}"))
            return False
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(obj)
            self.failures.append(PluginFailure(name, distribution, f"unknown hook: {exc}"))
            log.warning("plugin %s (%s): %s", name, distribution, exc)
            return False
        self._origins[name] = _Origin(name, distribution or "", version or "")
        if self._collected:
            self._collect_from(obj, name)
        return True

    # -- collecting components ------------------------------------------------------------------
    def collect(self) -> Registry:
        """Call every ``register_*`` hook, one plugin at a time so failures are attributed."""

        # built-in plugins first, so a third party can never take over a built-in name
        def builtin_first(item: tuple[str, object]) -> bool:
            origin = self._origins.get(item[0])
            return origin is None or origin.distribution != "stratkernel"

        for plugin_name, plugin in sorted(self.pm.list_name_plugin(), key=builtin_first):
            if plugin is not None:
                self._collect_from(plugin, plugin_name)
        self._collected = True
        return self.registry

    def _collect_from(self, plugin: object, plugin_name: str) -> None:
        origin = self._origins.get(plugin_name, _Origin(plugin_name, "", ""))
        for hook_name, kind in (
            ("register_brokers", "broker"),
            ("register_data_sources", "data_source"),
            ("register_indicators", "indicator"),
            ("register_strategies", "strategy"),
            ("register_notifiers", "notifier"),
            ("register_risk_rules", "risk_rule"),
        ):
            impl = getattr(plugin, hook_name, None)
            if impl is None or not _is_hookimpl(impl):
                continue
            register = self._register_fn(kind, origin)
            try:
                impl(register=register)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                reason = (
                    exc.reason if isinstance(exc, PluginError) else f"{hook_name} failed: {_describe(exc)}"
                )
                self.failures.append(PluginFailure(origin.plugin, origin.distribution, reason))
                log.warning("plugin %s (%s): %s", origin.plugin, origin.distribution, reason)

    def _register_fn(self, kind: str, origin: _Origin) -> Callable[..., None]:
        def register(*args: Any, **kwargs: Any) -> None:
            reg = _make_registration(kind, origin, args, kwargs)
            self.registry.add(reg)

        return register

    def report(self) -> dict[str, Any]:
        plugins = []
        for name, _plugin in self.pm.list_name_plugin():
            o = self._origins.get(name, _Origin(name, "", ""))
            plugins.append(
                {
                    "name": name,
                    "distribution": o.distribution,
                    "version": o.version,
                    "components": [r.as_dict() for r in self.registry.all() if r.plugin == name],
                }
            )
        return {"plugins": plugins, "failures": [f.as_dict() for f in self.failures]}


def _is_hookimpl(fn: Any) -> bool:
    return hasattr(fn, "stratkernel_impl")


def _make_registration(
    kind: str, origin: _Origin, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Registration:
    description = kwargs.pop("description", "")
    if kind == "indicator":
        if len(args) != 1 or not isinstance(args[0], IndicatorSpec) or kwargs:
            raise PluginError(
                origin.plugin, "register_indicators: call register(IndicatorSpec(...))", origin.distribution
            )
        spec = args[0]
        return Registration(
            kind,
            spec.name,
            spec,
            origin.plugin,
            origin.distribution,
            origin.version,
            description or spec.description,
        )
    if kind == "strategy":
        from .strategy import Strategy

        if len(args) != 1 or not (isinstance(args[0], type) and issubclass(args[0], Strategy)):
            raise PluginError(
                origin.plugin, "register_strategies: call register(StrategySubclass)", origin.distribution
            )
        cls = args[0]
        name = getattr(cls, "name", "") or cls.__name__
        return Registration(
            kind,
            name,
            cls,
            origin.plugin,
            origin.distribution,
            origin.version,
            description or (cls.__doc__ or "").strip().split("\n")[0],
        )
    if len(args) != 2 or not isinstance(args[0], str) or not callable(args[1]):
        raise PluginError(
            origin.plugin, f"register for {kind}: call register(name, factory, ...)", origin.distribution
        )
    name, factory = args
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise PluginError(
            origin.plugin, f"{kind} name {name!r} must be alphanumeric (with - or _)", origin.distribution
        )
    return Registration(
        kind, name, factory, origin.plugin, origin.distribution, origin.version, description, dict(kwargs)
    )


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_plugins(*, entry_points: bool = True, extra: Iterable[tuple[str, object]] = ()) -> PluginHost:
    """Discover plugins (entry points plus ``extra`` objects, e.g. from tests) and collect components."""
    host = PluginHost()
    if entry_points:
        host.load_entry_points()
    for name, obj in extra:
        host.add_plugin(obj, name=name, distribution="(in-process)")
    host.collect()
    return host
