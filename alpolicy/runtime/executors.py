"""Where a run's stateless stage runs: fetch, decode, inference, the pixel measurements and the
policy's detection and image rules.

A run has two stages. The *stateless* one turns an image into a prediction (and the values the
sampling rules measure on the pixels, ``image.derived``): any process can do it, in any order.
The *stateful* one -- the policy's verdict, the sampler, the journal, the sends -- stays with the
run's coordinator (:class:`alpolicy.runtime.pipeline._Run`, "the driver"), which reads the answers
back **in input order**: so an executor changes where the work is done, never what is decided.

An :class:`Executor` is that seam. The default, :class:`ThreadExecutor` (``--executor threads``),
is a thread pool in this process. A plugin registers others through the ``alpolicy_executors``
hook (:class:`alpolicy.ExecutorSpec`): plugins/alpolicy-dask runs the stage on Dask workers
(``dask-local:N``, ``dask://HOST:PORT``); a Ray one would fit the same contract.

An executor that infers elsewhere also decides there: its workers evaluate the policy's
detection and image rules on each prediction they made and send back the verdict in a form that
travels (:meth:`alpolicy.Policy.verdict`: positions of the witnesses and of the rules, not
objects); the driver turns it into its own :class:`~alpolicy.Decision`
(:meth:`~alpolicy.Policy.decision_from`), identical to the one it would have made, and evaluates
itself only what came without one (a stored prediction; a rule that raised on the worker, so that
its crash is reported as a local run reports it). The sampling rules, which read and charge the
journal's usage, stay at the driver.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..backends import ImageError, InferenceBackend, ModelOptions
from ..errors import AlpolicyError, PluginCrash, UsageError
from ..hookspecs import hookimpl
from ..plugins import construct
from ..io.images import ImageFile
from ..policy.prediction import Prediction, PredictionFormatError
from ..registry import ExecutorSpec, Registry, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from ..policy.engine import Policy
    from .sampler import Sampler

#: The executor of a run that names none.
DEFAULT_EXECUTOR = "threads"


@dataclass
class StatelessWork:
    """What an executor needs to run the stateless stage, here or elsewhere.

    ``model`` is what the run was given: a spec (``onnx:demo``), which another process can build
    again from the spec and ``model_options``, or a backend object (usable in this process only).
    ``backend`` is the driver's instance, ``sampler`` the driver's sampler (its ``prepare`` is
    what measures the pixels; ``policy`` rebuilds one elsewhere). ``component`` names the backend
    when its code crashes.
    """

    model: str | InferenceBackend | None
    backend: InferenceBackend | None
    model_options: ModelOptions
    policy: "Policy"
    sampler: "Sampler"
    concurrency: int
    component: str = "the backend"

    @property
    def needs_pixels(self) -> bool:
        return self.sampler.needs_pixels

    def predict(self, image: ImageFile) -> Prediction:
        """This process's backend on ``image`` (see :func:`predict_with`)."""
        assert self.backend is not None
        return predict_with(self.backend, image, self.component, self.model_options.max_detections)


def predict_with(backend: InferenceBackend, image: ImageFile, component: str, max_detections: int) -> Prediction:
    """The image fetched (a remote one), the model, its answer checked by the one validator.
    An exception the backend's contract does not document is its bug: a :class:`PluginCrash`."""
    image.materialize()
    try:
        prediction = backend.predict(image)
    except AlpolicyError:  # the documented failures (ImageError, ServiceError, AuthError...)
        raise
    except Exception as error:  # a bug in the backend's code: this image fails, not the run
        raise PluginCrash(component, error) from error
    if not prediction.checked:  # built by a backend in code: the one validator, once
        try:
            prediction.validated(max_detections=max_detections)
        except PredictionFormatError as error:
            raise ImageError(f"the model returned an invalid prediction: {error}") from None
    return prediction


def measure_with(sampler: "Sampler", image: ImageFile) -> None:
    """The pixel measurements of the sampling rules, on the fetched image, into ``image.derived``."""
    image.materialize()
    sampler.prepare(image)


