"""The one reader of policy JSON (policy files, ``--conditionals``, Inference configurations), and
the checks every policy-like document passes before anything recursive looks at it.

Why: Python's ``json`` accepts what JSON does not (``NaN``, ``Infinity``; ``1e999`` becomes
``inf``), keeps only the last of duplicate keys (``{"rule": "confidence", "rule": "box_area"}``
silently became a ``box_area`` rule), fails on integers over 4300 digits with a bare
``ValueError``, and, like jsonschema and the compiler, recurses once per nesting level, so a
``{"not": ...}`` 400 deep ended in a ``RecursionError``. Each of these is a located
:class:`~alpolicy.errors.Problem` instead, with the path format of every other policy problem.

The limits, documented in the README's policy reference:

* :data:`MAX_NESTING`: all / any / not nested at most 64 levels deep under ``$.image``;
* :data:`MAX_DEPTH`: arrays and objects nested at most 160 levels in all (64 levels of
  ``all`` take 130);
* :data:`MAX_INT_DIGITS`: integers of at most 100 digits; numbers must be finite.

Depth is checked without recursion: on the text before :func:`json.loads` (whose C scanner
recurses), and on Python values before jsonschema (:func:`document_problems`). A document with
one of these problems is not checked any further (its other problems may be artefacts of it).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Iterator, Mapping

from ..errors import PolicyError, Problem
from .validation import json_path, path_order

MAX_NESTING = 64
MAX_DEPTH = 160
MAX_INT_DIGITS = 100
_COMPOSITIONS = frozenset(("all", "any", "not"))


def loads(text: str, source: str | None = None) -> Any:
    """``text`` parsed as strict JSON; :class:`PolicyError` (``source`` named) for any problem above.

    A syntax error stays a :class:`json.JSONDecodeError`: each caller words it for its input
    (a file's line and column, a command-line option's column).
    """
    problem = _text_nesting_problem(text)
    if problem is not None:
        raise PolicyError([problem], source)
    document = json.loads(text, object_pairs_hook=_object, parse_constant=_Refused,
                          parse_int=_integer, parse_float=_float)
    problems = document_problems(document)
    if problems:
        raise PolicyError(problems, source)
    return document


def document_problems(document: Any) -> list[Problem]:
    """Problems of a JSON-like Python value, in path order: nesting past the limits, non-finite
    floats, huge integers (and what :func:`loads` marked: duplicate keys, refused numbers)."""
    problems: list[Problem] = []
    stack: list[tuple[Any, tuple[str | int, ...], int, int]] = [(document, (), 0, 0)]
    while stack:
        value, path, depth, compositions = stack.pop()
        if isinstance(value, (Mapping, list, tuple)):
            depth += 1
            problem = _nesting_problem(path, depth, compositions)
            if problem is not None:
                problems.append(problem)
                continue  # nothing inside it is looked at
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, child in items:
                inner = compositions + (1 if key in _COMPOSITIONS and path[:1] == ("image",) else 0)
                stack.append((child, path + (key,), depth, inner))
            if isinstance(value, _Object):
                problems.extend(Problem(json_path(path + (key,)), f"duplicate key {key!r} ({count} times in one object; "
                                        "JSON would keep only the last): keep one")
                                for key, count in value.duplicates.items())
        else:
            message = _number_problem(value)
            if message is not None:
                problems.append(Problem(json_path(path), message))
    return sorted(problems, key=path_order)


def _nesting_problem(path: tuple[str | int, ...], depth: int, compositions: int) -> Problem | None:
    """The problem of an array or object at ``path``, ``depth`` containers deep (itself included),
    inside ``compositions`` all / any / not levels; the same rule for text and for values."""
    if compositions > MAX_NESTING:
        return Problem(json_path(path), f"all / any / not nested more than {MAX_NESTING} levels deep (the limit of a "
                       "policy): flatten it (not(not(x)) is x; all inside all is one all)")
    if depth > MAX_DEPTH:
        return Problem(json_path(path), f"arrays and objects nested more than {MAX_DEPTH} levels deep (the limit of a policy)")
    return None


def _number_problem(value: Any) -> str | None:
    if isinstance(value, _Refused):
        return f"{value.text} is not a number JSON allows: give a finite number"
    if isinstance(value, _LongInteger):
        return f"an integer of {value.digits} digits: at most {MAX_INT_DIGITS} digits are read"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a number JSON allows: give a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_INT_DIGITS:
        return f"an integer of {_digits(abs(value))} digits: at most {MAX_INT_DIGITS} digits are read"
    return None


def _digits(value: int) -> int:
    """Decimal digits of a positive int, without ``str()`` (refused past 4300 digits)."""
    estimate = max(1, int(value.bit_length() * math.log10(2)))
    while 10**estimate <= value:
        estimate += 1
    while estimate > 1 and 10 ** (estimate - 1) > value:
        estimate -= 1
    return estimate


# ---------------------------------------------------------------------- json.loads hooks
class _Object(dict):
    """An object that had duplicate keys (marked for :func:`document_problems`, never returned)."""

    duplicates: dict[str, int]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    marked = _Object(value)
    marked.duplicates = {key: count for key, count in Counter(key for key, _ in pairs).items() if count > 1}
    return marked


class _Refused:
    """``NaN``, ``Infinity``, ``-Infinity`` or a float literal that overflows, as written."""

    def __init__(self, text: str) -> None:
        self.text = text


class _LongInteger:
    def __init__(self, digits: int) -> None:
        self.digits = digits


def _integer(text: str) -> int | _LongInteger:
    digits = len(text.lstrip("-"))
    return _LongInteger(digits) if digits > MAX_INT_DIGITS else int(text)


def _float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _Refused(text)


# ---------------------------------------------------------------------- depth in the text
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]')


def _text_nesting_problem(text: str) -> Problem | None:
    """The first array or object of ``text`` nested past the limits, found without parsing (so
    without recursion); the path is rebuilt from the keys and commas on the way in. Malformed
    text is scanned as far as it goes: :func:`json.loads` then names the syntax error."""
    frames: list[list[Any]] = []  # [kind, current key or index, compositions]
    last_string: str | None = None
    for token, is_string in _tokens(text):
        if is_string:
            last_string = token
            continue
        if token in ("{", "["):
            parent = frames[-1] if frames else None
            compositions = 0
            if parent is not None:
                compositions = parent[2] + (1 if parent[1] in _COMPOSITIONS and frames[0][1] == "image" else 0)
            path = tuple(frame[1] for frame in frames)
            problem = _nesting_problem(path, len(frames) + 1, compositions)
            if problem is not None:
                return problem
            frames.append([token, None if token == "{" else 0, compositions])
        elif token in ("}", "]"):
            if frames:
                frames.pop()
        elif token == ",":
            if frames and frames[-1][0] == "[" and isinstance(frames[-1][1], int):
                frames[-1][1] += 1
            elif frames:
                frames[-1][1] = None
        elif token == ":" and frames and frames[-1][0] == "{" and last_string is not None:
            frames[-1][1] = last_string
        last_string = None
    return None


def _tokens(text: str) -> Iterator[tuple[str, bool]]:
    """(token, is a string): strings with their escapes resolved (they may be keys), and ``{}[],:``."""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] != '"':
            yield token, False
            continue
        try:
            yield json.loads(token), True
        except ValueError:
            yield token[1:-1], True
