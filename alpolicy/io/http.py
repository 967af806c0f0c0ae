"""HTTP with the retries a night-long run needs, and nothing secret in any error.

Retries with exponential backoff and full jitter on connection errors, timeouts, 429 (honouring
``Retry-After``) and 5xx; a per-request timeout; 401/403 raise :class:`AuthError` at once (no
retry can fix a refused key). Every message is passed through :func:`alpolicy.io.secrets.redact`,
because requests' exceptions quote the URL, and Roboflow's URLs carry the API key.

One of each mechanism, for every backend and destination: :func:`retry` is the retry loop
(:meth:`HttpClient.request` is :meth:`HttpClient.attempt` under it; a request that must not be
repeated blindly runs its own check between attempts under it too), :func:`server_message` reads
every error body.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from ..errors import AuthError, ServiceError, UsageError
from .jsonsafe import JsonError, loads
from .secrets import redact

log = logging.getLogger("alpolicy.http")

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "alpolicy/0.1"


@dataclass
class RetryPolicy:
    attempts: int = 5
    backoff: float = 0.5  # first wait, doubled each attempt
    max_backoff: float = 30.0
    max_retry_after: float = 120.0


@dataclass
class ServiceOptions:
    """What every backend and destination that talks to a service may be given."""

    #: Never in a ``repr`` (options get printed and logged while debugging).
    api_key: str | None = field(default=None, repr=False)
    #: Seconds to wait for one response.
    timeout: float = 60.0
    #: Attempts per request on connection errors, 429 and 5xx.
    attempts: int = 5
    #: First backoff in seconds (doubled per attempt, full jitter, capped at 30 s).
    retry_backoff: float = 0.5
    #: Backend- or destination-specific settings.
    extra: dict[str, Any] = field(default_factory=dict)
    #: Let the secret go to a plain ``http://`` URL of another machine (``--allow-insecure-http``);
    #: without it such a URL is refused before any connection (loopback ``http://`` is fine).
    allow_insecure_http: bool = False

    def retry_policy(self) -> "RetryPolicy":
        return RetryPolicy(attempts=self.attempts, backoff=self.retry_backoff)


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests_: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.requests += requests_
            self.retries += retries


class AttemptFailed(ServiceError):
    """One attempt of a request failed in a way another attempt may mend: no answer, a timeout,
    429 or 5xx. ``wait`` is what the server asked for (``Retry-After``), if anything."""

    def __init__(self, what: str, problem: str, wait: float | None = None) -> None:
        super().__init__(f"{what}: {problem}")
        self.problem = problem
        self.wait = wait


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads retries of many threads."""
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
    return random.uniform(0, ceiling)


def retry(
    call: Callable[[], T], *, what: str, policy: RetryPolicy, stats: HttpStats | None = None,
    exhausted: Callable[[str], Exception] = ServiceError,
) -> T:
    """``call()`` until it returns, again after each :class:`AttemptFailed`: the one retry loop.

    Waits what the failure's ``Retry-After`` asked for, else :func:`backoff`; after
    ``policy.attempts`` attempts raises ``exhausted("<what> failed after N attempts: <problem>")``
    (a :class:`ServiceError` unless the caller wants its own kind). Any other exception ends it at
    once. A call that must not be repeated blindly checks, before it raises, whether its failed
    attempt took effect (the Label Studio destination's task creation).
    """
    attempts = max(1, policy.attempts)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except AttemptFailed as failure:
            if attempt == attempts:
                raise exhausted(f"{what} failed after {attempts} attempts: {failure.problem}") from None
            wait = failure.wait or backoff(policy, attempt)
            if stats is not None:
                stats.add(retries=1)
            log.info("%s: %s; retrying in %.1f s (attempt %d of %d)", what, failure.problem, wait, attempt + 1, attempts)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def follows_redirect(old: str, new: str) -> bool:
    """Whether a redirect from ``old`` to ``new`` is followed: to the same scheme, host and port,
    or from ``http`` up to ``https`` on the same host. Every request alpolicy makes carries a
    secret -- an ``api_key`` in the query string, which a server's ``Location`` usually repeats,
    or an ``Authorization`` header -- and a redirect anywhere else would hand it to another
    machine or down to clear text."""
    before, after = urlsplit(old), urlsplit(new)
    if (before.hostname or "").lower() != (after.hostname or "").lower():
        return False
    if before.scheme == after.scheme:
        return _port(before) == _port(after)
    return before.scheme == "http" and after.scheme == "https"


