"""The driver's side of the Dask executor: images in bounded batches to the workers, answers back.

The coordinator submits images one at a time, in input order; they are gathered into batches of
``--concurrency`` images, each one Dask task (:func:`alpolicy_dask.worker.run_batch`). A batch
leaves when it is full, or as soon as the coordinator asks for the answer of an image still
waiting in it (:class:`_Answer`), so the end of the stream and a deferred round never wait for
a batch to fill. The coordinator keeps ``window`` images in flight: two batches per worker.

A worker that dies loses nothing: its tasks (running, queued, or finished with the result still
in its memory) are computed again by Dask on another worker -- a task is pure -- and each
image's answer is set once, when its batch's result lands. The journal, the sampler and the
sends never leave the driver, so nothing is recorded or sent twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future
from typing import Any

from alpolicy import Executor, ImageFile, InferenceBackend, ServiceError, StatelessWork, UsageError
from alpolicy.backends import fingerprint_of
from alpolicy.errors import exception_line

from .worker import Batch, Outcome, Unit, run_batch

log = logging.getLogger("alpolicy.dask")

#: Attempts of a batch whose task *raised* (not a worker's death: Dask reschedules those by
#: itself, up to ``distributed.scheduler.allowed-failures``).
TASK_RETRIES = 2


class _Answer(Future):
    """An image's answer: asked for while its batch is still being filled, it sends the batch."""

    def __init__(self, executor: "DaskExecutor") -> None:
        super().__init__()
        self._executor = executor

    def result(self, timeout: float | None = None) -> Any:
        self._executor._send_pending(self)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._executor._send_pending(self)
        return super().exception(timeout)


class DaskExecutor(Executor):
    """The stateless stage on the workers of ``client`` (and ``cluster``, closed with it when the
    executor started it)."""

    def __init__(self, client: Any, cluster: Any = None, *, where: str) -> None:
        self.client, self.cluster, self.where = client, cluster, where
        self.batch_size = 8
        self.workers = 1
        self._waiting: list[tuple[Unit, _Answer | None, _Answer | None]] = []
        self._tasks: dict[Any, list[tuple[Unit, _Answer | None, _Answer | None]]] = {}
        self._lock = threading.RLock()
        self._closed = False
        #: The workers' verdicts, by the driver's image (see :meth:`take_verdict`).
        self._verdicts: dict[int, Any] = {}
        #: Verdicts the coordinator took (a decision made on a worker): diagnostics and tests.
        self.verdicts_taken = 0

    # ---------------------------------------------------------------- the contract
    def check(self, model: str | InferenceBackend | None) -> None:
        if model is not None and not isinstance(model, str):
            raise UsageError(f"--executor {self.spec}: give the model as a spec (e.g. onnx:model.onnx), not a "
                             f"{type(model).__name__} object: each Dask worker builds its own from the spec")

    def start(self, work: StatelessWork) -> None:
        super().start(work)
        self.batch_size = work.concurrency
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        backend = work.backend
        self._template = dict(
            model=work.model if isinstance(work.model, str) else None,
            model_options=work.model_options,
            fingerprint=fingerprint_of(backend) if backend is not None else None,
            policy=work.policy.to_json(indent=None),
            component=work.component,
            threads=work.concurrency,
        )

    def window(self, concurrency: int) -> int:
        return max(4 * concurrency, 2 * self.batch_size * self.workers)

    def submit(self, image: ImageFile, *, infer: bool, measure: bool) -> tuple[Future | None, Future | None]:
        predicted = _Answer(self) if infer else None
        measured = _Answer(self) if measure else None
        if predicted is None and measured is None:
            return None, None
        with self._lock:
            self._waiting.append((Unit(image, infer, measure), predicted, measured))
            if len(self._waiting) >= self.batch_size:
                self._send()
        return predicted, measured

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting, self._waiting = self._waiting, []
            tasks = list(self._tasks)
        for _, *answers in waiting:
            for answer in answers:
                if answer is not None:
                    answer.cancel()
        if tasks:
            try:
                self.client.cancel(tasks)
            except Exception as error:  # the cluster may be gone already
                log.debug("cancelling the Dask tasks failed: %s", exception_line(error))
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    # ---------------------------------------------------------------- batches
    def _send_pending(self, answer: _Answer) -> None:
        """The coordinator waits for ``answer``: send the batch it waits in, however full."""
        if answer.done() or answer.running():
            return
        with self._lock:
            if any(answer is predicted or answer is measured for _, predicted, measured in self._waiting):
                self._send()

    def _send(self) -> None:
        units, self._waiting = self._waiting, []
        live = [entry for entry in units if self._claim(entry)]
        if not live or self._closed:
            return
        batch = Batch(units=[unit for unit, _, _ in live], **self._template)
        task = self.client.submit(run_batch, batch, key=f"alpolicy-batch-{uuid.uuid4().hex}", pure=False,
                                  retries=TASK_RETRIES)
        self._tasks[task] = live
        task.add_done_callback(self._landed)

    @staticmethod
    def _claim(entry: tuple[Unit, _Answer | None, _Answer | None]) -> bool:
        """Mark the image's answers running; an image whose answers were all cancelled is left out."""
        _, *answers = entry
        claimed = [answer.set_running_or_notify_cancel() for answer in answers if answer is not None]
        return any(claimed)

    def _landed(self, task: Any) -> None:
        """A Dask callback thread: the batch's result, or its failure, to each image's answers."""
        with self._lock:
            entries = self._tasks.pop(task, [])
        try:
            outcomes: list[Outcome] = task.result()
        except BaseException as error:  # cancelled at shutdown, KilledWorker, a worker without alpolicy...
            failure = ServiceError(f"the Dask task for {len(entries)} images failed ({self.where}): {exception_line(error)}")
            for _, *answers in entries:
                for answer in answers:
                    if answer is not None and not answer.done():
                        answer.set_exception(failure)
            return
        for (unit, predicted, measured), outcome in zip(entries, outcomes):
            if measured is not None and not measured.done():
                unit.image.derived.update(outcome.derived)  # before the answer: the sampler reads it next
                if outcome.measure_error is not None:
                    measured.set_exception(outcome.measure_error.rebuild())
                else:
                    measured.set_result(None)
            if predicted is not None and not predicted.done():
                if outcome.error is not None:
                    predicted.set_exception(outcome.error.rebuild())
                else:
                    with self._lock:  # before the answer: the coordinator takes it right after reading it
                        if outcome.verdict is None:
                            self._verdicts.pop(id(unit.image), None)
                        else:
                            self._verdicts[id(unit.image)] = outcome.verdict
                    predicted.set_result(outcome.prediction)

    def take_verdict(self, image: ImageFile) -> Any:
        """The workers' verdict on ``image``'s latest prediction (their detection and image rules),
        removed; ``None`` when they made none (a rule raised there: the coordinator evaluates)."""
        with self._lock:
            verdict = self._verdicts.pop(id(image), None)
            self.verdicts_taken += verdict is not None
        return verdict


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as error:
        raise UsageError(f"the Dask executor needs the distributed package: pip install distributed ({error})") from None
    return distributed


