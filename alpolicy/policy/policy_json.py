"""The reader of policy JSON (policy files, ``--conditionals``, Inference configurations): the
strict reader of :mod:`alpolicy.jsonsafe` with a policy's limits, every problem located.

Why: Python's ``json`` accepts what JSON does not (``NaN``, ``Infinity``; ``1e999`` becomes
``inf``), keeps only the last of duplicate keys (``{"rule": "confidence", "rule": "box_area"}``
silently became a ``box_area`` rule), fails on integers over 4300 digits with a bare
``ValueError``, and, like jsonschema and the compiler, recurses once per nesting level, so a
``{"not": ...}`` 400 deep ended in a ``RecursionError``. Each of these is a located
:class:`~alpolicy.errors.Problem` instead, with the path format of every other policy problem.
The refusals themselves (and their words) are :mod:`alpolicy.jsonsafe`'s, the one
implementation for everything alpolicy reads: this module adds the policy's limits and its
nesting rule, and turns each located problem into a :class:`~alpolicy.errors.Problem`.

The limits, documented in the README's policy reference:

* :data:`MAX_NESTING`: all / any / not nested at most 64 levels deep under ``$.image``;
* :data:`MAX_DEPTH`: arrays and objects nested at most 160 levels in all (64 levels of
  ``all`` take 130);
* :data:`MAX_INT_DIGITS`: integers of at most 100 digits; numbers must be finite.

Depth is checked without recursion: on the text before it is parsed
(:func:`alpolicy.jsonsafe.scan_nesting`), and on Python values before jsonschema
(:func:`document_problems`). A document with one of these problems is not checked any further
(its other problems may be artefacts of it).
"""

from __future__ import annotations

from typing import Any

from ..errors import PolicyError, Problem
from ..io import jsonsafe
from .validation import json_path, path_order

MAX_NESTING = 64
MAX_DEPTH = 160
MAX_INT_DIGITS = 100
_COMPOSITIONS = frozenset(("all", "any", "not"))


def loads(text: str, source: str | None = None) -> Any:
    """``text`` parsed as strict JSON; :class:`PolicyError` (``source`` named) for any problem above.

    A syntax error stays a :class:`json.JSONDecodeError` (a
    :class:`~alpolicy.jsonsafe.JsonSyntaxError`): each caller words it for its input (a file's
    line and column, a command-line option's column).
    """
    deep = jsonsafe.scan_nesting(text, _nesting_problem)
    if deep is not None:
        raise PolicyError([_problem(deep)], source)
    try:
        document = jsonsafe.loads(text, max_bytes=None, unique_keys=True, max_int_digits=MAX_INT_DIGITS, locate=True)
    except jsonsafe.JsonSyntaxError:
        raise
    except jsonsafe.JsonError as error:  # nothing the text scan let through should get here
        raise PolicyError([Problem("$", str(error))], source) from None
    problems = document_problems(document)
    if problems:
        raise PolicyError(problems, source)
    return document


def document_problems(document: Any) -> list[Problem]:
    """Problems of a JSON-like Python value, in path order: nesting past the limits, non-finite
    floats, huge integers (and what :func:`loads` marked: duplicate keys, refused numbers)."""
    found = jsonsafe.problems(document, nesting=_nesting_problem, max_int_digits=MAX_INT_DIGITS)
    return sorted((_problem(located) for located in found), key=path_order)


def _nesting_problem(path: jsonsafe.Path, depth: int) -> str | None:
    """Why an array or object at ``path``, ``depth`` containers deep (itself included), is
    refused: too many all / any / not around it under ``$.image``, or too deep in all."""
    if path[:1] == ("image",) and sum(1 for key in path if key in _COMPOSITIONS) > MAX_NESTING:
        return (f"all / any / not nested more than {MAX_NESTING} levels deep (the limit of a "
                "policy): flatten it (not(not(x)) is x; all inside all is one all)")
    if depth > MAX_DEPTH:
        return f"arrays and objects nested more than {MAX_DEPTH} levels deep (the limit of a policy)"
    return None


def _problem(located: jsonsafe.Located) -> Problem:
    return Problem(json_path(located.path), located.message)
