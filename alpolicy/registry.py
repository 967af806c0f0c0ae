"""What plugins register, and the registry that holds it.

The registry is built once from the plugin manager (see :mod:`alpolicy.plugins`) and is then a
plain, read-only lookup table; policies compile against it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Mapping


class Stage(str, Enum):
    """The three stages of a policy (see the README's "Policy semantics")."""

    DETECTION = "detection"  # decides which detections count ("witnesses")
    IMAGE = "image"  # judges the image as a whole; composes with all / any / not
    SAMPLING = "sampling"  # stateful, in stream order, over images that passed the first two


@dataclass(frozen=True)
class RuleSpec:
    """A rule as a plugin registers it.

    ``schema`` is a JSON Schema (Draft 2020-12) for the rule's parameters: the keys of a rule
    object other than ``rule``, ``tag`` and ``note``. It should describe ``properties`` and may use
    ``required``; unknown keys are rejected by the policy envelope, so it need not say
    ``additionalProperties``. ``factory(params)`` receives the validated parameters and returns the
    object evaluated per image; it may raise :class:`alpolicy.rules.ParameterError` for checks a
    schema cannot express (``min <= max``).

    ``tasks`` names the task types (:data:`alpolicy.TASKS`: ``"object-detection"``,
    ``"classification"``...) the rule can judge; ``None`` (the default, and every rule written
    for 0.1) means every task. A rule that reads boxes says the box tasks, so that a policy
    holding it is refused for a classifier (:meth:`alpolicy.Policy.check_task`) and, met with a
    classifier's prediction anyway, rejects the image saying so instead of raising ``KeyError``.
    A single name is taken as a set of one.
    """

    name: str
    stage: Stage
    schema: Mapping[str, Any]
    factory: Callable[[dict[str, Any]], Any]
    summary: str
    #: Filled in by the registry: the plugin that registered the rule.
    plugin: str = ""
    #: The task types the rule applies to (``None``: all). Last, so that 0.1's positional specs still build.
    tasks: frozenset[str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage", Stage(self.stage))
        if self.tasks is not None:
            tasks = (self.tasks,) if isinstance(self.tasks, str) else self.tasks
            object.__setattr__(self, "tasks", frozenset(tasks))

    def applies_to(self, task: str) -> bool:
        """True when the rule can judge predictions of ``task``."""
        return self.tasks is None or task in self.tasks


@dataclass(frozen=True)
class InferenceBackendSpec:
    """An inference backend, chosen by the scheme of a model spec (``scheme:rest``).

    ``factory(target, options)`` gets the spec's target and :class:`~alpolicy.ModelOptions` and
    returns the backend (best an :class:`alpolicy.InferenceBackend`). ``summary`` is one line
    for ``alpolicy run --help`` and ``alpolicy plugins``. ``accepts_empty_target``: the scheme
    alone (``--model fixed:``) is a valid spec; otherwise it is a one-line usage error.
    """

    scheme: str
    factory: Callable[..., Any]
    summary: str
    plugin: str = ""
    accepts_empty_target: bool = False
    #: JSON Schema (Draft 2020-12) of the backend's own settings, ``ModelOptions.extra``
    #: (``--model-opt KEY=VALUE``): an object schema whose ``properties`` name every option, each
    #: with a ``description``. ``None`` (a plugin written against 0.1): ``extra`` is passed through
    #: unvalidated. See :mod:`alpolicy.plugin_options`.
    options_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DestinationSpec:
    """A destination (uploader), chosen by the scheme of a destination spec (``scheme:rest``).

    As :class:`InferenceBackendSpec`, with :class:`~alpolicy.DestinationOptions` and an
    :class:`alpolicy.Destination`.
    """

    scheme: str
    factory: Callable[..., Any]
    summary: str
    plugin: str = ""
    accepts_empty_target: bool = False
    #: JSON Schema of the destination's own settings, ``DestinationOptions.extra``
    #: (``--to-opt KEY=VALUE``); as :attr:`InferenceBackendSpec.options_schema`.
    options_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SourceSpec:
    """A source of images, chosen by the scheme of ``SOURCE`` (``folder:frames/``) or, for a plain
    path, by ``claims(path)`` (the folder source claims folders, a video source ``*.mp4``).

    ``factory(target, options)`` gets the target (the whole plain path, or what follows
    ``scheme:``; for ``s3://bucket/key`` that is ``//bucket/key``) and
    :class:`~alpolicy.SourceOptions`, and returns an :class:`alpolicy.Source` (or any iterable
    of images or paths). ``claims`` is asked in registration order, built-ins first, and must
    be cheap (a ``stat``, a suffix): the first source that claims a path gets it.
    """

    scheme: str
    factory: Callable[..., Any]
    summary: str
    plugin: str = ""
    accepts_empty_target: bool = False
    claims: Callable[[str], bool] | None = None
    #: The names of the source's own settings, read from :attr:`~alpolicy.SourceOptions.extra`
    #: (``alpolicy run --every N`` -> ``every``): a setting given to a source that does not name
    #: it is a one-line usage error, never silently ignored (the folder source names none).
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the stateless stage of a run (fetch, decode, inference, pixel measurements) runs,
    chosen by the scheme of ``--executor SPEC`` (``threads``, ``dask-local:2``, ``dask://host:8786``).

    ``factory(target, options)`` gets the spec's target (for ``dask://host:8786`` that is
    ``//host:8786``) and the run's :class:`~alpolicy.RunOptions`, and returns an
    :class:`alpolicy.Executor`; it may connect or start workers, and raises
    :class:`~alpolicy.UsageError` (one line) for what makes that impossible (an unreachable
    scheduler, a missing dependency). ``accepts_empty_target``: the scheme alone is a valid spec.
    """

    scheme: str
    factory: Callable[..., Any]
    summary: str
    plugin: str = ""
    accepts_empty_target: bool = False


@dataclass(frozen=True)
class EmbedderSpec:
    """An image embedder, chosen by name in a rule's ``embedder`` parameter (the ``diversity``
    sampling rule): ``pixels`` (built in, from the pixels), ``clip`` (a Roboflow Inference server).

    ``factory(options)`` gets the rule's ``embedder_options`` (checked against ``options_schema``
    when the policy is validated) and returns an object with ``embed(image) -> list[float]``,
    called in the run's worker threads (next to inference: an embedder may be slow or remote). It
    may raise :class:`~alpolicy.io.images.ImageDecodeError` (that image is not embedded),
    :class:`~alpolicy.ServiceError` (the service is down: the image is retried later, as an
    inference) or :class:`~alpolicy.UsageError` (one line: the run stops). It is built when a run
    starts, never when a policy is only validated (no key, no connection needed then); an optional
    ``close()`` is called when the run ends. Vectors of one embedder have one length.
    """

    name: str
    factory: Callable[[dict[str, Any]], Any]
    summary: str
    plugin: str = ""
    #: JSON Schema (Draft 2020-12) of ``embedder_options``, as :attr:`InferenceBackendSpec.options_schema`.
    options_schema: Mapping[str, Any] | None = None


@dataclass
class PluginInfo:
    """One loaded plugin, for ``alpolicy plugins``."""

    name: str
    version: str | None
    distribution: str | None
    rules: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    executors: list[str] = field(default_factory=list)
    embedders: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "rules": self.rules,
            "inference_backends": self.backends,
            "destinations": self.destinations,
            "sources": self.sources,
            "executors": self.executors,
            "embedders": self.embedders,
        }


@dataclass
class Registry:
    """Everything the loaded plugins provide, keyed by name (rules) or scheme (backends,
    destinations, sources, executors; embedders by name), in registration order (built-ins first)."""

    rules: dict[str, RuleSpec] = field(default_factory=dict)
    backends: dict[str, InferenceBackendSpec] = field(default_factory=dict)
    destinations: dict[str, DestinationSpec] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    executors: dict[str, ExecutorSpec] = field(default_factory=dict)
    embedders: dict[str, EmbedderSpec] = field(default_factory=dict)
    #: Things derived from the registry and built once (the composed policy validator).
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def rules_of(self, stage: Stage) -> list[RuleSpec]:
        return [spec for spec in self.rules.values() if spec.stage is stage]

    def rule(self, name: str) -> RuleSpec:
        try:
            return self.rules[name]
        except KeyError:
            raise KeyError(f"unknown rule {name!r}{did_you_mean(name, self.rules)}") from None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: Builds the process-wide registry (installed plugins + built-ins); set by :mod:`alpolicy.plugins`.
_default_provider: Callable[[], Registry] | None = None


def provide_default(provider: Callable[[], Registry]) -> None:
    """Name the function that builds the process-wide registry (:func:`alpolicy.plugins.get_registry`).

    The policy engine compiles against "the registry" when none is given, but must not import the
    plugin manager, which loads the rule, backend and destination plugins above it in the flow
    (tests/test_layering.py): the manager registers itself here instead, when ``alpolicy`` is imported.
    """
    global _default_provider
    _default_provider = provider


def default_registry() -> Registry:
    """The process-wide registry: :func:`alpolicy.get_registry`."""
    if _default_provider is None:  # pragma: no cover - alpolicy/__init__ imports alpolicy.plugins
        raise RuntimeError("no plugin manager: import alpolicy (it loads alpolicy.plugins) first")
    return _default_provider()
