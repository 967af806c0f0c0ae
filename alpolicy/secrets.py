"""Keep API keys and tokens out of every log line, error message, journal row and report.

Each secret alpolicy is handed is registered here; :func:`redact` replaces registered secrets
(and anything shaped like ``api_key=...`` or ``Authorization: ...``) in any text.

Log records are redacted where they are *made*, not where one logger happens to filter them: a
filter on the ``alpolicy`` logger sees neither the records of its children (propagation skips
ancestors' filters) nor urllib3's, which at DEBUG quote every URL requested -- and Roboflow's
URLs carry the key. So importing alpolicy wraps the global :class:`logging.LogRecord` factory
(chaining to whatever factory was installed before): every record of every logger, at every
level, has its message, formatted exception and stack text redacted before any handler sees it.
Until a secret is registered the wrapper does nothing but one check.

:func:`secret` also wraps each registered value in :class:`Secret`, a ``str`` whose ``repr`` is
masked, so a key held in a params dict or an attribute does not show in a ``repr`` either.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable

_lock = threading.Lock()
_secrets: set[str] = set()
#: The registered secrets, longest first (so a secret containing another is masked whole).
_ordered: tuple[str, ...] = ()
_PATTERNS = [
    re.compile(r"(?i)(api_key=)[^&\s'\"]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:token|bearer)\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:access|refresh)['\"]?\s*[:=]\s*['\"])[^'\"]+"),
]
MASK = "***"


class Secret(str):
    """A secret string: used as the string it is, but its ``repr`` shows only the mask."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def register(secret: str | None) -> None:
    """Remember a secret so that :func:`redact` hides it everywhere (short strings are ignored)."""
    global _ordered
    if secret and len(secret) >= 4:
        with _lock:
            if secret not in _secrets:
                _secrets.add(str(secret))
                _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def secret(value: str) -> Secret:
    """Register ``value`` and return it as a :class:`Secret` (same text, masked ``repr``)."""
    register(value)
    return value if isinstance(value, Secret) else Secret(value)


def redact(text: object) -> str:
    """The text with every registered secret and key-shaped parameter masked."""
    result = str(text)
    for known in _ordered:
        if known in result:
            result = result.replace(known, MASK)
    for pattern in _PATTERNS:
        result = pattern.sub(lambda match: match.group(1) + MASK, result)
    return result


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask secrets in a record's message (arguments merged first), exception and stack text."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed format: never raise from a logging call; the handler
        # reports it (``--- Logging error ---`` with the message and arguments), masked.
        record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(repr(arg)) for arg in record.args)
        elif record.args:
            record.args = (redact(repr(record.args)),)
    else:
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        # Formatters use a pre-set exc_text as it is instead of formatting exc_info again: set
        # it only when the traceback holds a secret, so custom exception formats stay otherwise.
        text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:
            record.exc_text = cleaned
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """Redacts each record it sees (for a handler of records made before alpolicy was imported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _redacting(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        return redact_record(record) if _ordered else record

    factory.alpolicy_redacting = True  # type: ignore[attr-defined]
    return factory


def install() -> None:
    """Wrap the global LogRecord factory once (idempotent, also across module reloads)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "alpolicy_redacting", False):
        logging.setLogRecordFactory(_redacting(current))


install()
