"""Destinations: where qualifying images go, with their predictions as pre-labels.

The contract (see also the README's "Write a destination"). Subclass :class:`Destination`
(``alpolicy.Destination``) and write ``send``: ``name``, ``check()`` and ``close()`` have
defaults; the pipeline does not require the base class (:class:`SupportsSend` is the shape).

* ``send(delivery) -> Receipt`` uploads one image and its pre-labels and returns the remote id.
* **Idempotent**: sending the same delivery twice must not create a second item. The journal
  records an intent before each send, so after a crash the pipeline sends again anything whose
  outcome it did not record; a destination makes that safe with a deterministic name or key
  (``delivery.key``, a content hash) and by treating "already there" as success
  (``Receipt(duplicate=True)``).
* **Steps**: a destination that needs several requests (upload, then annotate) calls
  ``delivery.checkpoint(remote_id)`` once the item exists remotely; on a resume the delivery then
  carries ``remote_id`` and the destination finishes only the missing steps.
* **Failures**: raise :class:`RetryableError` for what may succeed later (the image stays pending:
  the next run sends it), :class:`PermanentError` for what never will (recorded as failed with
  the reason), :class:`alpolicy.backends.AuthError` when credentials are refused (the run stops).
* ``send`` is called from several threads at once.
* Optional ``prepare_run(policy, model)`` is called first with the policy's name and the model
  id, for a destination whose identity (its ``name`` in the journal) depends on them.
* Optional ``prepare_task(task)`` is called next, before ``check()``, when the backend knows its
  model's task (``backend.task``, one of :data:`alpolicy.policy.prediction.TASKS`): for a
  destination that sets up its labeling interface per task (a Label Studio config). Without a
  known task (stored predictions, a backend that does not say) each delivery's
  ``prediction.task`` tells.
* ``check()`` runs before any image is inferred and raises :class:`~alpolicy.errors.UsageError`
  (or ``AuthError``) for what would fail every send: a refused key, a project that does not
  exist, a folder that cannot be written. A dry run calls the optional ``check_read_only()``
  instead, which must write nothing (a destination whose ``check`` only reads sets
  ``check_read_only = check``); without it a dry run does not check the destination.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from ..bases import Component
from ..errors import AlpolicyError
from ..io import checks
from ..io.http import ServiceOptions
from ..io.images import ImageFile
from ..policy.decision import Decision
from ..policy.prediction import Prediction


class RetryableError(AlpolicyError):
    """The send may succeed later (server down, timeouts): the image stays pending."""


class PermanentError(AlpolicyError):
    """The send will never succeed as is (rejected image, invalid annotation): recorded as failed."""


@dataclass
class Delivery:
    """Everything a destination receives for one image."""

    image: ImageFile
    prediction: Prediction
    decision: Decision
    #: Stable identity of the image content (sha256 hex): the idempotency key.
    key: str
    #: Tags saying why the image was chosen (policy tags, rules that fired, the model).
    tags: list[str]
    #: Free-form context for reviewers: score, reasons, model, source path.
    metadata: dict[str, Any]
    #: Set when an earlier attempt created the remote item (see the module docstring).
    remote_id: str | None = None
    checkpoint: Callable[[str], None] = field(default=lambda remote_id: None, repr=False)


@dataclass(frozen=True)
class Receipt:
    """What a destination returns: the remote id (and a link, when there is one)."""

    remote_id: str
    url: str | None = None
    duplicate: bool = False


@dataclass
class DestinationOptions(ServiceOptions):
    """Settings every destination may use (``api_key``, ``timeout``, ``attempts``,
    ``retry_backoff``, ``extra`` come from :class:`~alpolicy.io.http.ServiceOptions`)."""

    api_url: str | None = None
    #: Roboflow-style dataset split and batch name.
    split: str = "train"
    batch: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """A wrong shared setting is a one-line :class:`~alpolicy.errors.UsageError` (checked when
        made and again when a run starts); ``extra`` is checked against the destination's
        ``options_schema`` (:mod:`alpolicy.plugin_options`) and URLs by the destination."""
        checks.service_options(self)


@runtime_checkable
class SupportsSend(Protocol):
    """The structural shape of a destination, for ``isinstance`` checks of duck-typed objects
    (one that does not subclass :class:`Destination`). The pipeline checks neither."""

    name: str

    def check(self) -> None:
        ...

    def send(self, delivery: Delivery) -> Receipt:
        ...

    def close(self) -> None:
        ...


class Destination(Component, ABC):
    """The base class of a destination: write ``send``; the rest has defaults.

    * ``name`` identifies the destination in the journal (``roboflow:project``,
      ``folder:/abs/path``): by default the spec it was built from (``memory:queue``). Set it
      when the spec alone does not say where things go (a relative path, a server URL from the
      environment): a renamed destination is a new one, to which everything is sent again.
    * ``check()`` (see the module docstring) and ``close()`` (flush and release resources; a
      folder destination writes its index files here) do nothing by default.

    Subclassing is the documented way; an object that only has the members (see
    :class:`SupportsSend`) works as well.
    """

    @abstractmethod
    def send(self, delivery: Delivery) -> Receipt:
        """Deliver one image with its pre-labels, idempotently (see the module docstring)."""
