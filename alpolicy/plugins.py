"""Build the registry from plugins: built-ins first, then entry points of the group ``alpolicy``.

Built-in rules, backends and destinations are registered through exactly the same hooks as
third-party plugins (the modules in :data:`DEFAULT_PLUGINS`), so the built-ins are honest examples
of the plugin contract. ``ALPOLICY_LOAD_PLUGINS`` restricts which installed plugins are loaded:
unset means all, an empty string means none, otherwise a comma-separated list of entry point
or distribution names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import threading
from typing import Any, Callable, Sequence

import pluggy
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from . import hookspecs
from .errors import PluginError
from .registry import DestinationSpec, InferenceBackendSpec, PluginInfo, Registry, RuleSpec

ENTRY_POINT_GROUP = "alpolicy"
LOAD_PLUGINS_ENV = "ALPOLICY_LOAD_PLUGINS"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "alpolicy.rules.detection",
    "alpolicy.rules.image",
    "alpolicy.rules.scores",
    "alpolicy.rules.sampling",
    "alpolicy.rules.frames",
    "alpolicy.backends.roboflow",
    "alpolicy.backends.replay",
    "alpolicy.destinations.roboflow",
    "alpolicy.destinations.folder",
    "alpolicy.destinations.labelstudio",
)

_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SCHEME = re.compile(r"^[a-z][a-z0-9_-]*$")

_lock = threading.Lock()
_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = build_registry(make_plugin_manager())
        return _registry


def reset_registry() -> None:
    """Forget the cached registry (tests, or after installing a plugin in-process)."""
    global _registry
    with _lock:
        _registry = None


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution each entry-point plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)


def make_plugin_manager(
    *, load_entry_points: bool = True, extra: Sequence[tuple[str, object]] = ()
) -> PluginManager:
    """A plugin manager with the built-ins, the installed entry points (unless disabled) and
    ``extra`` ``(name, plugin)`` pairs registered in code (for tests and embedding programs)."""
    manager = PluginManager()
    manager.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        _register(manager, importlib.import_module(module_name), module_name)
    if load_entry_points:
        _load_entry_points(manager)
    for name, plugin in extra:
        _register(manager, plugin, name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginError(
            f"plugin {manager.get_name(error.plugin)!r} implements a hook alpolicy does not have: {error}; "
            f"known hooks: {', '.join(_hook_names())}"
        ) from None
    return manager


def _hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("alpolicy_")]


def _register(manager: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as error:
        raise PluginError(f"plugin {name!r} is invalid: {error}") from None
    except ValueError as error:  # pluggy: the name or the object is already registered
        raise PluginError(f"two plugins are both named {name!r}: {error}") from None


def _selected_plugins() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _load_entry_points(manager: PluginManager) -> None:
    selected = _selected_plugins()
    seen: dict[str, str] = {}
    found: set[str] = set()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry_point, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        if selected is not None and entry_point.name not in selected and dist_name not in selected:
            continue
        found.update({entry_point.name, dist_name or ""})
        if entry_point.name in seen and seen[entry_point.name] != entry_point.value:
            raise PluginError(
                f"two plugins are both named {entry_point.name!r}: {seen[entry_point.name]} "
                f"and {entry_point.value} ({dist_name}); uninstall one of them"
            )
        if entry_point.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen[entry_point.name] = entry_point.value
        try:
            module = entry_point.load()
        except Exception as error:  # a broken plugin must name itself, not crash the CLI
            raise PluginError(
                f"plugin {entry_point.name!r} ({dist_name}) failed to load: "
                f"{type(error).__name__}: {error}"
            ) from None
        _register(manager, module, entry_point.name)
        if dist is not None:
            manager.distributions[entry_point.name] = (dist_name, dist.version)
    missing = sorted((selected or set()) - found)
    if missing:
        raise PluginError(
            f"{LOAD_PLUGINS_ENV} names {', '.join(map(repr, missing))}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; see `alpolicy plugins`"
        )


def _plugin_info(manager: pluggy.PluginManager, name: str) -> PluginInfo:
    distributions = getattr(manager, "distributions", {})
    if name in distributions:
        dist_name, version = distributions[name]
        return PluginInfo(name, version, dist_name)
    if name in DEFAULT_PLUGINS:
        return PluginInfo(name, _own_version(), "alpolicy")
    return PluginInfo(name, None, None)


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("alpolicy")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return None


def build_registry(manager: pluggy.PluginManager) -> Registry:
    """Call every register-callback hook once and collect what the plugins register.

    Each hook implementation is called individually (rather than through ``manager.hook``) so
    that every registration is attributed to its plugin: a duplicate name can then name both
    plugins, and ``alpolicy plugins`` can say who provides what.
    """
    registry = Registry()
    for name, _plugin in manager.list_name_plugin():
        registry.plugins[name] = _plugin_info(manager, name)

    _collect(manager, "alpolicy_rules", lambda spec, plugin: _add_rule(registry, spec, plugin))
    _collect(manager, "alpolicy_inference_backends", lambda spec, plugin: _add_backend(registry, spec, plugin))
    _collect(manager, "alpolicy_destinations", lambda spec, plugin: _add_destination(registry, spec, plugin))
    return registry


def _collect(manager: pluggy.PluginManager, hook_name: str, add: Callable[[Any, str], None]) -> None:
    hook = getattr(manager.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order: built-ins first
        plugin = impl.plugin_name

        def register(spec: Any, _plugin: str = plugin) -> None:
            add(spec, _plugin)

        kwargs = {"register": register}
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(
                f"plugin {plugin!r} failed in {hook_name}: {type(error).__name__}: {error}"
            ) from None


def _add_rule(registry: Registry, spec: Any, plugin: str) -> None:
    if not isinstance(spec, RuleSpec):
        raise PluginError(f"plugin {plugin!r} registered {spec!r}, expected alpolicy.RuleSpec")
    if not _RULE_NAME.match(spec.name):
        raise PluginError(
            f"plugin {plugin!r} registered rule {spec.name!r}: names are lower_snake_case ([a-z][a-z0-9_]*)"
        )
    existing = registry.rules.get(spec.name)
    if existing is not None:
        raise PluginError(
            f"rule {spec.name!r} is registered twice: by plugin {existing.plugin!r} and by plugin {plugin!r}"
        )
    try:
        Draft202012Validator.check_schema(dict(spec.schema))
    except SchemaError as error:
        raise PluginError(f"plugin {plugin!r}: rule {spec.name!r} has an invalid JSON Schema: {error.message}") from None
    spec = RuleSpec(spec.name, spec.stage, spec.schema, spec.factory, spec.summary, plugin)
    registry.rules[spec.name] = spec
    registry.plugins[plugin].rules.append(spec.name)


def _add_backend(registry: Registry, spec: Any, plugin: str) -> None:
    _add_scheme(registry.backends, registry.plugins[plugin].backends, spec, plugin, InferenceBackendSpec, "inference backend")


def _add_destination(registry: Registry, spec: Any, plugin: str) -> None:
    _add_scheme(registry.destinations, registry.plugins[plugin].destinations, spec, plugin, DestinationSpec, "destination")


def _add_scheme(table: dict[str, Any], listing: list[str], spec: Any, plugin: str, kind: type, noun: str) -> None:
    """Register a backend or destination under its scheme, attributed to ``plugin``."""
    if not isinstance(spec, kind):
        raise PluginError(f"plugin {plugin!r} registered {spec!r}, expected alpolicy.{kind.__name__}")
    _check_scheme(spec.scheme, plugin, table, noun)
    table[spec.scheme] = kind(spec.scheme, spec.factory, spec.summary, plugin)
    listing.append(spec.scheme)


def _check_scheme(scheme: str, plugin: str, existing: dict[str, Any], kind: str) -> None:
    if not _SCHEME.match(scheme):
        raise PluginError(f"plugin {plugin!r} registered {kind} scheme {scheme!r}: use lower-case letters, digits, - and _")
    if scheme in existing:
        raise PluginError(
            f"{kind} {scheme!r} is registered twice: by plugin {existing[scheme].plugin!r} and by plugin {plugin!r}"
        )
