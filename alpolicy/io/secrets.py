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


class Secret(str):
    """A secret string: used as the string it is, but its ``repr`` shows only the mask."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def register(secret: str | None) -> None:
    """Remember a secret so that :func:`redact` hides it everywhere (short strings are ignored)."""
    global _finder
    if secret and len(secret) >= 4:
        with _lock:
            if secret not in _secrets:
                _secrets.add(str(secret))
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


def secret(value: str) -> Secret:
    """Register ``value`` and return it as a :class:`Secret` (same text, masked ``repr``)."""
    register(value)
    return value if isinstance(value, Secret) else Secret(value)


def redact(text: object) -> str:
    """The text with every registered secret and key-shaped parameter masked."""
    result = str(text)
    finder = _finder
    if finder is not None:
        result = finder.sub(MASK, result)
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
        return redact_record(record) if _finder is not None else record

    factory.alpolicy_redacting = True  # type: ignore[attr-defined]
    return factory


def install() -> None:
    """Wrap the global LogRecord factory once (idempotent, also across module reloads)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "alpolicy_redacting", False):
        logging.setLogRecordFactory(_redacting(current))


install()
