"""The built-in rules, each module a plugin registering its rules: ``detection``, ``image``,
``scores``, ``sampling``, ``frames`` (near-duplicates, sharpness: they read :mod:`alpolicy.pixels`).

What belongs here: rule implementations and the helpers their factories share (:mod:`.base`).
What a rule *is* (the base classes the engine compiles against) lives in
:mod:`alpolicy.policy.rule` and is re-exported here. A rule never imports the pipeline: the usage
a sampling rule reads is the protocol :class:`alpolicy.policy.usage.UsageCounter`.
"""

from ..policy.rule import DetectionRule, ImageRule, ParameterError, SamplingRule
from .base import builtin_schema, check_bounds, load_schema

__all__ = [
    "DetectionRule",
    "ImageRule",
    "ParameterError",
    "SamplingRule",
    "builtin_schema",
    "check_bounds",
    "load_schema",
]
