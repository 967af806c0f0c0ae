"""THE strict JSON reader for everything alpolicy reads from outside: model responses, stored
prediction files, COCO files, journal rows (and, once folded in, policy files).

Python's :mod:`json` is lenient where hostile or broken input hurts: it accepts ``NaN`` and
``Infinity`` (which then poison every comparison and are written back as invalid JSON), turns
``1e400`` into ``inf`` silently, raises :class:`RecursionError` on 100,000 nested brackets, and
reads a response of any size. Here, one function of each:

* :func:`loads` parses with a size bound, rejects the ``NaN``/``Infinity`` tokens and any number
  that overflows to infinity, and turns every parser failure (syntax, bad UTF-8, a 5000-digit
  integer, nesting deeper than the interpreter's recursion limit) into one :class:`JsonError`
  line. Nothing non-finite ever comes out of it.
* :func:`read_file` reads a file with the same size bound (never more than ``max_bytes + 1`` bytes).
* :func:`check_tree` checks a parsed value (or one built in code) is JSON-safe: only JSON types,
  string keys, finite numbers, 64-bit integers, nesting within ``max_depth``; a problem names
  its place (``extra.debug[2]: NaN is not a finite number``).

Why nesting is bounded after parsing and not by a scan before: the parser's own recursion guard
turns a deep document into :class:`RecursionError` at no cost for normal input, which :func:`loads`
reports as one line; a byte scan for depth costs as much as the parse itself on every response.
What is kept is then bounded by :func:`check_tree` (the journal and the destinations write it back
with recursive encoders, which must not meet a document nested 900 deep).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

#: Largest document read (a model response, a prediction file): 32 MiB.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
#: Deepest nesting kept (a Roboflow prediction with segmentation points is 5 deep).
DEFAULT_MAX_DEPTH = 64
#: Integers beyond 64 bits are not portable JSON (JavaScript, most databases cannot hold them).
_INT_LIMIT = 1 << 64


class JsonError(ValueError):
    """A document is not strict, bounded JSON; the message is one line saying why and where."""


def _reject_constant(token: str) -> Any:
    raise JsonError(f"{token} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan; finite - itself is 0
        raise JsonError(f"the number {_clip(text)} is too large (it overflows to infinity)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonError(f"the key {json.dumps(key)} appears twice in one object")
            seen.add(key)
    return document


def size_problem(size: int, max_bytes: int | None) -> str | None:
    """``"40.0 MB, above the limit of 32 MiB"`` when ``size`` exceeds ``max_bytes``, else ``None``."""
    if max_bytes is None or size <= max_bytes:
        return None
    return f"{_megabytes(size)}, above the limit of {_megabytes(max_bytes)}"


def loads(data: bytes | bytearray | str, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
          unique_keys: bool = False, finite: bool = True) -> Any:
    """Parse one JSON document strictly (see the module docstring); :class:`JsonError` otherwise.

    ``max_bytes`` bounds the input (``None``: no bound, for files the user gave us on purpose,
    such as a COCO dataset); ``unique_keys`` also refuses an object with a key twice (slower:
    for small documents such as policies, where a repeated key is a mistake that hides a value).
    ``finite=False`` lets ``NaN``, ``Infinity`` and overflowing numbers through as floats, for a
    reader that validates each part later and fails only that part (one image of a COCO file, one
    row of a journal written by an older version); everything else stays strict.
    """
    size = len(data) if not isinstance(data, str) else len(data.encode("utf-8", "surrogatepass"))
    problem = size_problem(size, max_bytes)
    if problem is not None:
        raise JsonError(f"the document is {problem}")
    hook: Callable[[list[tuple[str, Any]]], Any] | None = _unique_keys if unique_keys else None
    try:
        if not finite:
            return json.loads(data, object_pairs_hook=hook)
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=hook)
    except JsonError:
        raise
    except json.JSONDecodeError as error:
        raise JsonError(f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    except RecursionError:
        raise JsonError("nested too deeply to read (thousands of brackets inside one another)") from None
    except UnicodeDecodeError as error:
        raise JsonError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except (ValueError, TypeError, MemoryError) as error:  # a 5000-digit integer, a UTF-16 surrogate...
        raise JsonError(f"not valid JSON ({_clip(str(error).splitlines()[0] if str(error) else type(error).__name__)})") from None


def read_file(path: str, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, never reading more than ``max_bytes + 1`` (``OSError`` as ``open`` raises
    it, :class:`JsonError` when the file is larger than the bound)."""
    with open(path, "rb") as handle:
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonError(f"the file is larger than the limit of {_megabytes(max_bytes)}")
    return data


