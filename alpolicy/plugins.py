"""Build the registry from plugins: built-ins first, then entry points of the group ``alpolicy``.

Built-in rules, backends, destinations, sources and executors are registered through exactly the same hooks as
third-party plugins (the modules in :data:`DEFAULT_PLUGINS`), so the built-ins are honest examples
of the plugin contract. ``ALPOLICY_LOAD_PLUGINS`` restricts which installed plugins are loaded:
unset means all, an empty string means none, otherwise a comma-separated list of entry point
or distribution names.

A broken installed plugin (it fails to import, implements a misspelt hook, raises in a hook,
registers something invalid or a name another plugin has) stops alpolicy with one line that names
it and ends with the way to start without it, ``ALPOLICY_LOAD_PLUGINS=<the other plugins> alpolicy
...``: a user can get on with their work before the plugin's author has fixed it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import re
import shlex
import threading
from typing import Any, Callable, Sequence

import pluggy
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from . import hookspecs
from .errors import AlpolicyError, PluginCrash, PluginError, exception_line
from .plugin_options import schema_problem
from .policy.prediction import TASKS
from .registry import (DestinationSpec, EmbedderSpec, ExecutorSpec, InferenceBackendSpec, PluginInfo, Registry, RuleSpec, SourceSpec,
                       did_you_mean, provide_default)

ENTRY_POINT_GROUP = "alpolicy"
LOAD_PLUGINS_ENV = "ALPOLICY_LOAD_PLUGINS"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "alpolicy.rules.detection",
    "alpolicy.rules.image",
    "alpolicy.rules.scores",
    "alpolicy.rules.sampling",
    "alpolicy.rules.frames",
    "alpolicy.rules.tasks",
    "alpolicy.rules.diversity",
    "alpolicy.pixels.embedding",
    "alpolicy.backends.roboflow",
    "alpolicy.backends.replay",
    "alpolicy.backends.workflow",
    "alpolicy.backends.clip",
    "alpolicy.destinations.roboflow",
    "alpolicy.destinations.folder",
    "alpolicy.destinations.labelstudio",
    "alpolicy.sources.folder",
    "alpolicy.runtime.executors",
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


provide_default(get_registry)  # what the policy engine compiles against when given no registry


def reset_registry() -> None:
    """Forget the cached registry (tests, or after installing a plugin in-process)."""
    global _registry
    with _lock:
        _registry = None


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering the entry-point plugins and the distribution each came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self.entry_points: list[str] = []  # the selected entry-point plugins, in discovery order


class _BrokenPlugin(PluginError):
    """A :class:`PluginError` that one plugin caused, raised where the problem is found (which may not
    know which plugins are installed); :func:`_way_out` turns it into the final one-line message.

    ``culprits`` are the plugins that could be left out, the likeliest first (for a duplicate name,
    the later registration, then the earlier one); ``advice`` says what else to do about it.
    """

    def __init__(self, message: str, *culprits: str, advice: str = "fix the plugin or start without it") -> None:
        super().__init__(message)
        self.culprits = culprits
        self.advice = advice


def _way_out(error: _BrokenPlugin, entry_points: Sequence[str]) -> PluginError:
    """``<message>; fix the plugin or start without it: ALPOLICY_LOAD_PLUGINS=a,b alpolicy ...``.

    Only an entry-point plugin can be left out that way (built-ins and plugins registered in code
    cannot), so a problem with none among its culprits keeps its message as it is.
    """
    culprit = next((name for name in error.culprits if name in entry_points), None)
    if culprit is None:
        return PluginError(str(error))
    others = ",".join(name for name in entry_points if name != culprit)
    advice = error.advice.format(plugin=culprit)
    return PluginError(f"{error}; {advice}: {LOAD_PLUGINS_ENV}={shlex.quote(others)} alpolicy ...")


def make_plugin_manager(
    *, load_entry_points: bool = True, extra: Sequence[tuple[str, object]] = ()
) -> PluginManager:
    """A plugin manager with the built-ins, the installed entry points (unless disabled) and
    ``extra`` ``(name, plugin)`` pairs registered in code (for tests and embedding programs)."""
    manager = PluginManager()
    manager.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        _register(manager, importlib.import_module(module_name), module_name)
    try:
        if load_entry_points:
            _load_entry_points(manager)
        for name, plugin in extra:
            _register(manager, plugin, name)
        _check_pending(manager)
    except _BrokenPlugin as error:
        raise _way_out(error, manager.entry_points) from None
    return manager


def _hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("alpolicy_")]


def _check_pending(manager: pluggy.PluginManager) -> None:
    """pluggy's ``check_pending`` (every hook implementation has a hookspec), as one line naming the
    plugin and the hook it has, with the hook it probably meant."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        name = manager.get_name(error.plugin) or repr(error.plugin)
        known = _hook_names()
        unknown = [
            caller.name for caller in manager.get_hookcallers(error.plugin) or []
            if not caller.has_spec()
            and any(impl.plugin is error.plugin and not impl.optionalhook for impl in caller.get_hookimpls())
        ]
        hook = unknown[0] if unknown else "?"
        hint = did_you_mean(hook, known) or f"; known hooks: {', '.join(known)}"
        raise _BrokenPlugin(f"plugin {name!r} implements unknown hook {hook!r}{hint}", name) from None


