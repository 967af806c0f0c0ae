"""Rule protocols and the built-in rules (registered as plugins in ``detection`` and ``image``)."""

from .base import (
    DetectionRule,
    ImageRule,
    ParameterError,
    SamplingRule,
    builtin_schema,
    check_bounds,
    load_schema,
)

__all__ = [
    "DetectionRule",
    "ImageRule",
    "ParameterError",
    "SamplingRule",
    "builtin_schema",
    "check_bounds",
    "load_schema",
]
