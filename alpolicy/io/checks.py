"""Checks of the values a user hands alpolicy (flags, options, environment): one rule each.

Every check is used where its value enters: as an argparse ``type=`` on the command line
(through :func:`argument`, so the message names the flag: ``argument --timeout: ...``), by the
option dataclasses and by the backends and destinations on what they are given (the message
names the option or the environment variable). Both paths refuse the same mistakes with the
same words, in one line (:class:`~alpolicy.errors.UsageError`), before any image is touched.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import urllib.parse
from typing import Any, Callable, TypeVar

from ..errors import UsageError

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


#: The flag that lets a secret go to a non-loopback ``http://`` service (``allow_insecure_http`` in Python).
INSECURE_HTTP_FLAG = "--allow-insecure-http"


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1`` (also as ``::ffff:127.x.y.z``): traffic that never
    leaves the machine. ``*.localhost`` is not: the system resolver (glibc without
    nss-myhostname) may ask DNS or ``/etc/hosts`` for it, which can answer any address."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def cleartext_secret(url: str, name: str, *, secret: str = "credentials", allow_insecure_http: bool = False) -> None:
    """Refuse ``url`` when it would carry ``secret`` unencrypted off this machine: ``http://`` to a
    host that is not loopback. Decided from the URL alone, before any connection, so a typo'd
    ``http://`` never sends the key even once; ``allow_insecure_http`` is for those who mean it
    (a trusted network, a TLS-terminating sidecar)."""
    parts = urllib.parse.urlsplit(url)
    if allow_insecure_http or parts.scheme != "http" or is_loopback_host(parts.hostname or ""):
        return
    flag = INSECURE_HTTP_FLAG if name.startswith("--") else f"{INSECURE_HTTP_FLAG} (allow_insecure_http=True)"
    raise UsageError(f"{name} {url} would send your {secret} in clear text: use https://, "
                     f"or pass {flag} if you really mean it")


def configured_url(option: str | None, option_name: str, env: str, default: str, *, secret: str | None = "credentials",
                   allow_insecure_http: bool = False) -> str:
    """A service URL from its option, else its environment variable, else the default; either
    given one is checked, and a mistake names where it came from. Every service alpolicy
    configures receives a secret (``secret`` names it in the message; ``None`` for one that does
    not), so a plain ``http://`` URL to another machine is refused (:func:`cleartext_secret`)."""
    if option:
        url, name = service_url(option, option_name), option_name
    elif os.environ.get(env):
        url, name = service_url(os.environ[env], env), env
    else:
        url, name = default, option_name
    if secret is not None:
        cleartext_secret(url, name, secret=secret, allow_insecure_http=allow_insecure_http)
    return url


def service_options(options: Any) -> None:
    """The settings every backend and destination shares (:class:`alpolicy.io.http.ServiceOptions`)."""
    number(options.timeout, "timeout", above=0)
    whole_number(options.attempts, "attempts", minimum=1)
    number(options.retry_backoff, "retry_backoff", minimum=0)
    insecure = getattr(options, "allow_insecure_http", False)
    if not isinstance(insecure, bool):
        raise UsageError(f"allow_insecure_http should be True or False, got {insecure!r}")


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
