"""The triage pipeline: source -> inference -> policy -> sampler -> destination, journaled.

A bounded, concurrent stream. Inference runs on an executor (:mod:`.executors`): a thread
pool by default (I/O bound: HTTP or a native runtime that releases the GIL), or a cluster's
workers (``--executor dask-local:2``); results are consumed *in input order* by the coordinating thread,
which alone evaluates the policy and the (stateful) sampling rules, so decisions are
reproducible. Qualifying images go to a second pool for sending. At most ``window`` images are in
flight and nothing is listed up front, so memory stays flat however large the folder.

Exactly-once: the journal records the intent before every send and the outcome after it; see
:mod:`alpolicy.runtime.journal`. A run can be killed at any moment and run again.
"""

from __future__ import annotations

import copy
import heapq
import json
import logging
import os
import re
import time
import urllib.parse
import urllib.request
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sized, TextIO

from .. import plugin_options
from ..io import checks
from ..backends import (ImageError, InferenceBackend, ModelOptions, describe_settings, fingerprint_of, settings_of,
                       split_spec)
from ..bases import attach_spec
from ..destinations import Delivery, Destination, DestinationOptions, PermanentError, Receipt, RetryableError
from ..errors import AlpolicyError, AuthError, PluginCrash, ServiceError, UsageError
from ..io.images import DEFAULT_EXTENSIONS, ImageDecodeError, ImageFile, display_path
from ..io.secrets import redact
from ..plugins import construct, get_registry
from ..policy.decision import Decision
from ..policy.engine import Policy
from ..policy.prediction import Prediction, PredictionFormatError
from ..policy.rule import Candidate
from ..registry import Registry, SourceSpec, did_you_mean
from ..sources import Source, SourceOptions
from ..sources.folder import FolderSource
from .journal import UNKNOWN_SETTINGS, DeliveryRecord, Journal
from .executors import Executor, StatelessWork, make_executor
from .journal_lock import lock_journal
from .progress import Progress
from .run_report import RunReport
from .sampler import Admission, Sampler

log = logging.getLogger("alpolicy.pipeline")

DEFAULT_JOURNAL = os.path.join(".alpolicy", "journal.sqlite")
DEFAULT_CONCURRENCY = 8
#: Seconds the end of a run keeps retrying what failed for a service reason (see ``RunOptions.retry_for``).
DEFAULT_RETRY_FOR = 300.0
#: Longest wait between two deferred rounds.
MAX_ROUND_WAIT = 30.0
#: What a run stopped by a crashing plugin advises.
PLUGIN_ADVICE = "a plugin bug: fix or remove the plugin, then run again to resume"


class RunAborted(AlpolicyError):
    """A service failed so many times in a row that going on would only pile up failures."""

    exit_code = 1


@dataclass
class RunOptions:
    concurrency: int = DEFAULT_CONCURRENCY
    dry_run: bool = False
    #: Decide from stored predictions: without a model, each image's latest (whatever its
    #: fingerprint; images without one are reported failed); with a model, those of its
    #: fingerprint (the others are inferred). The run report names the fingerprints used.
    reuse_predictions: bool = False
    #: SQLite journal path; ``None`` keeps it in memory (no resume).
    journal: str | None = DEFAULT_JOURNAL
    #: A journal has one writer at a time (see :mod:`alpolicy.runtime.journal_lock`): seconds to wait
    #: for another run holding it before stopping with one line (0: stop at once).
    wait_for_journal: float = 0.0
    #: JSON-lines decisions log; ``None`` = next to the journal (``decisions/<journal stem>-run-N.jsonl``); ``""`` = none.
    decisions_log: str | None = None
    #: Progress on stderr: ``None`` = only on a terminal.
    progress: bool | None = None
    #: Tags added to every image sent.
    tags: tuple[str, ...] = ()
    #: Consecutive failed images in a stage that stop the run: service failures (after retries)
    #: and a destination's refusals; a broken file does not count.
    max_consecutive_failures: int = 25
    #: An image whose requests all failed for a service reason (5xx, timeouts, resets: the
    #: client's attempts ran out, perhaps only by bad luck) is deferred, then retried in rounds at
    #: the end of the stream until it succeeds, the circuit breaker trips or this many seconds
    #: have passed. ``0``: no deferred rounds (those images stay pending for the next run).
    retry_for: float = DEFAULT_RETRY_FOR
    #: First wait in seconds before a deferred round; doubled each round, at most 30 s.
    round_backoff: float = 1.0
    #: Where the stateless stage (inference, pixel measurements, the detection and image rules)
    #: runs: ``None`` or ``"threads"``, a thread pool here; ``"dask-local:2"``,
    #: ``"dask://HOST:PORT"`` with plugins/alpolicy-dask, or an :class:`Executor` object (see
    #: :mod:`alpolicy.runtime.executors`). Decisions are the same on every executor.
    executor: "str | Executor | None" = None
    model_options: ModelOptions = field(default_factory=ModelOptions)
    destination_options: DestinationOptions = field(default_factory=DestinationOptions)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """A wrong value is a one-line :class:`UsageError`; :func:`run` checks again at its start
        (fields may be set after construction)."""
        checks.whole_number(self.concurrency, "concurrency", minimum=1)
        checks.whole_number(self.max_consecutive_failures, "max_consecutive_failures", minimum=1)
        checks.number(self.retry_for, "retry_for", minimum=0)
        checks.number(self.wait_for_journal, "wait_for_journal", minimum=0)
        checks.number(self.round_backoff, "round_backoff", minimum=0)
        if self.executor is not None and not isinstance(self.executor, (str, Executor)):
            raise UsageError(f"executor should be a spec such as 'dask-local:2' (or an Executor), not {type(self.executor).__name__}")
        self.model_options.validate()
        self.destination_options.validate()


#: The keywords :func:`run` (and :func:`alpolicy.active_learning`) take in place of, or on top
#: of, ``options``, and where each goes: the run, the model's options, the destination's.
_RUN_KEYWORDS = ("concurrency", "dry_run", "reuse_predictions", "journal", "decisions_log", "progress", "tags",
                 "max_consecutive_failures", "retry_for", "wait_for_journal", "executor")
_MODEL_KEYWORDS = ("confidence", "overlap", "inference_url")
_DESTINATION_KEYWORDS = ("split", "batch", "api_url")
_SERVICE_KEYWORDS = ("api_key", "timeout", "attempts", "retry_backoff", "allow_insecure_http")
RUN_KEYWORDS = frozenset(_RUN_KEYWORDS + _MODEL_KEYWORDS + _DESTINATION_KEYWORDS + _SERVICE_KEYWORDS)


