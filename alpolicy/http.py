"""HTTP with the retries a night-long run needs, and nothing secret in any error.

Retries with exponential backoff and full jitter on connection errors, timeouts, 429 (honouring
``Retry-After``) and 5xx; a per-request timeout; 401/403 raise :class:`AuthError` at once (no
retry can fix a refused key). Every message is passed through :func:`alpolicy.secrets.redact`,
because requests' exceptions quote the URL, and Roboflow's URLs carry the API key.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import AuthError, ServiceError
from .secrets import redact

log = logging.getLogger("alpolicy.http")

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


class HttpClient:
    """A pooled ``requests.Session`` with retries; one per backend or destination."""

    def __init__(self, *, timeout: float = 60.0, retry: RetryPolicy | None = None, pool_size: int = 32, service: str = "server") -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.service = service
        self.stats = HttpStats()
        self.session = requests.Session()
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
        kwargs.setdefault("timeout", (min(10.0, self.timeout), self.timeout))
        kwargs.setdefault("proxies", self._proxies_for(url))
        attempts = max(1, self.retry.attempts)
        for attempt in range(1, attempts + 1):
            self.stats.add(requests_=1)
            try:
                response = self.session.request(method, url, **kwargs)
            except requests.Timeout:
                problem, wait = f"no answer within {self.timeout:g} s", self._backoff(attempt)
            except requests.ConnectionError as error:
                problem, wait = f"connection failed ({_short(error)})", self._backoff(attempt)
            except requests.RequestException as error:
                problem, wait = f"request failed ({_short(error)})", self._backoff(attempt)
            else:
                status = response.status_code
                if status in (401, 403) and status not in ok_statuses:
                    raise AuthError(
                        f"the {self.service} refused the credentials during {what} (HTTP {status}): "
                        f"{_server_message(response)}; check the API key"
                    )
                if status not in RETRY_STATUSES or status in ok_statuses:
                    return response
                problem = f"HTTP {status} {_server_message(response)}".rstrip()
                wait = self._retry_after(response) or self._backoff(attempt)
                response.close()
            if attempt == attempts:
                raise ServiceError(f"{what} failed after {attempts} attempts: {problem}")
            self.stats.add(retries=1)
            log.info("%s: %s; retrying in %.1f s (attempt %d of %d)", what, problem, wait, attempt + 1, attempts)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for this URL's host (``HTTPS_PROXY``, ``NO_PROXY``...), cached."""
        host = urlsplit(url).netloc
        proxies = self._proxies.get(host)
        if proxies is None:
            proxies = self._proxies[host] = requests.utils.get_environ_proxies(url)
        return proxies

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): spreads retries of many threads."""
        ceiling = min(self.retry.max_backoff, self.retry.backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def _retry_after(self, response: requests.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is None:
                return None
            seconds = parsed.timestamp() - time.time()
        return max(0.0, min(seconds, self.retry.max_retry_after))

    def close(self) -> None:
        self.session.close()


def _short(error: Exception) -> str:
    """The innermost reason of a requests exception, redacted (its text quotes the URL)."""
    text = redact(error)
    for marker in ("Caused by ", "Failed to establish a new connection: ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ")[:200]


def _server_message(response: requests.Response) -> str:
    """A server's error message from its JSON body (Roboflow: ``message`` or ``error.message``)."""
    try:
        body = response.json()
    except ValueError:
        return redact(response.text[:200].strip())
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return redact(error.get("message") or error)
        return redact(body.get("message") or error or "")
    return ""


server_message = _server_message