def _port(parts: Any) -> int | None:
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def origin(url: str) -> str:
    """``https://host:port`` of ``url``: what a message may say about it (no path, no query, no
    user info: they may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


class _Redirected(Exception):
    """A redirect :func:`follows_redirect` refuses (raised before the redirected request is made)."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"{origin(old)} -> {origin(new)}")
        self.old, self.new = old, new


class _Session(requests.Session):
    """A session that follows only the redirects :func:`follows_redirect` allows."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        # requests calls this for every redirect, with the next request ready and not yet sent.
        if not follows_redirect(response.url, prepared_request.url or ""):
            raise _Redirected(response.url, prepared_request.url or "")
        super().rebuild_auth(prepared_request, response)


class HttpClient:
    """A pooled ``requests.Session`` with retries; one per backend or destination.

    Redirects are followed only within the service (:func:`follows_redirect`); one elsewhere is
    a :class:`UsageError` (the configured URL is not the service's), before anything is sent there.
    """

    def __init__(self, *, timeout: float = 60.0, retry: RetryPolicy | None = None, pool_size: int = 32, service: str = "server") -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.service = service
        self.stats = HttpStats()
        self.session = _Session()
        self.session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # requests reads the proxy, CA-bundle and netrc settings from the environment on *every*
        # request (a scan of os.environ: a third of the client's CPU at 300 requests/s). Read
        # them once per host instead, with requests' own rules, and keep TLS verification on
        # (a custom CA bundle comes from REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, never by disabling it).
        self.session.trust_env = False
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies: dict[str, dict[str, str]] = {}

    def request(self, method: str, url: str, *, what: str, ok_statuses: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        """Send with retries. Returns any response that is not retryable (caller checks 4xx).

        ``what`` names the operation for messages (``"inference"``, ``"upload"``).
        """
        return self.with_retries(
            lambda: self.attempt(method, url, what=what, ok_statuses=ok_statuses, **kwargs), what=what
        )

    def attempt(self, method: str, url: str, *, what: str, ok_statuses: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        """Send once: the response, :class:`AuthError` for a refused key, or :class:`AttemptFailed`
        (no answer, a timeout, 429 or 5xx) carrying the wait a ``Retry-After`` asked for.

        For a request that must not be repeated blindly (creating something): the caller finds
        out whether a failed attempt took effect before it tries again with :meth:`with_retries`.
        """
        kwargs.setdefault("timeout", (min(10.0, self.timeout), self.timeout))
        kwargs.setdefault("proxies", self._proxies_for(url))
        self.stats.add(requests_=1)
        try:
            response = self.session.request(method, url, **kwargs)
        except _Redirected as redirect:
            raise UsageError(
                f"the {self.service} at {origin(redirect.old)} redirected {what} to {origin(redirect.new)}: "
                "not followed, it would take the credentials there; if that is the service, use its URL instead"
            ) from None
        except requests.Timeout:
            raise AttemptFailed(what, f"no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as error:
            raise AttemptFailed(what, f"connection failed ({_short(error)})") from None
        except requests.RequestException as error:
            raise AttemptFailed(what, f"request failed ({_short(error)})") from None
        status = response.status_code
        if status in (401, 403) and status not in ok_statuses:
            raise AuthError(
                f"the {self.service} refused the credentials during {what} (HTTP {status}): "
                f"{server_message(response)}; check the API key"
            )
        if status not in RETRY_STATUSES or status in ok_statuses:
            return response
        failure = AttemptFailed(what, f"HTTP {status}: {server_message(response)}", self._retry_after(response))
        response.close()
        raise failure

    def with_retries(self, call: Callable[[], T], *, what: str, exhausted: Callable[[str], Exception] = ServiceError) -> T:
        """:func:`retry` with this client's policy, counted in its stats."""
        return retry(call, what=what, policy=self.retry, stats=self.stats, exhausted=exhausted)

    def _proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for this URL's host (``HTTPS_PROXY``, ``NO_PROXY``...), cached."""
        host = urlsplit(url).netloc
        proxies = self._proxies.get(host)
        if proxies is None:
            proxies = self._proxies[host] = requests.utils.get_environ_proxies(url)
        return proxies

    def _retry_after(self, response: requests.Response) -> float | None:
        return retry_after_seconds(response.headers.get("Retry-After"), self.retry.max_retry_after)

    def close(self) -> None:
        self.session.close()


_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def retry_after_seconds(value: str | None, cap: float, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for, at most ``cap``; ``None`` when absent or malformed.

    RFC 9110 allows a number of seconds (whole; fractions accepted too) or an HTTP date. Anything
    else -- ``soon``, a negative number, ``nan``, ``inf`` -- is a server's mistake, and must not end
    a night-long run: the caller backs off as if the header were absent. A date without a zone
    (``-0000``) is UTC, as RFC 5322 says; a date in the past asks for no wait.
    """
    text = (value or "").strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)  # 400 digits are inf: the cap
    else:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):  # garbage raises since Python 3.10
            return None
        if parsed is None:  # what older Pythons answer for garbage
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        seconds = parsed.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(seconds, cap))


def _short(error: Exception) -> str:
    """The innermost reason of a requests exception, redacted (its text quotes the URL)."""
    text = redact(error)
    for marker in ("Caused by ", "Failed to establish a new connection: ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return clip(text.strip("()'\" "), 200)


#: The longest server message quoted in an error (a summary line, the journal, the report).
MESSAGE_LIMIT = 300


def clip(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line of at most ``limit`` characters, secrets masked *before* the cut: a
    secret crossing the cut would otherwise be cut out of recognition and keep all but its tail."""
    line = " ".join(redact(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def server_message(response: requests.Response) -> str:
    """A server's error message on one line, secrets masked (``no message`` when the body has none).

    The one reader of error bodies, for every service alpolicy talks to: Roboflow's
    ``{"error": {"message": ...}}`` and ``{"message": ...}``, Label Studio's ``{"detail": ...,
    "validation_errors": {field: [...]}}``. A text body is quoted, an HTML page only named;
    at most :data:`MESSAGE_LIMIT` characters, redacted before they are cut (:func:`clip`).
    """
    try:
        raw = read_body(response, ERROR_BODY_LIMIT, what="error message")
    except BodyTooLarge:
        return f"(an answer of more than {ERROR_BODY_LIMIT // 1024} KiB)"
    except AttemptFailed:
        return "no message (the answer was cut off)"
    try:
        body = loads(raw, max_bytes=None)  # strict: a body nested 100,000 deep is one line too
    except JsonError:
        text = _decode(raw, response.encoding)
        if "<html" in text[:500].lower():
            return "(an HTML page)"
        return clip(text) or "no message"
    return clip(" ".join(_message_parts(body))) or "no message"


#: The most of an error body read for its message.
ERROR_BODY_LIMIT = 1024 * 1024


class BodyTooLarge(ValueError):
    """A response body is larger than the caller's bound (not retried: the same request gets the
    same answer)."""


def read_body(response: requests.Response, max_bytes: int | None, *, what: str) -> bytes:
    """The response's body, reading at most ``max_bytes`` of it (decompressed): the one bounded
    reader, for responses requested with ``stream=True`` (a body already read is measured).

    A ``Content-Length`` above the bound is refused before anything is read. Raises
    :class:`BodyTooLarge`, or :class:`AttemptFailed` when the connection fails mid-body (a
    cut-off answer is worth another attempt, like one that never came).
    """
    if max_bytes is None:
        chunks_limit = None
    else:
        chunks_limit = max_bytes
        declared = (response.headers.get("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > max_bytes and "Content-Encoding" not in response.headers:
            response.close()
            raise BodyTooLarge(f"the answer is {_size(int(declared))}, above the limit of {_size(max_bytes)}")
    read = getattr(response, "_content", False)  # requests' cache of a body already read
    if isinstance(read, bytes):
        if chunks_limit is not None and len(read) > chunks_limit:
            raise BodyTooLarge(f"the answer is {_size(len(read))}, above the limit of {_size(chunks_limit)}")
        return read
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(64 * 1024):
            total += len(chunk)
            if chunks_limit is not None and total > chunks_limit:
                response.close()
                raise BodyTooLarge(f"the answer is larger than the limit of {_size(chunks_limit)}")
            chunks.append(chunk)
    except requests.RequestException as error:
        response.close()
        raise AttemptFailed(what, f"the answer was cut off ({_short(error)})") from None
    return b"".join(chunks)


def _size(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    return f"{size / 1e6:.1f} MB"


def _decode(raw: bytes, encoding: str | None) -> str:
    try:
        return raw.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def _message_parts(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return [] if body in (None, "") else [str(body)]
    parts: list[str] = []
    for key in ("detail", "message", "error"):
        value = body.get(key)
        if isinstance(value, dict):  # Roboflow: {"error": {"message": ..., "type": ...}}
            value = value.get("message") or value
        if value and value != "Validation error":
            parts.append(str(value))
    errors = body.get("validation_errors")
    if isinstance(errors, dict):
        for name, problems in errors.items():
            items = problems if isinstance(problems, list) else [problems]
            prefix = "" if name == "non_field_errors" else f"{name}: "
            parts.append(prefix + "; ".join(str(p) for p in items))
    elif errors:
        parts.append(str(errors))
    return parts