def options_with(options: RunOptions | None, keywords: Mapping[str, Any], destination: Any = None, *,
                 caller: str = "run()") -> RunOptions:
    """``options`` (or the defaults) with the keyword arguments of :func:`run` filled in.

    A keyword fills a field ``options`` left at its default; a field ``options`` sets to another
    value is a :class:`UsageError` (which one was meant?). The caller's object is not changed.
    ``api_key`` goes to the model, and to the destination only if it is a Roboflow one: a
    Roboflow key is never handed to another service.
    """
    unknown = sorted(set(keywords) - RUN_KEYWORDS)
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise UsageError(f"{caller} got an unknown keyword {names}; known: {', '.join(sorted(RUN_KEYWORDS))}")
    result = copy.deepcopy(options) if options is not None else RunOptions()
    if not keywords:
        return result
    defaults = RunOptions()
    roboflow_destination = isinstance(destination, str) and destination.startswith("roboflow:")
    for name, value in keywords.items():
        if name == "tags":
            value = tuple(value)
        targets = []
        if name in _RUN_KEYWORDS:
            targets.append((result, defaults))
        if name in _MODEL_KEYWORDS or name in _SERVICE_KEYWORDS:
            targets.append((result.model_options, defaults.model_options))
        if name in _DESTINATION_KEYWORDS or (name in _SERVICE_KEYWORDS and (name != "api_key" or roboflow_destination)):
            targets.append((result.destination_options, defaults.destination_options))
        for target, default in targets:
            current = getattr(target, name)
            if current != getattr(default, name) and current != value:
                raise UsageError(f"{name} is given twice, as a keyword and in options: give it once")
            setattr(target, name, value)
    return result  # run() validates it


@dataclass
class _Item:
    seq: int
    image: ImageFile
    future: Future[Prediction] | None = None
    prediction: Prediction | None = None
    model: str | None = None
    fingerprint: str | None = None
    skip_reason: str | None = None
    error: str | None = None
    sampling_tags: list[str] = field(default_factory=list)
    prepared: Future[None] | None = None
    delivery: DeliveryRecord | None = None
    #: What the send needs again if it is retried in a deferred round.
    outgoing: tuple[Prediction, Decision, dict[str, Any]] | None = None
    #: Why the last attempt failed, while the item waits in a deferred queue.
    last_error: Exception | None = None
    #: Retried in a deferred round (counted once in the report).
    retried_later: bool = False
    #: Its pixel measurement failed for a service reason (a remote embedder): measured again in a
    #: deferred round, its prediction (kept in ``prediction``) decided then.
    remeasure: bool = False


# ---------------------------------------------------------------------- building blocks from specs
def make_backend(spec: str | InferenceBackend, options: ModelOptions, registry: Registry) -> InferenceBackend:
    """The backend for a model spec (``roboflow:proj/3``); an object is used as it is."""
    return spec if not isinstance(spec, str) else _build(spec, options, registry.backends, "model", "inference backend")


def make_destination(spec: str | Destination, options: DestinationOptions, registry: Registry) -> Destination:
    """The destination for a spec (``folder:out/``); an object is used as it is."""
    return spec if not isinstance(spec, str) else _build(spec, options, registry.destinations, "destination", "destination")


def make_source(spec: str | os.PathLike[str] | Source | Iterable[ImageFile | str], options: SourceOptions,
                registry: Registry) -> Any:
    """The source for ``SOURCE`` (see :func:`choose_source`); any other object (a :class:`Source`,
    an iterable of images or paths) is used as it is."""
    entry, target = _source_entry(spec, registry)
    return spec if entry is None else _construct(entry, target, options, os.fspath(spec), "source")  # type: ignore[arg-type]


def _source_entry(spec: Any, registry: Registry) -> tuple[SourceSpec | None, str]:
    if isinstance(spec, os.PathLike):  # a path, whatever its text: never a scheme
        return _claimed(os.fspath(spec), registry)
    if isinstance(spec, str):
        return choose_source(spec, registry)
    return None, ""


def choose_source(text: str, registry: Registry) -> tuple[SourceSpec, str]:
    """The source spec and target for ``SOURCE``: an installed scheme (``folder:frames/``) names
    its source; ``file://`` URLs are local paths; any other text is a path, given to the first
    source (in registration order, built-ins first) whose ``claims(path)`` takes it. A text
    that looks like ``scheme:...`` with no such scheme installed and no such path is a one-line
    usage error with the installed schemes."""
    scheme, sep, target = text.partition(":")
    if sep and scheme in registry.sources:
        entry = registry.sources[scheme]
        split_spec(text, "source", allow_empty_target=entry.accepts_empty_target)
        return entry, target
    if sep and scheme == "file":
        return _claimed(_local_path(text), registry)
    if sep and (_SOURCE_SCHEME.match(scheme) or target.startswith("//")) and not os.path.exists(text):
        raise UsageError(f"no source for {scheme!r}{did_you_mean(scheme, registry.sources)}; "
                         f"installed: {_installed(registry.sources)}")
    return _claimed(text, registry)


#: What reads as a source scheme rather than a path (one letter is a Windows drive: ``C:``).
_SOURCE_SCHEME = re.compile(r"^[a-z][a-z0-9_-]+$")


def _claimed(path: str, registry: Registry) -> tuple[SourceSpec, str]:
    for entry in registry.sources.values():
        if entry.claims is None:
            continue
        try:
            claimed = entry.claims(path)
        except AlpolicyError:
            raise
        except Exception as error:  # a bug in the plugin's claims(): name it, in one line
            raise PluginCrash(f"source {entry.scheme!r} (plugin {entry.plugin})", error, verb="raised in claims():") from error
        if claimed:
            return entry, path
    if not os.path.exists(path):
        raise UsageError(f"the folder {path!r} does not exist")
    raise UsageError(f"{path!r} is not a folder, and no installed source takes such a file; "
                     f"source schemes: {_installed(registry.sources)}")


def check_source_options(entry: SourceSpec, extra: Mapping[str, Any], registry: Registry,
                         names: Mapping[str, str] | None = None) -> None:
    """A setting of ``extra`` that the chosen source does not name (:attr:`SourceSpec.options`) is
    a one-line usage error naming the installed sources that take it: ``--every`` given to a
    folder of images must not be silently ignored. ``names``: how the user wrote each setting."""
    for key, value in extra.items():
        if value is None or key in entry.options:
            continue
        shown = (names or {}).get(key, f"source option {key}")
        takers = [spec.scheme for spec in registry.sources.values() if key in spec.options]
        hint = f" (sources taking it: {', '.join(takers)})" if takers else ""
        raise UsageError(f"{shown}: the {entry.scheme} source does not take it{hint}")


