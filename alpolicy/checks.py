"""Checks of the values a user hands alpolicy (flags, options, environment): one rule each.

Every check is used where its value enters: as an argparse ``type=`` on the command line
(through :func:`argument`, so the message names the flag: ``argument --timeout: ...``), by the
option dataclasses and by the backends and destinations on what they are given (the message
names the option or the environment variable). Both paths refuse the same mistakes with the
same words, in one line (:class:`~alpolicy.errors.UsageError`), before any image is touched.
"""

from __future__ import annotations

import argparse
import math
import os
import urllib.parse
from typing import Any, Callable, TypeVar

from .errors import UsageError

T = TypeVar("T")


class _Invalid(ValueError):
    """What is wrong with a value, without its name (the caller knows how the user named it)."""


def _range_text(kind: str, minimum: float | None, maximum: float | None, above: float | None = None) -> str:
    if above is not None:
        return f"should be {kind} above {above:g}"
    if minimum is not None and maximum is not None:
        return f"should be {kind} from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"should be {kind} of at least {minimum:g}"
    return f"should be {kind} of at most {maximum:g}"


def _whole(value: Any, minimum: int | None = 1, maximum: int | None = None) -> int:
    text = _range_text("a whole number", minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid(f"{text}, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise _Invalid(f"{text}, got {value!r}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _Invalid(f"{text}, got {value!r}")
    return number


def _number(value: Any, minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> float:
    text = _range_text("a number", minimum, maximum, above)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Invalid(f"{text}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _Invalid(f"{text}, got {value!r}") from None
    if (not math.isfinite(number) or (above is not None and not number > above)
            or (minimum is not None and number < minimum) or (maximum is not None and number > maximum)):
        raise _Invalid(f"{text}, got {value!r}")
    return number


def _url(value: Any) -> str:
    """An http(s) base URL with a host, without trailing slashes. ``localhost:9001`` parses as
    scheme ``localhost``: refused here rather than retried as an unreachable service."""
    url = value.strip().rstrip("/") if isinstance(value, str) else ""
    try:
        parts = urllib.parse.urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a malformed port or IPv6 literal
        valid = False
    if not valid:
        raise _Invalid(f"{value!r} should be an http:// or https:// URL with a host, e.g. http://localhost:9001")
    return url


def _named(check: Callable[..., T], value: Any, name: str, **bounds: Any) -> T:
    try:
        return check(value, **bounds)
    except _Invalid as error:
        raise UsageError(f"{name} {error}") from None


def whole_number(value: Any, name: str, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an int within the bounds, else a UsageError naming ``name``."""
    return _named(_whole, value, name, minimum=minimum, maximum=maximum)


def number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None) -> float:
    """``value`` as a finite float within the bounds, else a UsageError naming ``name``."""
    return _named(_number, value, name, minimum=minimum, maximum=maximum, above=above)


def service_url(value: Any, name: str) -> str:
    """``value`` as a service base URL (http/https, a host, no trailing slash)."""
    return _named(_url, value, name)


def configured_url(option: str | None, option_name: str, env: str, default: str) -> str:
    """A service URL from its option, else its environment variable, else the default; either
    given one is checked, and a mistake names where it came from."""
    if option:
        return service_url(option, option_name)
    from_env = os.environ.get(env)
    if from_env:
        return service_url(from_env, env)
    return default


def service_options(options: Any) -> None:
    """The settings every backend and destination shares (:class:`alpolicy.http.ServiceOptions`)."""
    number(options.timeout, "timeout", above=0)
    whole_number(options.attempts, "attempts", minimum=1)
    number(options.retry_backoff, "retry_backoff", minimum=0)


_CHECKS: dict[Callable[..., Any], Callable[..., Any]] = {whole_number: _whole, number: _number, service_url: _url}


def argument(check: Callable[..., T], **bounds: Any) -> Callable[[str], T]:
    """``check`` as an argparse ``type=``: argparse then reports ``argument --flag: <problem>``."""
    inner = _CHECKS[check]

    def convert(text: str) -> T:
        try:
            return inner(text, **bounds)
        except _Invalid as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = check.__name__  # argparse names the type in some messages
    return convert