def start_local_cluster(target: str) -> DaskExecutor:
    """``dask-local:N``: N worker processes of one thread each on this machine, for the run."""
    if not target.isdigit() or int(target) < 1:
        raise UsageError(f"executor 'dask-local:{target}': give a whole number of workers, e.g. dask-local:2")
    distributed = _distributed()
    try:
        cluster = distributed.LocalCluster(n_workers=int(target), threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
    except Exception as error:
        raise UsageError(f"could not start a Dask LocalCluster of {target} workers: {exception_line(error)}") from None
    try:
        client = distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return DaskExecutor(client, cluster, where=f"LocalCluster of {target}")


def scheduler_address(target: str) -> str:
    """``//HOST:PORT`` (``dask://HOST:PORT``) -> ``tcp://HOST:PORT``; ``tls://HOST:PORT`` as it is."""
    if target.startswith("//"):
        address = "tcp:" + target
    elif "://" in target:
        address = target
    else:
        raise UsageError(f"executor 'dask:{target}' should look like dask://HOST:PORT (or dask:tls://HOST:PORT)")
    if not address.split("://", 1)[1].strip("/"):
        raise UsageError(f"executor 'dask:{target}': give the scheduler's HOST:PORT, e.g. dask://scheduler:8786")
    return address


def join_scheduler(target: str) -> DaskExecutor:
    """``dask://HOST:PORT``: the workers of a running scheduler (they must have alpolicy and the
    plugins the run uses installed, and see its images)."""
    address = scheduler_address(target)
    distributed = _distributed()
    # Dask's own setting (distributed.comm.timeouts.connect; DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s)
    import dask.utils

    timeout = dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except Exception as error:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exception_line(error)}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception:
        client.close()
        raise UsageError(f"the Dask scheduler at {address} has no workers (waited {timeout:g} s)") from None
    return DaskExecutor(client, where=address)
