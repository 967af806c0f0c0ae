"""Keep API keys and tokens out of every log line, error message, journal row and report.

Each secret alpolicy is handed is registered here; :func:`redact` replaces registered secrets
(and anything shaped like ``api_key=...`` or ``Authorization: ...``) in any text. The ``alpolicy``
logger carries a filter that redacts every record, and every message built from a foreign
exception (whose text may contain a URL with the key) passes through :func:`redact`.

Data is redacted too, where it enters: a model may echo the request (``"debug_request":
"...?api_key=..."``) inside a successful prediction, which the journal, the decisions log, the
destinations' files and the pre-labels would then keep. :func:`redact_value` masks the strings
of a JSON value; :func:`secret_finder` tells, with one C-level search per string, whether a
string holds a registered secret at all, so that a prediction's hundreds of detections cost
nothing when none does (see :meth:`alpolicy.Prediction.from_json`).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable

_lock = threading.Lock()
_secrets: set[str] = set()
#: One pattern matching any registered secret (rebuilt on :func:`register`); ``None`` while none is.
_finder: re.Pattern[str] | None = None
_PATTERNS = [
    re.compile(r"(?i)(api_key=)[^&\s'\"]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:token|bearer)\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:access|refresh)['\"]?\s*[:=]\s*['\"])[^'\"]+"),
]
MASK = "***"


def register(secret: str | None) -> None:
    """Remember a secret so that :func:`redact` hides it everywhere (short strings are ignored)."""
    global _finder
    if secret and len(secret) >= 4:
        with _lock:
            if secret not in _secrets:
                _secrets.add(secret)
                ordered = sorted(_secrets, key=len, reverse=True)
                _finder = re.compile("|".join(re.escape(s) for s in ordered))


def secret_finder() -> Callable[[str], object] | None:
    """A function telling whether a string holds a registered secret (truthy when it does), or
    ``None`` when no secret is registered: the cheap test before :func:`redact`."""
    finder = _finder
    return finder.search if finder is not None else None


def redact_value(value: Any) -> Any:
    """``value`` (a JSON value) with :func:`redact` applied to every string in it, keys included.

    Copy on write: containers in which nothing changed are returned as they are, so a clean
    value costs one walk and no allocation.
    """
    return _redacted(value)[0]


def _redacted(value: Any) -> tuple[Any, bool]:
    kind = type(value)
    if kind is str:
        masked = redact(value)
        return (masked, True) if masked != value else (value, False)
    if kind is dict:
        pairs = []
        changed = False
        for key, item in value.items():
            new_key, key_changed = _redacted(key) if type(key) is str else (key, False)
            new_item, item_changed = _redacted(item)
            changed = changed or key_changed or item_changed
            pairs.append((new_key, new_item))
        return (dict(pairs), True) if changed else (value, False)
    if kind is list:
        results = [_redacted(item) for item in value]
        if any(changed for _, changed in results):
            return [item for item, _ in results], True
        return value, False
    return value, False


def redact(text: object) -> str:
    """The text with every registered secret and key-shaped parameter masked."""
    result = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in result:
            result = result.replace(secret, MASK)
    for pattern in _PATTERNS:
        result = pattern.sub(lambda match: match.group(1) + MASK, result)
    return result


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked (arguments are merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


logger = logging.getLogger("alpolicy")
if not any(isinstance(f, RedactingFilter) for f in logger.filters):
    logger.addFilter(RedactingFilter())
