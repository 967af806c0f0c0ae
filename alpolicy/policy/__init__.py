"""What a policy IS: its document, its validation, its compiled tree and what it decides.

What belongs here: the policy engine (:mod:`.engine`: ``Policy``, leaves and nodes, compile once),
the canonical prediction it reads (:mod:`.prediction`), the ``Decision`` it returns
(:mod:`.decision`), the composed JSON Schema and its problems (:mod:`.validation`), the strict policy
JSON reader (:mod:`.policy_json`), the SDK ``conditionals`` and Roboflow Inference configurations
as policies (:mod:`.conditionals`, :mod:`.inference_config`), and the usage-counter protocol that
sampling rules read (:mod:`.usage`; the journal-backed counter lives in :mod:`alpolicy.runtime`).
Nothing here runs a model, touches a journal or writes a report.
"""

from typing import Any

from .. import _compat
from .engine import Policy

__all__ = ["Policy"]


def __getattr__(name: str) -> Any:
    """0.1's ``alpolicy.policy`` was the engine module: its other names, with a DeprecationWarning."""
    return _compat.moved_name(__name__, name)