def _local_path(url: str) -> str:
    """``file:///abs/frames`` (or ``file:frames``) -> the local path it names."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.netloc not in ("", "localhost"):
        raise UsageError(f"{url!r} names a file on another machine ({parsed.netloc}); give a local path")
    return urllib.request.url2pathname(parsed.path)


def _installed(table: Mapping[str, Any]) -> str:
    return ", ".join(sorted(table)) or "none"


def _build(spec: str, options: Any, table: Mapping[str, Any], kind: str, noun: str) -> Any:
    scheme, sep, _ = spec.partition(":")
    entry = table.get(scheme) if sep else None
    scheme, target = split_spec(spec, kind, allow_empty_target=entry is not None and entry.accepts_empty_target)
    if entry is None:
        hint = " (pip install plugins/alpolicy-onnx for onnx:)" if scheme == "onnx" else ""
        raise UsageError(f"no {noun} for {scheme!r}{did_you_mean(scheme, table)}; installed: {_installed(table)}{hint}")
    # Its own settings (``extra``) against its options_schema: one line per problem.
    return _construct(entry, target, plugin_options.checked_options(entry, options), spec, {"model": "backend"}.get(kind, kind))


def _construct(entry: Any, target: str, options: Any, spec: str, noun: str) -> Any:
    """:func:`alpolicy.plugins.construct`, with the spec it came from (the base classes derive
    ``name`` from it)."""
    return attach_spec(construct(entry, target, options, noun), spec)


def folder_source(folder: str, extensions: Iterable[str] = DEFAULT_EXTENSIONS, *, recursive: bool = False,
                  case_sensitive: bool = False, follow_symlinks: bool = False,
                  skipped: Counter[str] | None = None) -> tuple[Iterator[ImageFile], int | None]:
    """Images of a folder, lazily, and their count (a second cheap scandir pass, for progress).
    ``skipped`` counts, as the images are listed, the links left out (:func:`iter_folder`).
    Kept for callers of 0.1: the built-in folder source (:mod:`alpolicy.sources.folder`) does it."""
    source = FolderSource(folder, SourceOptions(tuple(extensions), recursive, follow_symlinks, case_sensitive))
    total = source.count()
    return source.listing(skipped), total


@dataclass
class _Feed:
    """The run's source as the coordinator consumes it: images, their count, what was skipped."""

    images: Iterator[ImageFile]
    total: int | None
    name: str
    skipped: Counter[str]
    #: Closed after the run: a :class:`Source` given, or what a source plugin built.
    closing: Any = None


def _open_source(source: Any, options: SourceOptions, registry: Registry) -> _Feed:
    """Build (from a spec), check and start listing the run's source."""
    entry, target = _source_entry(source, registry)
    if entry is None and any(value is not None for value in options.extra.values()):
        raise UsageError(f"source settings ({', '.join(options.extra)}) are for a source named by a path or "
                         "SCHEME:TARGET; give a Source object its settings when you make it")
    if entry is None and not isinstance(source, Source):  # the caller's images or paths, as they are
        total = len(source) if isinstance(source, Sized) else None
        skipped: Counter[str] = Counter()
        return _Feed(_as_images(source, skipped, f"source {type(source).__name__}"), total, "<images>", skipped)
    if entry is None:
        built, component = source, f"source {type(source).__name__}"
    else:
        check_source_options(entry, options.extra, registry)
        built = _construct(entry, target, options, os.fspath(source), "source")
        component = f"source {entry.scheme!r} (plugin {entry.plugin})"
    feed = _Feed(iter(()), None, _source_name(built, source), Counter(), closing=built)
    try:
        check = getattr(built, "check", None)
        if callable(check):
            _guarded(component, check)
        if isinstance(built, Source):
            feed.total = _guarded(component, built.count)
        elif isinstance(built, Sized):
            feed.total = len(built)
        iterator = _guarded(component, lambda: iter(built))
        counts = getattr(built, "skipped", None)
        feed.skipped = counts if isinstance(counts, Counter) else Counter()
        feed.images = _as_images(iterator, feed.skipped, component)
    except BaseException:
        _close(built)
        raise
    return feed


def _source_name(built: Any, spec: Any) -> str:
    name = getattr(built, "name", None)
    if isinstance(name, str) and name:
        return name
    return os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else type(built).__name__


def _guarded(component: str, call: Callable[[], Any]) -> Any:
    """``call()``; an exception the contract does not document is the plugin's bug, in one line."""
    try:
        return call()
    except AlpolicyError:
        raise
    except Exception as error:
        raise PluginCrash(component, error) from error


