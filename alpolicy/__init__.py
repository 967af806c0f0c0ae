"""alpolicy: decide which raw images deserve a human labeler's time.

Public API::

    import alpolicy

    policy = alpolicy.Policy.from_file("policy.json")      # or .from_dict / .from_conditionals
    decision = policy.evaluate(roboflow_inference_json)
    decision.qualifies, decision.reasons, decision.witnesses

The code is laid out by concern, in the order data flows (see README, *Architecture*):
``io`` (images, HTTP, secrets, JSON) below ``policy`` (what a policy is), ``pixels`` and ``rules``,
the plugins (``backends``, ``destinations``, ``sources``), ``runtime`` (how a run happens),
``report`` and ``cli``. 0.1's module paths keep working with a DeprecationWarning (``_compat``).

Plugins implement hooks marked with :data:`alpolicy.hookimpl` (see :mod:`alpolicy.hookspecs`) and
subclass the public base of their kind -- :class:`InferenceBackend`, :class:`Destination`,
:class:`Source` -- with the types and errors of the contract exported here too.
"""

#: Defined before any import, so a submodule may read it (``from .. import __version__``) at any time.
__version__ = "0.1.0"

from . import _compat  # noqa: E402
from .backends import ImageError, InferenceBackend, ModelOptions, SupportsPredict, fingerprint
from .destinations import (Delivery, Destination, DestinationOptions, PermanentError, Receipt, RetryableError,
                           SupportsSend)
from .errors import AlpolicyError, AuthError, PluginCrash, PluginError, PolicyError, Problem, ServiceError, UsageError
from .hookspecs import hookimpl
from .io.images import ImageDecodeError, ImageFile
from .plugins import get_registry
from .policy.decision import Decision, Verdict
from .policy.engine import Policy
from .policy.prediction import TASKS, Detection, Prediction, PredictionFormatError
from .policy.rule import DetectionRule, ImageRule, ParameterError, SamplingRule
from .registry import DestinationSpec, EmbedderSpec, ExecutorSpec, InferenceBackendSpec, Registry, RuleSpec, SourceSpec, Stage
from .rules.base import load_schema
from .runtime.executors import Executor, StatelessWork, ThreadExecutor, make_executor
from .runtime.pipeline import RunOptions, run
from .runtime.run_report import RunReport
from .sdk import active_learning
from .sources import Source, SourceOptions, SupportsImages

_compat.install()  # alpolicy 0.1's module paths (alpolicy.images, alpolicy.pipeline, ...) still import


def __getattr__(name: str):
    """``alpolicy.images``-style attributes of 0.1 (its ``__init__`` imported those modules)."""
    import sys
    return _compat.moved_attribute(sys.modules[__name__], name)


__all__ = [
    "AlpolicyError",
    "AuthError",
    "Decision",
    "Delivery",
    "Destination",
    "DestinationOptions",
    "DestinationSpec",
    "Detection",
    "DetectionRule",
    "EmbedderSpec",
    "Executor",
    "ExecutorSpec",
    "ImageDecodeError",
    "ImageError",
    "ImageFile",
    "ImageRule",
    "InferenceBackend",
    "InferenceBackendSpec",
    "ModelOptions",
    "ParameterError",
    "PermanentError",
    "PluginCrash",
    "PluginError",
    "Policy",
    "PolicyError",
    "Prediction",
    "PredictionFormatError",
    "Problem",
    "Receipt",
    "Registry",
    "RetryableError",
    "RunOptions",
    "RunReport",
    "RuleSpec",
    "SamplingRule",
    "ServiceError",
    "Source",
    "SourceOptions",
    "SourceSpec",
    "Stage",
    "StatelessWork",
    "SupportsImages",
    "SupportsPredict",
    "SupportsSend",
    "TASKS",
    "ThreadExecutor",
    "UsageError",
    "Verdict",
    "active_learning",
    "fingerprint",
    "get_registry",
    "hookimpl",
    "load_schema",
    "make_executor",
    "run",
]
