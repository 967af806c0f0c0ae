"""Helpers for rule factories: seeded draws, schemas shipped as package data, bounds in words.

The rule base classes themselves (``DetectionRule``, ``ImageRule``, ``SamplingRule``,
``ParameterError``) are part of what a policy is and live in :mod:`alpolicy.policy.rule`; they are
also exported by :mod:`alpolicy.rules` and :mod:`alpolicy`. Reading them from here still works (0.1
did) with a DeprecationWarning naming the new place.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any, Iterable

from .. import _compat
from ..policy import rule as _rule


def __getattr__(name: str) -> Any:
    return _compat.moved_name(__name__, name)


def seeded_draw(seed: int | str, rule: str, image_key: str) -> float:
    """A uniform draw in [0, 1) fixed by (seed, rule, image): the same on every rerun and resume."""
    digest = hashlib.sha256(f"{seed}\x00{rule}\x00{image_key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def load_schema(package: str, name: str) -> dict[str, Any]:
    """Load a JSON Schema shipped as package data (``importlib.resources``), e.g. a plugin's own."""
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


def builtin_schema(rule_name: str) -> dict[str, Any]:
    """The schema of a built-in rule: ``schemas/rules/<name>.schema.json``."""
    return load_schema("alpolicy.schemas", f"rules/{rule_name}.schema.json")


def format_number(value: float) -> str:
    """Print bounds compactly: ``inf`` as ∞, integers without a fraction."""
    if value == float("inf"):
        return "∞"
    if value == float("-inf"):
        return "-∞"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def format_names(names: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(names)) + "]"


def check_bounds(low: float, high: float, *, low_key: str = "min", high_key: str = "max") -> None:
    """Reject ``min > max`` (a schema cannot compare two fields)."""
    if low > high:
        raise _rule.ParameterError(
            low_key, f"{format_number(low)} is greater than {high_key} {format_number(high)}"
        )
