"""alpolicy: decide which raw images deserve a human labeler's time.

Public API::

    import alpolicy

    policy = alpolicy.Policy.from_file("policy.json")      # or .from_dict / .from_conditionals
    decision = policy.evaluate(roboflow_inference_json)
    decision.qualifies, decision.reasons, decision.witnesses

Plugins implement hooks marked with :data:`alpolicy.hookimpl` (see :mod:`alpolicy.hookspecs`).
"""

from .backends import ModelOptions
from .decision import Decision, Verdict
from .destinations import DestinationOptions
from .errors import AlpolicyError, AuthError, PluginError, PolicyError, Problem, ServiceError, UsageError
from .hookspecs import hookimpl
from .pipeline import RunOptions, run
from .plugins import get_registry
from .run_report import RunReport
from .sdk import active_learning
from .policy import Policy
from .prediction import Detection, Prediction, PredictionFormatError
from .registry import DestinationSpec, InferenceBackendSpec, Registry, RuleSpec, Stage
from .rules.base import DetectionRule, ImageRule, ParameterError, load_schema

__version__ = "0.1.0"

__all__ = [
    "AlpolicyError",
    "AuthError",
    "Decision",
    "DestinationOptions",
    "DestinationSpec",
    "Detection",
    "DetectionRule",
    "ImageRule",
    "InferenceBackendSpec",
    "ModelOptions",
    "ParameterError",
    "PluginError",
    "Policy",
    "PolicyError",
    "Prediction",
    "PredictionFormatError",
    "Problem",
    "Registry",
    "RunOptions",
    "RunReport",
    "RuleSpec",
    "ServiceError",
    "Stage",
    "UsageError",
    "Verdict",
    "active_learning",
    "get_registry",
    "hookimpl",
    "load_schema",
    "run",
]
