"""The plugin contract: pluggy markers for the project name ``alpolicy`` and the hooks.

Every hook is a *register callback*: it is called once, when the registry is built, with a
``register`` function the plugin calls for each thing it provides. The per-image hot loop never
goes through pluggy: the registry turns registrations into plain objects up front.

A plugin is any module with functions decorated by :data:`hookimpl`, installed under the entry
point group ``alpolicy``::

    [project.entry-points.alpolicy]
    my_rules = "my_package.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from .registry import DestinationSpec, EmbedderSpec, ExecutorSpec, InferenceBackendSpec, RuleSpec, SourceSpec

PROJECT_NAME = "alpolicy"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def alpolicy_rules(register: "Callable[[RuleSpec], None]") -> None:
    """Register policy rules: call ``register(RuleSpec(...))`` once per rule.

    A rule has a unique name, a stage (``detection``, ``image`` or ``sampling``), a JSON Schema for
    its parameters and a factory that turns validated parameters into the object evaluated per image.
    """


@hookspec
def alpolicy_inference_backends(register: "Callable[[InferenceBackendSpec], None]") -> None:
    """Register inference backends: call ``register(InferenceBackendSpec(...))`` once per scheme.

    A backend is chosen by the scheme of a model spec, e.g. ``roboflow:project/3`` or ``onnx:model.onnx``.
    """


@hookspec
def alpolicy_destinations(register: "Callable[[DestinationSpec], None]") -> None:
    """Register destinations: call ``register(DestinationSpec(...))`` once per scheme.

    A destination is chosen by the scheme of a destination spec, e.g. ``folder:out/`` or ``roboflow:project``.
    """


@hookspec
def alpolicy_sources(register: "Callable[[SourceSpec], None]") -> None:
    """Register sources of images: call ``register(SourceSpec(...))`` once per scheme.

    A source is chosen by the scheme of ``SOURCE`` (``folder:frames/``, ``s3://bucket/frames``) or,
    for a plain path, by what the path is: the spec's ``claims(path)`` (a folder, ``video.mp4``).
    """


@hookspec
def alpolicy_executors(register: "Callable[[ExecutorSpec], None]") -> None:
    """Register executors of a run's stateless stage: call ``register(ExecutorSpec(...))`` once per scheme.

    An executor is chosen by the scheme of ``--executor SPEC`` (``threads``, ``dask-local:2``);
    it runs inference and the pixel measurements, the run decides at the driver in input order.
    """


@hookspec
def alpolicy_embedders(register: "Callable[[EmbedderSpec], None]") -> None:
    """Register image embedders: call ``register(EmbedderSpec(...))`` once per name.

    An embedder turns an image into a vector (``pixels``, ``clip``); the ``diversity`` sampling
    rule chooses one by name (``"embedder": "clip"``) and picks images far apart in its space.
    """
