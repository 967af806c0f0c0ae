"""What the public base classes of every plugin kind share: the spec, a name derived from it,
and no-op ``check()`` / ``close()``.

:class:`alpolicy.InferenceBackend`, :class:`alpolicy.Destination` and :class:`alpolicy.Source`
derive from :class:`Component`, so that a plugin writes only what is its own (``predict``,
``send``, ``__iter__``). The pipeline sets :attr:`Component.spec` right after a plugin's factory
returns; it never *requires* the base class (duck-typed objects keep working), which is why the
defaults live here rather than in the pipeline.
"""

from __future__ import annotations

from typing import Any


class Component:
    """The part of the contract every kind shares."""

    #: The spec the object was built from (``folder:out/``, ``fixed:``), set by the pipeline when
    #: it builds the object from a spec; empty for an object made in code.
    spec: str = ""

    @property
    def name(self) -> str:
        """How records and messages name the object: set it (``self.name = ...``) when the spec
        alone does not identify it (a destination's name keys its deliveries in the journal);
        by default the spec (a trailing ``:`` of an empty target dropped), else the class name."""
        return self.__dict__.get("name") or _spec_name(self.spec) or type(self).__name__

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["name"] = value

    def check(self) -> None:
        """Called once before the first image: raise :class:`~alpolicy.errors.UsageError` (or
        ``AuthError``) for what would fail every image. The default checks nothing."""

    def close(self) -> None:
        """Called once after the last image: release connections, threads, files. The default
        releases nothing."""


def _spec_name(spec: str) -> str:
    return spec[:-1] if spec.endswith(":") else spec


def attach_spec(component: Any, spec: str) -> Any:
    """``component`` with its :attr:`Component.spec` set (duck-typed objects are left alone)."""
    if isinstance(component, Component) and not component.spec:
        component.spec = spec
    return component
