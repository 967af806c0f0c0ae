"""alpolicy: decide which raw images deserve a human labeler's time.

Public API::

    import alpolicy

    policy = alpolicy.Policy.from_file("policy.json")      # or .from_dict / .from_conditionals
    decision = policy.evaluate(roboflow_inference_json)
    decision.qualifies, decision.reasons, decision.witnesses

Plugins implement hooks marked with :data:`alpolicy.hookimpl` (see :mod:`alpolicy.hookspecs`) and
subclass the public base of their kind -- :class:`InferenceBackend`, :class:`Destination`,
:class:`Source` -- with the types and errors of the contract exported here too.
"""

from .backends import ImageError, InferenceBackend, ModelOptions, SupportsPredict, fingerprint
from .decision import Decision, Verdict
from .destinations import (Delivery, Destination, DestinationOptions, PermanentError, Receipt, RetryableError,
                           SupportsSend)
from .errors import AlpolicyError, AuthError, PluginCrash, PluginError, PolicyError, Problem, ServiceError, UsageError
from .hookspecs import hookimpl
from .images import ImageDecodeError, ImageFile
from .pipeline import RunOptions, run
from .plugins import get_registry
from .run_report import RunReport
from .sdk import active_learning
from .policy import Policy
from .prediction import Detection, Prediction, PredictionFormatError
from .registry import DestinationSpec, InferenceBackendSpec, Registry, RuleSpec, SourceSpec, Stage
from .rules.base import DetectionRule, ImageRule, ParameterError, SamplingRule, load_schema
from .sources import Source, SourceOptions, SupportsImages

__version__ = "0.1.0"

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
    "SupportsImages",
    "SupportsPredict",
    "SupportsSend",
    "UsageError",
    "Verdict",
    "active_learning",
    "fingerprint",
    "get_registry",
    "hookimpl",
    "load_schema",
    "run",
]