# ---------------------------------------------------------------------- the run
def run(
    source: str | os.PathLike[str] | Source | Iterable[ImageFile | str],
    policy: Policy | str | os.PathLike[str] | Mapping[str, Any],
    *,
    model: str | InferenceBackend | None = None,
    destination: str | Destination | None = None,
    options: RunOptions | None = None,
    on_result: Callable[[ImageFile, Prediction], None] | None = None,
    registry: Registry | None = None,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    recursive: bool = False,
    follow_symlinks: bool = False,
    source_extra: Mapping[str, Any] | None = None,
    **keywords: Any,
) -> RunReport:
    """Triage ``source`` with ``policy``; send what qualifies.

    ``source`` is what ``alpolicy run`` takes -- a folder, ``SCHEME:TARGET`` of an installed
    source (``folder:frames/``; see :func:`choose_source`), a ``file://`` URL -- or a
    :class:`Source` object, or an iterable of images or paths (used as they come).

    ``on_result(image, prediction)`` is called, in input order, for every image with a prediction
    (an image whose inference is retried in a deferred round comes when it has one, at the end).
    The keywords of :func:`alpolicy.active_learning` fill :class:`RunOptions` (see
    :func:`options_with`): ``concurrency``, ``journal``, ``dry_run``, ``reuse_predictions``,
    ``decisions_log``, ``progress``, ``tags``, ``max_consecutive_failures``, ``retry_for``,
    ``confidence``, ``overlap``, ``inference_url``, ``split``, ``batch``, ``api_url``, ``api_key``,
    ``timeout``, ``attempts``, ``retry_backoff``.
    ``extensions``, ``recursive`` and ``follow_symlinks`` go to the source (:class:`SourceOptions`),
    and ``source_extra``, the source's own settings (a video's ``every`` or ``fps``), as its ``extra``.
    A folder's symbolic links leaving it are skipped unless ``follow_symlinks`` (see
    :func:`alpolicy.io.images.iter_folder`); the report counts them (``skipped``).
    Returns a :class:`RunReport`; raises :class:`UsageError` / :class:`AuthError` for what stops a
    run before or while it runs (the journal keeps everything done so far).
    """
    options = options_with(options, keywords, destination) if keywords else (options or RunOptions())
    options.validate()
    registry = registry or get_registry()
    if isinstance(policy, (str, os.PathLike)):
        policy = Policy.from_file(policy, registry=registry)
    elif not isinstance(policy, Policy):
        policy = Policy.from_dict(policy, registry=registry)
    if model is None and not options.reuse_predictions:
        raise UsageError("give a model (e.g. roboflow:PROJECT/VERSION) or reuse stored predictions")
    backend = make_backend(model, options.model_options, registry) if model is not None else None
    components = {"inference": _component("backend", model, registry.backends),
                  "sending": _component("destination", destination, registry.destinations)}
    sink = journal_lock = feed = executor = None
    try:
        if destination is not None:
            sink = make_destination(destination, options.destination_options, registry)
        source_options = SourceOptions(tuple(extensions), recursive=recursive, follow_symlinks=follow_symlinks,
                                       extra=dict(source_extra or {}))
        feed = _open_source(source, source_options, registry)  # checked: a folder without images stops here
        if backend is not None and callable(getattr(backend, "check", None)):
            _guarded(components["inference"], backend.check)
        task = getattr(backend, "task", None) if backend is not None else None
        # A rule that cannot judge the model's task (box_area on a classifier) would reject every image.
        policy.check_task(task, model=model if isinstance(model, str) else getattr(backend, "model_id", None))
        if sink is not None and callable(getattr(sink, "prepare_run", None)):
            model_id = backend.model_id if backend is not None else None
            _guarded(components["sending"], lambda: sink.prepare_run(policy.name, model_id))
        if task is not None and sink is not None and callable(getattr(sink, "prepare_task", None)):
            _guarded(components["sending"], lambda: sink.prepare_task(task))
        if sink is not None:
            _guarded(components["sending"], lambda: _check_destination(sink, options.dry_run))
        executor = make_executor(options.executor, options, registry)  # may start or reach workers: last
        executor.check(model)
        # One writer at a time (a second would send everything again); taken only once the
        # arguments are known to be good, so that a mistyped command leaves no lock file behind.
        journal_lock = lock_journal(options.journal, options.wait_for_journal)
        journal = Journal(options.journal or ":memory:")
    except BaseException:
        _close(backend, sink, feed.closing if feed is not None else None)
        _shut(executor)
        if journal_lock is not None:
            journal_lock.release()
        raise
    try:
        coordinator = _Run(feed.images, feed.total, feed.name, policy, backend, sink, journal, options, on_result,
                           components, executor=executor, model=model)
        coordinator.report.skipped = feed.skipped  # filled as the source is listed; the report shows it
    except BaseException:
        _shut(executor)
        journal.close()
        _close(backend, sink, feed.closing)
        if journal_lock is not None:
            journal_lock.release()
        raise
    try:
        return coordinator.execute()
    finally:
        _close(feed.closing)
        journal.close()
        if journal_lock is not None:
            journal_lock.release()  # after the journal is closed: the next writer finds it complete


def _check_destination(sink: Destination, dry_run: bool) -> None:
    """Before any image is inferred: a typo'd project, a refused key or an unwritable folder stop
    the run in one line instead of failing every send. A dry run sends nothing, so it calls the
    destination's ``check_read_only()`` (same checks, nothing written), when it has one."""
    if not dry_run:
        sink.check()
        return
    read_only = getattr(sink, "check_read_only", None)
    if callable(read_only):
        read_only()


def _component(noun: str, spec: Any, table: Mapping[str, Any]) -> str:
    """``backend 'crashing' (plugin crashing-rule)``: how a crash of its code names a backend or
    destination (by scheme and plugin when built from a spec, else by class)."""
    if isinstance(spec, str):
        scheme = spec.split(":", 1)[0]
        if scheme in table:
            return f"{noun} {scheme!r} (plugin {table[scheme].plugin})"
    return f"{noun} {type(spec).__name__}"