def check_tree(value: Any, where: str, *, max_depth: int = DEFAULT_MAX_DEPTH,
               find: Callable[[str], object] | None = None) -> bool:
    """Raise :class:`JsonError` unless ``value`` is JSON-safe (see the module docstring).

    ``where`` names ``value`` in messages (``"extra"``, ``"predictions[3].points"``); deeper
    places are appended as ``.key`` and ``[index]``. ``find`` (e.g.
    :func:`alpolicy.io.secrets.secret_finder`) is tried on every string and key met on the way:
    the result says whether it matched one, so that a caller can redact in the same walk.
    """
    try:
        return _check(value, max_depth, find)
    except _Problem as problem:
        raise JsonError(f"{where}{''.join(reversed(problem.path))}: {problem.message}") from None


class _Problem(Exception):
    """A problem deep in a value; each level adds its step to ``path`` on the way up (so that
    no path is built for the values that are fine)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.path: list[str] = []


def _check(value: Any, depth: int, find: Callable[[str], object] | None) -> bool:
    kind = type(value)
    if kind is dict or kind is list:
        if depth <= 0:
            raise _Problem("nested too deeply")
        found = False
        if kind is dict:
            items: Any = value.items()
        else:
            items = enumerate(value)
        for key, item in items:
            try:
                if kind is dict and type(key) is not str:
                    raise _Problem(f"the key {_clip(repr(key))} is not a string")
                if find is not None and kind is dict and find(key):
                    found = True
                item_kind = type(item)
                if item_kind is float:
                    if item - item != 0.0:
                        raise _Problem(f"{json.dumps(item)} is not a finite number")
                elif item_kind is str:
                    if find is not None and find(item):
                        found = True
                elif item_kind is not bool and item is not None and item_kind is not int:
                    found = _check(item, depth - 1, find) or found
                elif item_kind is int and not -_INT_LIMIT < item < _INT_LIMIT:
                    raise _Problem(f"the integer {_clip(str(item))} does not fit in 64 bits")
            except _Problem as problem:
                problem.path.append(_step(key, kind is list))
                raise
        return found
    if kind is str:
        return bool(find is not None and find(value))
    if kind is bool or value is None:
        return False
    if kind is float:
        if value - value != 0.0:
            raise _Problem(f"{json.dumps(value)} is not a finite number")
        return False
    if kind is int:
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise _Problem(f"the integer {_clip(str(value))} does not fit in 64 bits")
        return False
    # Subclasses (numpy's float64, an OrderedDict, a tuple): judged as what they are a kind of.
    if isinstance(value, bool):
        return False
    for base in (float, int, str, dict):
        if isinstance(value, base):
            return _check(base(value), depth, find)
    if isinstance(value, (list, tuple)):
        return _check(list(value), depth, find)
    raise _Problem(f"a {kind.__name__} is not a JSON value")


def _step(key: Any, in_list: bool) -> str:
    """``[3]``, ``.name`` or ``["odd key"]``: one step of a place in a message."""
    if in_list:
        return f"[{key}]"
    if type(key) is str:
        return f".{key}" if key.isidentifier() else f"[{_clip(json.dumps(key))}]"
    return f"[{_clip(repr(key))}]"


def is_finite_number(value: Any) -> bool:
    """A JSON number (``int`` or ``float``, not ``bool``) that is finite."""
    if type(value) is bool or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _megabytes(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    return f"{size / 1e6:.1f} MB"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