def _register(manager: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as error:
        raise _BrokenPlugin(f"plugin {name!r} is invalid: {error}", name) from None
    except ValueError as error:  # pluggy: the name or the object is already registered
        raise PluginError(f"two plugins are both named {name!r}: {error}") from None


def _selected_plugins() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _load_entry_points(manager: PluginManager) -> None:
    """Import and register the selected entry points; all of them are known (``manager.entry_points``)
    before the first import, so a plugin that fails to import can be told how to start without it."""
    entry_points = _selected_entry_points()
    manager.entry_points = [entry_point.name for entry_point in entry_points]
    for entry_point in entry_points:
        dist = getattr(entry_point, "dist", None)
        try:
            module = entry_point.load()
        except Exception as error:  # a broken plugin must name itself, not crash the CLI
            raise _BrokenPlugin(
                f"plugin {entry_point.name!r} ({_dist_name(entry_point)}) failed to load: {exception_line(error)}",
                entry_point.name,
            ) from None
        _register(manager, module, entry_point.name)
        if dist is not None:
            manager.distributions[entry_point.name] = (_dist_name(entry_point), dist.version)


def _dist_name(entry_point: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _selected_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed ``alpolicy`` entry points that ``ALPOLICY_LOAD_PLUGINS`` selects, once each."""
    selected = _selected_plugins()
    seen: dict[str, str] = {}
    found: set[str] = set()
    chosen: list[importlib.metadata.EntryPoint] = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = _dist_name(entry_point)
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
        chosen.append(entry_point)
    missing = sorted((selected or set()) - found)
    if missing:
        raise PluginError(
            f"{LOAD_PLUGINS_ENV} names {', '.join(map(repr, missing))}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; see `alpolicy plugins`"
        )
    return chosen


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

    try:
        _collect(manager, "alpolicy_rules", lambda spec, plugin: _add_rule(registry, spec, plugin))
        _collect(manager, "alpolicy_inference_backends", lambda spec, plugin: _add_backend(registry, spec, plugin))
        _collect(manager, "alpolicy_destinations", lambda spec, plugin: _add_destination(registry, spec, plugin))
        _collect(manager, "alpolicy_sources", lambda spec, plugin: _add_source(registry, spec, plugin))
        _collect(manager, "alpolicy_executors", lambda spec, plugin: _add_executor(registry, spec, plugin))
        _collect(manager, "alpolicy_embedders", lambda spec, plugin: _add_embedder(registry, spec, plugin))
    except _BrokenPlugin as error:
        raise _way_out(error, getattr(manager, "entry_points", ())) from None
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
            raise _BrokenPlugin(f"plugin {plugin!r} failed in {hook_name}: {exception_line(error)}", plugin) from None


def _add_rule(registry: Registry, spec: Any, plugin: str) -> None:
    if not isinstance(spec, RuleSpec):
        raise _BrokenPlugin(f"plugin {plugin!r} registered {spec!r}, expected alpolicy.RuleSpec", plugin)
    if not _RULE_NAME.match(spec.name):
        raise _BrokenPlugin(
            f"plugin {plugin!r} registered rule {spec.name!r}: names are lower_snake_case ([a-z][a-z0-9_]*)", plugin
        )
    existing = registry.rules.get(spec.name)
    if existing is not None:
        raise _twice(f"rule {spec.name!r}", existing.plugin, plugin)
    try:
        Draft202012Validator.check_schema(dict(spec.schema))
    except SchemaError as error:
        raise _BrokenPlugin(
            f"plugin {plugin!r}: rule {spec.name!r} has an invalid JSON Schema: {error.message}", plugin
        ) from None
    if spec.tasks is not None:
        unknown = sorted((task for task in spec.tasks if task not in TASKS), key=str)
        if unknown or not spec.tasks:
            what = f"unknown task {unknown[0]!r}{did_you_mean(unknown[0], TASKS)}" if unknown else "no task"
            raise _BrokenPlugin(
                f"plugin {plugin!r}: rule {spec.name!r} names {what} in tasks; tasks are: {', '.join(TASKS)}", plugin
            )
    spec = dataclasses.replace(spec, plugin=plugin)
    registry.rules[spec.name] = spec
    registry.plugins[plugin].rules.append(spec.name)


def _add_backend(registry: Registry, spec: Any, plugin: str) -> None:
    _add_scheme(registry.backends, registry.plugins[plugin].backends, spec, plugin, InferenceBackendSpec, "inference backend")


def _add_destination(registry: Registry, spec: Any, plugin: str) -> None:
    _add_scheme(registry.destinations, registry.plugins[plugin].destinations, spec, plugin, DestinationSpec, "destination")


def _add_source(registry: Registry, spec: Any, plugin: str) -> None:
    if isinstance(spec, SourceSpec) and spec.claims is not None and not callable(spec.claims):
        raise _BrokenPlugin(f"plugin {plugin!r} registered source {spec.scheme!r} with claims={spec.claims!r}: "
                            "it should be a function of a path", plugin)
    _add_scheme(registry.sources, registry.plugins[plugin].sources, spec, plugin, SourceSpec, "source")


def _add_executor(registry: Registry, spec: Any, plugin: str) -> None:
    _add_scheme(registry.executors, registry.plugins[plugin].executors, spec, plugin, ExecutorSpec, "executor")


def _add_embedder(registry: Registry, spec: Any, plugin: str) -> None:
    if not isinstance(spec, EmbedderSpec):
        raise _BrokenPlugin(f"plugin {plugin!r} registered {spec!r}, expected alpolicy.EmbedderSpec", plugin)
    if not _RULE_NAME.match(spec.name):
        raise _BrokenPlugin(
            f"plugin {plugin!r} registered embedder {spec.name!r}: names are lower_snake_case ([a-z][a-z0-9_]*)", plugin
        )
    if spec.name in registry.embedders:
        raise _twice(f"embedder {spec.name!r}", registry.embedders[spec.name].plugin, plugin)
    if spec.options_schema is not None:
        problem = schema_problem(spec.options_schema)
        if problem is not None:
            raise _BrokenPlugin(f"plugin {plugin!r}: embedder {spec.name!r}: {problem}", plugin)
    registry.embedders[spec.name] = dataclasses.replace(spec, plugin=plugin)
    registry.plugins[plugin].embedders.append(spec.name)


def _add_scheme(table: dict[str, Any], listing: list[str], spec: Any, plugin: str, kind: type, noun: str) -> None:
    """Register a backend, destination or source under its scheme, attributed to ``plugin``."""
    if not isinstance(spec, kind):
        raise _BrokenPlugin(f"plugin {plugin!r} registered {spec!r}, expected alpolicy.{kind.__name__}", plugin)
    _check_scheme(spec.scheme, plugin, table, noun)
    options_schema = getattr(spec, "options_schema", None)  # backends and destinations; sources have none
    if options_schema is not None:
        problem = schema_problem(options_schema)
        if problem is not None:
            raise _BrokenPlugin(f"plugin {plugin!r}: {noun} {spec.scheme!r}: {problem}", plugin)
    table[spec.scheme] = dataclasses.replace(spec, plugin=plugin)  # every field the plugin gave, attributed
    listing.append(spec.scheme)


def _check_scheme(scheme: str, plugin: str, existing: dict[str, Any], kind: str) -> None:
    if not _SCHEME.match(scheme):
        raise _BrokenPlugin(
            f"plugin {plugin!r} registered {kind} scheme {scheme!r}: use lower-case letters, digits, - and _", plugin
        )
    if scheme in existing:
        raise _twice(f"{kind} {scheme!r}", existing[scheme].plugin, plugin)


def _twice(what: str, first: str, second: str) -> _BrokenPlugin:
    """Two plugins register the same name: either can be left out, the later one first."""
    return _BrokenPlugin(
        f"{what} is registered twice: by plugin {first!r} and by plugin {second!r}", second, first,
        advice="rename it in plugin {plugin!r} or start without that plugin",
    )


def construct(entry: Any, target: str, options: Any, noun: str) -> Any:
    """``entry.factory(target, options)`` -- a backend, destination, source or executor built
    from its registered spec. An exception the contract does not document is the plugin's bug:
    one line naming it (:class:`~alpolicy.errors.PluginCrash`), never a traceback."""
    try:
        return entry.factory(target, options)
    except AlpolicyError:
        raise
    except Exception as error:
        raise PluginCrash(f"{noun} {entry.scheme!r} (plugin {entry.plugin})", error, verb="failed to start:") from error
