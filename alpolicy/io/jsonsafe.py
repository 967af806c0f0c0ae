"""THE strict JSON reader for everything alpolicy reads from outside: model responses, stored
prediction files, COCO files, journal rows, destination answers and policy files.

Python's :mod:`json` is lenient where hostile or broken input hurts: it accepts ``NaN`` and
``Infinity`` (which then poison every comparison and are written back as invalid JSON), turns
``1e400`` into ``inf`` silently, keeps only the last of duplicate keys, fails on integers over
4300 digits with a bare ``ValueError``, raises :class:`RecursionError` on 100,000 nested
brackets, and reads a response of any size. Here, one implementation of each refusal:

* :func:`loads` parses with a size bound, rejects the ``NaN``/``Infinity`` tokens and any number
  that overflows to infinity, optionally integers past ``max_int_digits`` and duplicate keys
  (``unique_keys``), and turns every parser failure (syntax, bad UTF-8, a 5000-digit integer,
  nesting deeper than the interpreter's recursion limit) into one :class:`JsonError` line.
  Nothing non-finite ever comes out of it. With ``locate=True`` the same refusals are not raised
  but marked in the document (:class:`Refused`, :class:`LongInteger`, an object with duplicate
  keys), for :func:`problems` to report each with its place.
* :func:`read_file` reads a file with the same size bound (never more than ``max_bytes + 1`` bytes).
* :func:`check_tree` checks a parsed value (or one built in code) is JSON-safe: only JSON types,
  string keys, finite numbers, 64-bit integers, nesting within ``max_depth``; the first problem
  names its place (``extra.debug[2]: NaN is not a finite number``).
* :func:`problems` lists *every* problem of a JSON-like value with its place (nesting past a
  limit, non-finite numbers, huge integers, the marks of ``locate``), without recursion: what a
  reader that reports all mistakes at once needs (the policy reader, :mod:`alpolicy.policy_json`).
* :func:`scan_nesting` finds the first array or object nested past a limit in a text, before it
  is parsed, without recursion, and names its place.

Why nesting is bounded after parsing for model responses, and by a scan before for policies:
the parser's own recursion guard turns a deep document into :class:`RecursionError` at no cost
for normal input, which :func:`loads` reports as one line, while a byte scan for depth costs as
much as the parse itself on every response; a policy is small, and its reader names the place
of every problem, so it scans. What is kept is then bounded by :func:`check_tree` (the journal
and the destinations write it back with recursive encoders, which must not meet a document
nested 900 deep) or :func:`problems`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

#: Largest document read (a model response, a prediction file): 32 MiB.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
#: Deepest nesting kept (a Roboflow prediction with segmentation points is 5 deep).
DEFAULT_MAX_DEPTH = 64
#: Integers beyond 64 bits are not portable JSON (JavaScript, most databases cannot hold them).
_INT_LIMIT = 1 << 64

#: A place in a document: the keys and indexes from the root (``("detection", 0, "min")``).
Path = tuple["str | int", ...]
#: A reader's rule for arrays and objects: ``(place, depth counting itself) -> why it is refused``,
#: or ``None`` when it is fine. The same rule serves :func:`scan_nesting` and :func:`problems`.
NestingRule = Callable[[Path, int], "str | None"]


class JsonError(ValueError):
    """A document is not strict, bounded JSON; the message is one line saying why and where."""


class JsonSyntaxError(json.JSONDecodeError, JsonError):
    """Not JSON at all: a :class:`JsonError` that is also the parser's :class:`json.JSONDecodeError`
    (``msg``, ``lineno``, ``colno``), so that a reader can word the place for its input (a file's
    line and column, a command-line option's column)."""

    def __init__(self, error: json.JSONDecodeError) -> None:
        super().__init__(error.msg, error.doc, error.pos)
        self.args = (f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> Any:  # pragma: no cover - pickling (multiprocessing) keeps the message
        return (JsonError, self.args)


@dataclass(frozen=True)
class Located:
    """One problem of a document and its place (see :data:`Path`)."""

    path: Path
    message: str


# ---------------------------------------------------------------------- what is refused, worded once
def refused_number(text: str) -> str:
    """The problem of ``NaN``, ``Infinity`` or a number that overflows (``1e999``), as written."""
    return f"{text} is not a number JSON allows: give a finite number"


def long_integer(digits: int, limit: int) -> str:
    return f"an integer of {digits} digits: at most {limit} digits are read"


def duplicate_key(key: str, count: int) -> str:
    return f"duplicate key {key!r} ({count} times in one object; JSON would keep only the last): keep one"


class Refused:
    """What :func:`loads` with ``locate=True`` keeps of ``NaN``, ``Infinity``, ``-Infinity`` or a
    float literal that overflows: the text as written (never a float: nothing non-finite leaks)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Refused({self.text!r})"


class LongInteger:
    """What :func:`loads` with ``locate=True`` and ``max_int_digits`` keeps of a longer integer:
    its number of digits (converting it is what costs, and what Python refuses past 4300)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"LongInteger({self.digits})"


class _Duplicated(dict):
    """An object that had duplicate keys (``locate=True``): the last value of each, as
    :mod:`json` keeps it, and how often each repeated key appeared."""

    counts: dict[str, int]


class _Hooks:
    """The :func:`json.loads` hooks of one reading: each refusal raises a :class:`JsonError` at
    once, or (``locate``) is marked where it is, for :func:`problems` to name its place."""

    def __init__(self, *, locate: bool, max_int_digits: int | None) -> None:
        self.locate = locate
        self.max_int_digits = max_int_digits

    def constant(self, token: str) -> Any:
        if self.locate:
            return Refused(token)
        raise JsonError(refused_number(token))

    def float_(self, text: str) -> Any:
        value = float(text)
        if value - value == 0.0:  # inf - inf is nan; finite - itself is 0
            return value
        if self.locate:
            return Refused(text)
        raise JsonError(refused_number(_clip(text)))

    def integer(self, text: str) -> Any:
        digits = len(text) - (text[0] == "-")
        assert self.max_int_digits is not None
        if digits <= self.max_int_digits:
            return int(text)
        if self.locate:
            return LongInteger(digits)
        raise JsonError(long_integer(digits, self.max_int_digits))

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) == len(pairs):
            return document
        counts = {key: count for key, count in Counter(key for key, _ in pairs).items() if count > 1}
        if not self.locate:
            key, count = next(iter(counts.items()))
            raise JsonError(duplicate_key(key, count))
        marked = _Duplicated(document)
        marked.counts = counts
        return marked


def size_problem(size: int, max_bytes: int | None) -> str | None:
    """``"40.0 MB, above the limit of 32 MiB"`` when ``size`` exceeds ``max_bytes``, else ``None``."""
    if max_bytes is None or size <= max_bytes:
        return None
    return f"{_megabytes(size)}, above the limit of {_megabytes(max_bytes)}"


def loads(data: bytes | bytearray | str, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
          unique_keys: bool = False, finite: bool = True, max_int_digits: int | None = None,
          locate: bool = False) -> Any:
    """Parse one JSON document strictly (see the module docstring); :class:`JsonError` otherwise
    (:class:`JsonSyntaxError` for text that is not JSON at all).

    ``max_bytes`` bounds the input (``None``: no bound, for files the user gave us on purpose,
    such as a COCO dataset); ``unique_keys`` also refuses an object with a key twice (slower:
    for small documents such as policies, where a repeated key is a mistake that hides a value);
    ``max_int_digits`` refuses longer integer literals before converting them.
    ``finite=False`` lets ``NaN``, ``Infinity`` and overflowing numbers through as floats, for a
    reader that validates each part later and fails only that part (one image of a COCO file, one
    row of a journal written by an older version); everything else stays strict.
    ``locate=True`` raises none of the refusals above but marks them in the document
    (:class:`Refused`, :class:`LongInteger`, an object with duplicate keys), so that
    :func:`problems` can report every one with its place.
    """
    size = len(data) if not isinstance(data, str) else len(data.encode("utf-8", "surrogatepass"))
    problem = size_problem(size, max_bytes)
    if problem is not None:
        raise JsonError(f"the document is {problem}")
    hooks = _Hooks(locate=locate, max_int_digits=max_int_digits)
    options: dict[str, Any] = {}
    if finite:
        options.update(parse_constant=hooks.constant, parse_float=hooks.float_)
    if max_int_digits is not None:
        options["parse_int"] = hooks.integer
    if unique_keys:
        options["object_pairs_hook"] = hooks.pairs
    try:
        return json.loads(data, **options)
    except JsonError:
        raise
    except json.JSONDecodeError as error:
        raise JsonSyntaxError(error) from None
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


def response_json(response: Any, *, what: str, max_bytes: int | None = DEFAULT_MAX_BYTES) -> Any:
    """The JSON body of an HTTP answer (a :class:`requests.Response` already read), strictly:
    ``response.json()`` is :mod:`json`, which a hostile server answering 100,000 nested brackets
    turns into a :class:`RecursionError`. :class:`JsonError` (a ``ValueError``, as what
    ``response.json()`` raises) names ``what`` answered."""
    try:
        return loads(response.content, max_bytes=max_bytes)
    except JsonError as error:
        raise JsonError(f"{what}: {error}") from None


# ---------------------------------------------------------------------- values: the first problem
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


# ---------------------------------------------------------------------- values: every problem, located
def depth_rule(max_depth: int) -> NestingRule:
    """The plain nesting rule: at most ``max_depth`` arrays and objects inside one another."""

    def rule(path: Path, depth: int) -> str | None:
        return f"arrays and objects nested more than {max_depth} levels deep" if depth > max_depth else None

    return rule


def problems(value: Any, *, nesting: NestingRule, max_int_digits: int) -> list[Located]:
    """Every problem of a JSON-like value (a parsed document, or a dict built in code), each with
    its place, found without recursion (a dict 20,000 levels deep is fine to give):

    * an array or object (``Mapping``, ``list``, ``tuple``) that ``nesting`` refuses (nothing
      inside it is looked at: its other problems may be artefacts of it);
    * a float that is not finite; an integer of more than ``max_int_digits`` digits;
    * the marks of :func:`loads` with ``locate=True``: refused numbers, long integers, and each
      key an object had more than once.

    Values of other types are left to the caller's schema. The list is in no particular order.
    """
    found: list[Located] = []
    bound = 10 ** max_int_digits
    stack: list[tuple[Any, Path, int]] = [(value, (), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, (Mapping, list, tuple)):
            depth += 1
            message = nesting(path, depth)
            if message is not None:
                found.append(Located(path, message))
                continue
            entries = item.items() if isinstance(item, Mapping) else enumerate(item)
            stack.extend((child, path + (key,), depth) for key, child in entries)
            if isinstance(item, _Duplicated):
                found.extend(Located(path + (key,), duplicate_key(key, count)) for key, count in item.counts.items())
            continue
        message = _value_problem(item, bound, max_int_digits)
        if message is not None:
            found.append(Located(path, message))
    return found


def _value_problem(value: Any, bound: int, max_int_digits: int) -> str | None:
    if isinstance(value, Refused):
        return refused_number(value.text)
    if isinstance(value, LongInteger):
        return long_integer(value.digits, max_int_digits)
    if isinstance(value, float) and not math.isfinite(value):
        return refused_number(repr(value))
    if isinstance(value, int) and not isinstance(value, bool) and not -bound < value < bound:
        return long_integer(_digits(abs(value)), max_int_digits)
    return None


def _digits(value: int) -> int:
    """Decimal digits of a positive int, without ``str()`` (refused past 4300 digits)."""
    estimate = max(1, int(value.bit_length() * math.log10(2)))
    while 10**estimate <= value:
        estimate += 1
    while estimate > 1 and 10 ** (estimate - 1) > value:
        estimate -= 1
    return estimate


# ---------------------------------------------------------------------- text: nesting, before parsing
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]')


def scan_nesting(text: str, nesting: NestingRule) -> Located | None:
    """The first array or object of ``text`` that ``nesting`` refuses, found without parsing (so
    without recursion: :func:`json.loads`' C scanner recurses); the place is rebuilt from the
    keys and commas on the way in. Malformed text is scanned as far as it goes: :func:`loads`
    then names the syntax error."""
    frames: list[list[Any]] = []  # [kind, current key or index]
    last_string: str | None = None
    for token, is_string in _tokens(text):
        if is_string:
            last_string = token
            continue
        if token in ("{", "["):
            path = tuple(frame[1] for frame in frames)
            message = nesting(path, len(frames) + 1)
            if message is not None:
                return Located(path, message)
            frames.append([token, None if token == "{" else 0])
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