class Executor:
    """Runs the stateless stage of a run; the coordinator calls, from its one thread:

    * :meth:`check` once, before the run starts, with the model it was given;
    * :meth:`start` once, with the :class:`StatelessWork`, before the first image;
    * :meth:`window` once: how many images to keep between the source and the decision;
    * :meth:`submit` per image: ``(prediction future or None, measurement future or None)``,
      futures the coordinator reads in input order (their ``result()`` raising what the stage
      raised: ``ImageError``, ``ServiceError``, ``PluginCrash``...). A measurement future's
      result is ``None``; by then ``image.derived`` holds the values;
    * :meth:`take_verdict` per inferred image, once its prediction is read: the policy's
      verdict on it when the executor decided it where it inferred
      (:meth:`alpolicy.Policy.verdict`: the detection and image rules run in the stateless
      stage too), else ``None`` and the coordinator evaluates the rules itself;
    * :meth:`shutdown` once, at the end (the run stopped early: what is queued is dropped).

    ``spec`` is the spec it was built from (``dask-local:2``), shown in the run's options.
    """

    spec: str = DEFAULT_EXECUTOR

    def start(self, work: StatelessWork) -> None:
        self.work = work

    def window(self, concurrency: int) -> int:
        return max(4, 4 * concurrency)

    def submit(self, image: ImageFile, *, infer: bool, measure: bool) -> tuple[Future[Prediction] | None, Future[None] | None]:
        raise NotImplementedError

    def take_verdict(self, image: ImageFile) -> Any:
        """The verdict made with ``image``'s latest prediction, removed (``None``: none was made;
        the threads executor makes none: the coordinator's evaluation costs what a worker's would)."""
        return None

    def check(self, model: str | InferenceBackend | None) -> None:
        """Called once before the run starts: a :class:`UsageError` for a model this executor
        cannot run (a backend object, which exists in this process only, on other machines)."""

    def shutdown(self) -> None:
        """Stop; futures not started are cancelled."""


class ThreadExecutor(Executor):
    """The stage in a pool of ``concurrency`` threads of this process (HTTP calls and ONNX Runtime
    release the GIL). The prediction and the measurements of an image are two tasks: a sampling
    rule that crashes fails the image at its decision, and the model's prediction is kept."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.pool: ThreadPoolExecutor | None = None

    def start(self, work: StatelessWork) -> None:
        super().start(work)
        self.pool = ThreadPoolExecutor(self.threads or work.concurrency, thread_name_prefix="alpolicy-infer")

    def submit(self, image: ImageFile, *, infer: bool, measure: bool) -> tuple[Future[Prediction] | None, Future[None] | None]:
        assert self.pool is not None
        predicted = self.pool.submit(self.work.predict, image) if infer else None
        measured = self.pool.submit(measure_with, self.work.sampler, image) if measure else None
        return predicted, measured

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def make_executor(spec: str | Executor | None, options: Any, registry: Registry) -> Executor:
    """The executor for ``--executor SPEC`` (``None``: threads); an :class:`Executor` object is used as it is.

    The scheme is what precedes the first ``:`` (``dask-local:2``, ``dask://host:8786``); an
    unknown one is a one-line :class:`UsageError` naming the installed schemes.
    """
    if spec is None:
        spec = DEFAULT_EXECUTOR
    if isinstance(spec, Executor):
        return spec
    if not isinstance(spec, str):
        raise UsageError(f"executor should be a spec such as 'threads' or 'dask-local:2', not {type(spec).__name__}")
    scheme, _, target = spec.partition(":")
    entry = registry.executors.get(scheme)
    if entry is None:
        hint = " (pip install plugins/alpolicy-dask for dask-local: and dask:)" if scheme.startswith("dask") else ""
        installed = ", ".join(sorted(registry.executors)) or "none"
        raise UsageError(f"no executor for {scheme!r}{did_you_mean(scheme, registry.executors)}; installed: {installed}{hint}")
    if not target and not entry.accepts_empty_target:
        raise UsageError(f"executor {spec!r} should look like SCHEME:TARGET, e.g. dask-local:2 or dask://HOST:8786")
    built = construct(entry, target, options, "executor")
    if isinstance(built, Executor):
        built.spec = spec
    return built


def _threads(target: str, options: Any) -> ThreadExecutor:
    """``threads`` (``--concurrency`` threads) or ``threads:N``."""
    if not target:
        return ThreadExecutor()
    if not target.isdigit() or int(target) < 1:
        raise UsageError(f"executor 'threads:{target}': give a whole number of threads, e.g. threads:8")
    return ThreadExecutor(int(target))


@hookimpl
def alpolicy_executors(register: Callable[[ExecutorSpec], None]) -> None:
    register(ExecutorSpec("threads", _threads, "a thread pool in this process (the default): threads, or threads:N "
                          "(default: --concurrency threads)", accepts_empty_target=True))
