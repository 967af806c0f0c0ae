"""Keep API keys and tokens out of every log line, error message, journal row and report.

Each secret alpolicy is handed is registered here; :func:`redact` replaces registered secrets
(and anything shaped like ``api_key=...`` or ``Authorization: ...``) in any text. The ``alpolicy``
logger carries a filter that redacts every record, and every message built from a foreign
exception (whose text may contain a URL with the key) passes through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_PATTERNS = [
    re.compile(r"(?i)(api_key=)[^&\s'\"]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:token|bearer)\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:access|refresh)['\"]?\s*[:=]\s*['\"])[^'\"]+"),
]
MASK = "***"


def register(secret: str | None) -> None:
    """Remember a secret so that :func:`redact` hides it everywhere (short strings are ignored)."""
    if secret and len(secret) >= 4:
        with _lock:
            _secrets.add(secret)


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