def _as_images(items: Iterable[ImageFile | str], skipped: Counter[str], component: str) -> Iterator[ImageFile]:
    """A source's items as images: a path is stat'ed (one that cannot be is skipped and counted
    ``unreadable``); anything else, or an exception the contract does not document, is the
    source's bug, in one line naming it."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except AlpolicyError:
            raise
        except Exception as error:
            raise PluginCrash(component, error) from error
        if isinstance(item, ImageFile):
            yield item
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise PluginCrash(component, TypeError(f"it yielded a {type(item).__name__}, not an ImageFile or a path"))
        try:
            image = ImageFile.from_path(item)
        except OSError:
            skipped["unreadable"] += 1
            continue
        yield image


def delivery_tags(decision: Decision, more: Iterable[str], model: str | None) -> list[str]:
    """What a delivery is tagged with: the decision's tags, ``more`` (sampling rules', the run's),
    then ``model:<id>``, each once (also :func:`alpolicy.testing.make_delivery`'s)."""
    return list(dict.fromkeys([*decision.tags, *more, *([f"model:{model}"] if model else [])]))


def delivery_metadata(decision: Decision, policy_name: str | None, model: str | None, image: ImageFile) -> dict[str, Any]:
    """The context a delivery carries for reviewers: score, reasons, policy, model, source path,
    then what the source knows of the image (:attr:`ImageFile.metadata`: a frame's timestamp),
    which never replaces alpolicy's own keys."""
    metadata = {
        "alpolicy_score": decision.score,
        "alpolicy_reasons": "; ".join(decision.reasons)[:1000],
        "alpolicy_policy": policy_name,
        "model": model,
        "source_path": image.display_path,
    }
    metadata.update((key, value) for key, value in image.metadata.items() if key not in metadata)
    return metadata


def one_line(text: object) -> str:
    """A reason fit for a summary line, the journal and logs: redacted, newlines made visible
    (a reason may quote a file name or a server message that holds one), a file name's bytes that
    are not UTF-8 shown as ``\\xff`` (:func:`display_path`: SQLite and JSON refuse them raw)."""
    return display_path(redact(text)).replace("\r", "\\r").replace("\n", "\\n")


def _retries(thing: Any) -> int:
    """Retries made by a backend's or destination's HTTP client (0 for those without one)."""
    stats = getattr(getattr(thing, "client", None), "stats", None)
    return int(getattr(stats, "retries", 0))


def _shut(executor: Executor | None) -> None:
    """Stop an executor (its workers, for a cluster it started); a failure to stop is a warning."""
    if executor is not None:
        try:
            executor.shutdown()
        except Exception as error:
            log.warning("stopping the executor %s failed: %s", executor.spec, redact(error))


def _close(*things: Any) -> None:
    for thing in things:
        if thing is not None:
            try:
                thing.close()
            except Exception as error:  # closing must not hide the run's own outcome
                log.warning("closing %s failed: %s", type(thing).__name__, redact(error))


class _Run:
    """One run's coordinator; only its thread touches the policy, the sampler and the report."""

    def __init__(self, images: Iterator[ImageFile], total: int | None, source_name: str, policy: Policy,
                 backend: InferenceBackend | None, destination: Destination | None, journal: Journal,
                 options: RunOptions, on_result: Callable[[ImageFile, Prediction], None] | None,
                 components: Mapping[str, str] | None = None, *, executor: Executor | None = None,
                 model: str | InferenceBackend | None = None) -> None:
        self.images, self.policy, self.backend, self.destination = images, policy, backend, destination
        #: How a crash names the backend ("inference") and the destination ("sending").
        self.components = {"inference": "the backend", "sending": "the destination", **(components or {})}
        self.journal, self.options, self.on_result = journal, options, on_result
        self.model_id = backend.model_id if backend is not None else None
        #: Keys this run's stored predictions: the model and every setting that changes its output.
        self.fingerprint = fingerprint_of(backend) if backend is not None else None
        if backend is not None:
            journal.record_fingerprint(self.fingerprint, self.model_id, settings_of(backend))  # type: ignore[arg-type]
        self._settings_notes: dict[str, str] = {}
        self.destination_name = destination.name if destination is not None else None
        self.sending_enabled = destination is not None and not options.dry_run
        self.run_id = journal.start_run(
            source=source_name, model=self.model_id, destination=self.destination_name,
            policy=policy.to_json(indent=None), options={"dry_run": options.dry_run, "concurrency": options.concurrency,
                                                         **({"executor": options.executor} if options.executor else {})},
            fingerprint=self.fingerprint,
        )
        self.report = RunReport(self.run_id, journal.path, None, options.dry_run)
        self.report.fingerprint = self.fingerprint
        self.log_file: TextIO | None = None
        try:
            self.log_file = self._open_decisions_log()
            self.sampler = Sampler(policy, journal, self.run_id, dry_run=options.dry_run)
        except BaseException as error:  # the run has a row: it must not stay "running"
            if self.log_file is not None:
                self.log_file.close()
            self._mark_failed(error)
            self.journal.finish_run(self.run_id, self.report.status, self.report.to_json())
            raise
        self.needs_pixels = self.sampler.needs_pixels
        #: Where inference and the pixel measurements run (a thread pool here, or a cluster's
        #: workers); the coordinator reads their answers in input order and alone decides.
        self.executor = executor or make_executor(None, options, get_registry())
        work = StatelessWork(model if model is not None else backend, backend, options.model_options, policy,
                             self.sampler, options.concurrency, self.components["inference"])
        try:
            self.executor.start(work)
        except BaseException as error:
            if self.log_file is not None:
                self.log_file.close()
            self._mark_failed(error)
            self.journal.finish_run(self.run_id, self.report.status, self.report.to_json())
            raise
        self.progress = Progress(total, enabled=options.progress)
        #: Images between the source and the decision (inference in flight or waiting in order).
        self.window = self.executor.window(options.concurrency)
        #: Those images, in input order (the stream's window, then a deferred round's re-inferences).
        self.in_flight: deque[_Item] = deque()
        #: Qualifying images between the decision and a recorded send outcome; the coordinator
        #: waits only past this, so a burst of qualifying images never starves inference.
        self.send_backlog = max(8, 8 * options.concurrency)
        # A send is two requests (upload, pre-label) to one inference request: twice the threads
        # keep the send stage as fast as the inference stage.
        self.send_pool = ThreadPoolExecutor(2 * options.concurrency, thread_name_prefix="alpolicy-send")
        self.sending: dict[Future[Receipt], tuple[_Item, dict[str, Any]]] = {}
        #: Candidates held for a ``top_k`` budget: a min-heap of (score, -seq, item, prediction, decision, record).
        self.top_k: list[tuple[Any, ...]] = []
        #: Every candidate held for an end-of-stream selector (``diversity``), in stream order.
        self.held: list[tuple[Candidate, _Item, Prediction, Decision, dict[str, Any]]] = []
        #: Consecutive service failures, refusals and plugin crashes per stage ("inference",
        #: "policy", "sending"): the circuit breaker.
        self.failures_in_a_row = {"inference": 0, "policy": 0, "sending": 0}
        #: Set once the run stops: sends still under way are recorded, the breaker no longer trips.
        self.stopping = False
        #: Images whose inference / send failed for a service reason, retried at the end of the stream.
        self.deferred_inference: list[_Item] = []
        self.deferred_sends: list[_Item] = []
        self.done = 0

    def _open_decisions_log(self) -> TextIO | None:
        path = self.options.decisions_log
        if path == "":
            return None
        if path is None:
            if self.journal.path == ":memory:":
                return None
            # Named after the journal too: two journals in one folder each number their runs from 1.
            journal = Path(self.journal.path)
            path = str(journal.parent / "decisions" / f"{journal.stem}-run-{self.run_id}.jsonl")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.report.decisions_log = path
        return open(path, "a", encoding="utf-8", buffering=1)

    # ------------------------------------------------------------------ main loop
    def execute(self) -> RunReport:
        started = time.monotonic()
        pending = self.in_flight
        exhausted = False
        seq = 0
        fatal: BaseException | None = None
        source_error: AlpolicyError | None = None
        try:
            while True:
                while not exhausted and len(pending) < self.window:
                    try:
                        image = next(self.images, None)
                    except AlpolicyError as error:  # the source broke: decide what it gave, then stop
                        source_error, image = error, None
                    if image is None:
                        exhausted = True
                        break
                    seq += 1
                    pending.append(self._begin(seq, image))
                if not pending:
                    break
                self._finish(pending.popleft())
                self._collect_sends(block=len(self.sending) >= self.send_backlog)
            if source_error is not None:  # no deferred rounds nor top_k over a part of the stream
                raise source_error
            self._retry_deferred()
            self.report.status = "completed"
        except KeyboardInterrupt:
            self.report.status = "interrupted"
            self.report.message = "interrupted: run the same command again to resume"
        except (AuthError, UsageError, RunAborted, PluginCrash) as error:
            self.report.status = "aborted"
            self.report.message = str(error)
            fatal = error
        except Exception as error:  # a bug (ours, a plugin's, a callback's): the journal must not say "running"
            self._mark_failed(error)
            fatal = error
        finally:
            for item in pending:
                if item.future is not None:
                    item.future.cancel()
            _shut(self.executor)
            self._keep_answers_in_flight()
            self._drain_after_stop()
            self.send_pool.shutdown(wait=True)
            self._settle_deferred()
            _close(self.backend, self.destination, self.sampler)
            self.report.elapsed = time.monotonic() - started
            self.report.retries = _retries(self.backend) + _retries(self.destination)
            self.progress.update(self.done, self._detail(), force=True)
            self.progress.close()
            self.journal.finish_run(self.run_id, self.report.status, self.report.to_json())
            if self.log_file is not None:
                self.log_file.close()
        if fatal is not None and not isinstance(fatal, RunAborted):
            raise fatal  # the journal has everything done so far; the caller shows one line (or a bug's traceback)
        return self.report

    def _mark_failed(self, error: BaseException) -> None:
        self.report.status = "failed"
        self.report.message = one_line(f"stopped by an unexpected error: {type(error).__name__}: {error}")

    def _keep_answers_in_flight(self) -> None:
        """The run stopped before deciding the images in its window: the answers the model already
        gave for them are journalled all the same (under this run's fingerprint), so the next run
        decides them without asking again. A cancelled or failed inference leaves nothing."""
        for item in self.in_flight:
            future = item.future
            if future is None or future.cancelled() or not future.done() or future.exception() is not None:
                continue
            try:
                self._keep_prediction(item, future.result())
            except Exception as error:  # e.g. the journal is locked: the next run infers it again
                log.warning("could not keep the prediction of %s: %s", item.image.display_path, one_line(error))
        self.in_flight.clear()

    def _drain_after_stop(self) -> None:
        """Sends already under way finish and are recorded even when the run stops early; every
        one of them, however many fail (the breaker has had its say)."""
        self.stopping = True
        for future, (item, _) in list(self.sending.items()):
            if future.cancel():  # queued, never started: it stays pending for the next run
                del self.sending[future]
                stopped = RetryableError("not sent: the run stopped before its turn")
                self.journal.mark_unsent(item.image, self.destination_name or "", str(stopped), permanent=False)
                self._defer(self.deferred_sends, item, stopped)
        while self.sending:
            try:
                self._collect_sends(until_empty=True)
            except KeyboardInterrupt as error:  # a second Ctrl-C: leave the rest to the journal
                log.warning("while finishing sends: %s", redact(error))
                return
            except Exception as error:  # recorded what could be; the run's own outcome comes first
                log.warning("while finishing sends: %s", one_line(error))

    # ------------------------------------------------------------------ deferred rounds
    def _retry_deferred(self) -> None:
        """End of the stream: retry in rounds, with backoff, every image whose inference or send
        failed for a service reason, until all succeed, the breaker trips or ``retry_for`` passes.

        A client's attempts per request guard against a blip; they can all land on faults by
        luck. Retrying at the end, once the rest of the stream is done, makes the budget time
        (``retry_for``) instead of luck: a run ends with something pending only when a service
        is really down.
        """
        deadline = time.monotonic() + self.options.retry_for
        wait = self.options.round_backoff
        while True:
            if not self.deferred_inference:  # every candidate decided: top_k can choose
                self._release_top_k()
            self._collect_sends(until_empty=True)
            if not (self.deferred_inference or self.deferred_sends):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(wait, remaining))
            wait = min(MAX_ROUND_WAIT, 2 * wait)
            self._retry_round()
        self._release_top_k()
        self._collect_sends(until_empty=True)
        left = len(self.deferred_inference) + len(self.deferred_sends)
        if left:
            rounds = self.report.retry_rounds
            self.report.message = (
                f"{left} image{'s' if left != 1 else ''} still pending after retrying for {self.options.retry_for:g} s "
                f"({rounds} deferred round{'s' if rounds != 1 else ''}): run again to finish them"
            )

    def _retry_round(self) -> None:
        """One round: re-infer the deferred images (decided in input order), resend the deferred sends."""
        self.report.retry_rounds += 1
        inference, self.deferred_inference = self.deferred_inference, []
        sends, self.deferred_sends = self.deferred_sends, []
        for item in inference:
            self._note_retried(item)
            if item.remeasure:
                _, item.prepared = self.executor.submit(item.image, infer=False, measure=True)
            else:
                item.future, _ = self.executor.submit(item.image, infer=True, measure=False)
            self.in_flight.append(item)  # as in the stream: kept if the run stops before deciding it
        for item in sends:
            self._note_retried(item)
            assert item.outgoing is not None and self.destination_name is not None
            # Read again: an upload checkpointed by the failed attempt is resumed, not repeated.
            item.delivery = self.journal.delivery(item.image, self.destination_name)
            self._submit_send(item, *item.outgoing)
        while self.in_flight:
            self._finish(self.in_flight.popleft())
            self._collect_sends(block=len(self.sending) >= self.send_backlog)

    def _note_retried(self, item: _Item) -> None:
        if not item.retried_later:
            item.retried_later = True
            self.report.retried_later += 1

    def _defer(self, queue: list[_Item], item: _Item, error: Exception) -> None:
        item.last_error = error
        queue.append(item)

    def _settle_deferred(self) -> None:
        """The run is over: deferred sends stay pending (the journal says so: the next run sends
        them), deferred inferences are failures (nothing was decided; the next run infers them)."""
        for item in self.deferred_inference:
            self.done += 1
            self._fail(item, "inference", str(item.last_error))
        for item in self.deferred_sends:
            assert item.outgoing is not None
            record = item.outgoing[2]
            self.report.pending += 1
            record["error"] = one_line(item.last_error)
            self._log(item, record)
        self.deferred_inference, self.deferred_sends = [], []

    # ------------------------------------------------------------------ per image
    def _begin(self, seq: int, image: ImageFile) -> _Item:
        self.report.seen += 1
        item = _Item(seq, image)
        if self.destination_name is not None:  # a dry run too: it decides as a real run would
            item.delivery = self.journal.delivery(image, self.destination_name)
            if item.delivery is not None and item.delivery.state == "sent":
                item.skip_reason = "already sent"
        if self.fingerprint is not None:
            # Only this fingerprint's: the same model at other settings predicted something else.
            stored = self.journal.prediction(image, self.fingerprint)
            if stored is not None:
                item.prediction, item.model, item.fingerprint = stored, self.model_id, self.fingerprint
                return self._prepare_pixels(item)
        elif self.options.reuse_predictions:
            try:
                found = self.journal.latest_prediction(image)
            except PredictionFormatError as error:  # NaN stored by alpolicy 0.1
                item.error = f"the stored prediction is not valid: {error}"
                return item
            if found is None:
                item.error = "no stored prediction for this image (run it with a model first)"
                return item
            item.prediction, item.model, item.fingerprint = found.prediction, found.model, found.fingerprint
            return self._prepare_pixels(item)
        if item.skip_reason is None and self.backend is not None:
            item.future, item.prepared = self.executor.submit(image, infer=True, measure=self.needs_pixels)
            item.model, item.fingerprint = self.model_id, self.fingerprint
            return item
        return item

    def _prepare_pixels(self, item: _Item) -> _Item:
        """What the sampling rules measure on the pixels, by the executor too (apart from the
        model's answer: a sampling rule that crashes there fails the image at its decision, and
        the prediction the model made is kept all the same)."""
        if self.needs_pixels and item.skip_reason is None:
            _, item.prepared = self.executor.submit(item.image, infer=False, measure=True)
        return item

    def _finish(self, item: _Item) -> None:
        self.done += 1
        try:
            prediction = self._prediction_of(item)
        except (ImageError, ImageDecodeError) as error:
            self._fail(item, "inference", str(error))
            return
        except ServiceError as error:
            self.done -= 1  # not done: inferred again in a deferred round
            self._defer(self.deferred_inference, item, error)
            self._service_failed("inference", error, "nothing is lost: run again to resume")
            return
        except PluginCrash as error:
            self._fail(item, "inference", str(error))
            self._service_failed("inference", error, PLUGIN_ADVICE)
            return
        finally:
            self.progress.update(self.done, self._detail())
        if prediction is None:  # already sent and nothing to decide
            self.report.already_sent += 1
            return
        self.failures_in_a_row["inference"] = 0
        if self.on_result is not None:
            self.on_result(item.image, prediction)
        if item.skip_reason == "already sent":
            self.report.already_sent += 1
            return
        record: dict[str, Any] | None = None
        try:  # the whole policy: its image rules, then (for a qualifying image) its sampling rules
            if item.prepared is not None:
                try:
                    item.prepared.result()
                except ServiceError as error:  # a remote measurement (an embedder) is down: later
                    self._remeasure_later(item, prediction, error)
                    return
            verdict = self.executor.take_verdict(item.image) if item.future is not None else None
            decision = (self.policy.decision_from(prediction, verdict) if verdict is not None
                        else self.policy.evaluate(prediction))
            record = self._record(item, decision)  # every derived value, once; a crashing explain() fails here
            admission = self._admit(item, decision, record) if decision.qualifies else None
        except ImageDecodeError as error:  # a pixel measurement found the file unreadable
            self._fail(item, "inference", str(error), record)
            return
        except PluginCrash as error:  # a rule's code raised: this image fails, not the run
            self._fail(item, "policy", str(error), record)
            self._service_failed("policy", error, PLUGIN_ADVICE)
            return
        self.failures_in_a_row["policy"] = 0
        self._route(item, prediction, decision, record, admission)

    def _remeasure_later(self, item: _Item, prediction: Prediction, error: ServiceError) -> None:
        """Keep the prediction, measure the pixels again in a deferred round (as an inference)."""
        self.done -= 1
        item.prediction, item.future, item.remeasure = prediction, None, True
        self._defer(self.deferred_inference, item, error)
        self._service_failed("inference", error, "nothing is lost: run again to resume")

    def _prediction_of(self, item: _Item) -> Prediction | None:
        if item.error is not None:
            raise ImageError(item.error)
        if item.future is None:
            if item.prediction is not None and not item.remeasure:
                fingerprint = item.fingerprint or item.model or "unknown"
                self.report.add_reuse(fingerprint, self._settings_note(fingerprint))
            return item.prediction
        prediction = item.future.result()
        self._keep_prediction(item, prediction)
        return prediction

    def _keep_prediction(self, item: _Item, prediction: Prediction) -> None:
        """Journal a prediction this run's model made (before deciding it: a crash loses nothing)."""
        if prediction.model_id is None:
            prediction.model_id = self.model_id
        self.journal.save_prediction(item.image, self.model_id or "unknown", prediction, fingerprint=self.fingerprint)
        self.report.inferred += 1

    def _settings_note(self, fingerprint: str) -> str:
        """``confidence 15, overlap 30``: what went into a fingerprint, read once from the journal."""
        note = self._settings_notes.get(fingerprint)
        if note is None:
            settings = self.journal.fingerprint_settings(fingerprint)
            if settings is None and fingerprint.endswith(f"@{UNKNOWN_SETTINGS}"):
                note = "settings not recorded: stored by an earlier alpolicy"
            else:
                note = describe_settings(settings)
            self._settings_notes[fingerprint] = note
        return note

    def _admit(self, item: _Item, decision: Decision, record: dict[str, Any]) -> Admission:
        """The sampling rules' verdict on a qualifying image, in the record (raises RuleError)."""
        admission = self.sampler.admit(item.image, decision)
        record["sampled"] = admission.sampled
        if admission.reason:
            record["sampling"] = f"{admission.by}: {admission.reason}"
        return admission

    def _route(self, item: _Item, prediction: Prediction, decision: Decision, record: dict[str, Any],
               admission: Admission | None) -> None:
        if admission is None:  # it did not qualify
            self.report.rejected_by[decision.rejected_by or "policy"] += 1
            self._log(item, record)
            return
        self.report.qualified += 1
        if not admission.sampled:
            self.report.rejected_by[admission.by or "sampling"] += 1
            self._log(item, record)
            return
        item.sampling_tags = admission.tags
        if self.sampler.selector is not None:
            self.held.append((Candidate(item.image, decision.score, item.seq), item, prediction, decision, record))
            return
        if self.sampler.top_k is not None:
            self._hold_for_top_k(item, prediction, decision, record)
            return
        self._dispatch(item, prediction, decision, record)

    def _hold_for_top_k(self, item: _Item, prediction: Prediction, decision: Decision, record: dict[str, Any]) -> None:
        """Keep the k best-scored candidates so far (memory bounded by k); the rest are turned down now."""
        score = decision.score if decision.score is not None else float("-inf")
        heapq.heappush(self.top_k, (score, -item.seq, item, prediction, decision, record))
        if len(self.top_k) > (self.sampler.top_k or 0):
            _, _, dropped, _, _, dropped_record = heapq.heappop(self.top_k)
            self._not_in_top_k(dropped, dropped_record)

    def _not_in_top_k(self, item: _Item, record: dict[str, Any]) -> None:
        record["sampled"] = False
        record["sampling"] = f"top_k: not among the {self.sampler.top_k} highest scores"
        self.report.rejected_by["top_k"] += 1
        self._log(item, record)

    def _release_top_k(self) -> None:
        """End of the stream: send the best candidates; images already sent count toward k."""
        if self.sampler.selector is not None:
            self._release_selection(self.sampler.selector)
            return
        if self.sampler.top_k is None:
            return
        room = max(0, self.sampler.top_k - self.report.already_sent)
        best_first = sorted(self.top_k, key=lambda entry: (entry[0], entry[1]), reverse=True)
        self.top_k = []
        for rank, (_, _, item, prediction, decision, record) in enumerate(best_first):
            if rank < room:
                self._dispatch(item, prediction, decision, record)
            else:
                self._not_in_top_k(item, record)

    def _release_selection(self, step: Any) -> None:
        """End of the stream: the selector picks among every held candidate (images already sent
        count toward its budget, as with top_k); the others are turned down, each with its reason."""
        held, self.held = self.held, []
        if not held:
            return
        candidates = [entry[0] for entry in held]
        room = max(0, step.rule.size(len(candidates)) - self.report.already_sent)
        try:
            chosen, reasons = step.call("select", candidates, room)
        except PluginCrash as error:  # the selector's code raised: its candidates fail, the run goes on
            for _, item, _, _, record in held:
                self._fail(item, "policy", str(error), record)
            return
        picked = set(chosen)
        for index, (_, item, _, _, record) in enumerate(held):
            record["sampling"] = f"{step.name}: {reasons[index]}"
            if index not in picked:
                record["sampled"] = False
                self.report.rejected_by[step.name] += 1
                self._log(item, record)
        for index in chosen:
            _, item, prediction, decision, record = held[index]
            self._dispatch(item, prediction, decision, record)

    def _dispatch(self, item: _Item, prediction: Prediction, decision: Decision, record: dict[str, Any]) -> None:
        """A sampled image: send it (or count it, in a dry run)."""
        self.report.sampled += 1
        if not self.sending_enabled:
            self.report.would_send += 1
            self._log(item, record)
            return
        self._submit_send(item, prediction, decision, record)

    def _record(self, item: _Item, decision: Decision) -> dict[str, Any]:
        return {
            "seq": item.seq,
            "image": item.image.display_path,
            "model": item.model,
            "fingerprint": item.fingerprint,
            "qualifies": decision.qualifies,
            "sampled": False,
            "rejected_by": decision.rejected_by,
            "score": decision.score,
            "tags": decision.tags,
            "reasons": decision.reasons,
        }

    def _submit_send(self, item: _Item, prediction: Prediction, decision: Decision, record: dict[str, Any]) -> None:
        assert self.destination is not None and self.destination_name is not None
        existing = item.delivery  # read once, when the image entered the run
        remote_id = existing.remote_id if existing is not None and existing.state == "uploaded" else None
        self.journal.mark_sending(item.image, self.destination_name, self.run_id)
        model = prediction.model_id or item.model
        tags = delivery_tags(decision, [*item.sampling_tags, *self.options.tags], model)
        metadata = delivery_metadata(decision, self.policy.name, model, item.image)
        record["tags"] = tags
        item.outgoing = (prediction, decision, record)
        future = self.send_pool.submit(self._send, item, prediction, decision, tags, metadata, remote_id)
        self.sending[future] = (item, record)

    def _send(self, item: _Item, prediction: Prediction, decision: Decision, tags: list[str],
              metadata: dict[str, Any], remote_id: str | None) -> Receipt:
        """Runs in a send thread."""
        destination_name = self.destination_name
        assert self.destination is not None and destination_name is not None

        def checkpoint(new_remote_id: str) -> None:
            self.journal.mark_uploaded(item.image, destination_name, new_remote_id)

        # ImageDecodeError: the file's fault, recorded as failed. A truncated file is refused here,
        # whatever the destination, and never reaches a labeling queue.
        item.image.check_complete()
        key = item.image.sha256()
        delivery = Delivery(item.image, prediction, decision, key, tags, metadata, remote_id, checkpoint)
        try:
            return self.destination.send(delivery)
        except AlpolicyError:  # the documented failures (PermanentError, RetryableError, AuthError...)
            raise
        except Exception as error:  # a bug in the destination's code: this image fails, not the run
            raise PluginCrash(self.components["sending"], error) from error

    def _collect_sends(self, *, block: bool = False, until_empty: bool = False) -> None:
        while self.sending:
            done = [future for future in self.sending if future.done()]
            if not done:
                if not (block or until_empty):
                    return
                done = list(wait(list(self.sending), return_when=FIRST_COMPLETED).done)
            for future in done:
                item, record = self.sending.pop(future)
                self._sent(item, record, future)
            if not until_empty:
                return

    def _sent(self, item: _Item, record: dict[str, Any], future: Future[Receipt]) -> None:
        assert self.destination_name is not None
        try:
            receipt = future.result()
        except ImageDecodeError as error:  # the file's fault, not the destination's: not for the breaker
            self.journal.mark_unsent(item.image, self.destination_name, one_line(error), permanent=True)
            self._fail(item, "send", str(error), record)
            return
        except PluginCrash as error:
            self.journal.mark_unsent(item.image, self.destination_name, one_line(error), permanent=True)
            self._fail(item, "send", str(error), record)
            self._service_failed("sending", error, PLUGIN_ADVICE)
            return
        except PermanentError as error:
            self.journal.mark_unsent(item.image, self.destination_name, one_line(error), permanent=True)
            self._fail(item, "send", str(error), record)
            self._service_failed("sending", error, "the destination refuses them: fix the cause and run again "
                                 "(failed images are sent again)")
            return
        except (RetryableError, ServiceError, AuthError) as error:
            self.journal.mark_unsent(item.image, self.destination_name, one_line(error), permanent=False)
            if isinstance(error, AuthError):
                self.report.pending += 1
                record["error"] = one_line(error)
                self._log(item, record)
                raise
            self._defer(self.deferred_sends, item, error)
            self._service_failed("sending", error, "they stay pending: run again to send them")
            return
        self.failures_in_a_row["sending"] = 0
        self.journal.mark_sent(item.image, self.destination_name, receipt.remote_id, receipt.url, receipt.duplicate)
        self.report.sent += 1
        self.report.duplicates += int(receipt.duplicate)
        record.update(remote_id=receipt.remote_id, url=receipt.url, duplicate=receipt.duplicate, destination=self.destination_name)
        self._log(item, record)

    def _service_failed(self, stage: str, error: Exception, advice: str) -> None:
        """Count a failure of a stage (a service's, after its retries; a permanent refusal; a plugin
        crash); too many in a row stop the run: going on would only pile them up."""
        self.failures_in_a_row[stage] += 1
        count = self.failures_in_a_row[stage]
        if count >= self.options.max_consecutive_failures and not self.stopping:
            raise RunAborted(f"{stage} failed for {count} images in a row (last: {one_line(error)}); {advice}") from None

    # ------------------------------------------------------------------ bookkeeping
    def _fail(self, item: _Item, stage: str, error: str, record: dict[str, Any] | None = None) -> None:
        error = one_line(error)
        self.report.add_failure(item.image.display_path, stage, error)
        self.journal.record_failure(self.run_id, item.image, stage, error)
        if record is None:
            record = {"seq": item.seq, "image": item.image.display_path, "qualifies": None, "sampled": False}
        record["error"] = error
        record["failed"] = stage
        self._log(item, record)

    def _log(self, item: _Item, record: dict[str, Any]) -> None:
        self.journal.save_decision(self.run_id, item.seq, item.image, record)
        if self.log_file is not None:
            self.log_file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def _detail(self) -> str:
        r = self.report
        sent = f"would send {r.would_send}" if not self.sending_enabled else f"sent {r.sent}"
        return f"qualified {r.qualified}, {sent}, failed {r.failed}"
