"""The object-storage source: ``s3://bucket/prefix`` listed page by page, fetched on demand.

**Listing.** S3 is listed with ListObjectsV2 one page (1000 keys) at a time through s3fs's
``call_s3`` (s3fs's retries per request, botocore's credentials and endpoint resolution) and each
page is dropped before the next is asked for: nothing is cached (s3fs's ``ls``/``find`` keep every
listing in ``dircache``), so memory stays flat at a million objects. A run lists one "folder"
(``Delimiter='/'``) unless ``--recursive`` (the whole prefix, no delimiter).

**Order.** Natural order (``frame_2`` before ``frame_10``) needs the whole listing first, which a
streamed listing cannot have. The order is S3's own: UTF-8 binary order of the keys, stable and the
same on every machine. Other fsspec stores are listed one folder at a time (memory bounded by the
largest folder, not by the store), sorted the same way, folders descended depth first with their
names followed by ``/``, which gives exactly the binary order of the full keys.

**Identity.** An image's ``origin`` is its URL (``s3://bucket/frames/a.jpg``: what the journal,
the decisions log and the report show) and its ``version`` the ETag and size: a changed object is
a new image, an unchanged one is recognised by the next run without being downloaded.

**Fetching.** :class:`ObjectFetcher` (picklable: it holds no credential, only the protocol and
the spool's folder) downloads an object into a :class:`Spool`, atomically (a temporary file then
a rename), when the pipeline first needs its pixels; S3 downloads ask for the listed ETag
(``If-Match``), so the bytes are the version the key names. Transient failures (5xx, throttling,
timeouts, resets) raise :class:`~alpolicy.errors.ServiceError` (the run retries the image in a
deferred round); a missing or forbidden object fails its image in one line.

**Credentials** are nobody's business here: s3fs/botocore read ``AWS_*`` variables, profiles and
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``; gcsfs and adlfs theirs. The secret values found
(variables, the resolved AWS credentials) are registered with :mod:`alpolicy.io.secrets`, so no
log record (botocore's DEBUG ones included), message, journal or report can show them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator

from alpolicy import Source, SourceOptions
from alpolicy.errors import ServiceError, UsageError, exception_line
from alpolicy.io import secrets
from alpolicy.io.images import ImageFile

#: The spool's default bounds: comfortably more than a run's window of images in flight.
SPOOL_FILES = 512
SPOOL_BYTES = 1 << 30

#: Environment variables holding secrets of the usual credential chains (registered for redaction).
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET", "GOOGLE_OAUTH_ACCESS_TOKEN",
)
#: Error codes of S3 (and friends) that say "later", whatever the status.
TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable",
    "InternalError", "RequestLimitExceeded", "TooManyRequestsException", "ProvisionedThroughputExceededException",
})


@dataclass(frozen=True)
class Entry:
    """One listed object: its path in the store (``bucket/key``), size and version."""

    path: str
    size: int
    version: str


# ---------------------------------------------------------------------- file systems and secrets
_filesystems: dict[str, Any] = {}
_filesystems_lock = threading.Lock()


def filesystem(protocol: str) -> Any:
    """The process's fsspec file system for ``protocol`` (no listings cache), its secrets registered.

    Made once per process (a fetcher unpickled elsewhere makes its own from that machine's
    credentials); a missing optional package is a one-line usage error.
    """
    key = f"{protocol}|{_configuration()}"
    with _filesystems_lock:
        fs = _filesystems.get(key)
        if fs is None:
            register_secret_variables()
            import fsspec

            try:
                fs = fsspec.filesystem(protocol, use_listings_cache=False, skip_instance_cache=True, **_session(protocol))
            except ImportError as error:
                raise UsageError(f"{protocol}:// cannot be used: {error}") from None
            register_resolved_credentials(fs)
            _filesystems[key] = fs
        return fs


def _session(protocol: str) -> dict[str, Any]:
    """For S3, a botocore session whose responses keep their timestamps as text.

    Parsing ``LastModified`` (dateutil) is more than half of botocore's time on a ListObjectsV2
    page, and a listing never reads it: a million objects take half the CPU. The session is this
    file system's own (``skip_instance_cache``); the profile is fsspec's configured one, else
    botocore's usual (``AWS_PROFILE``)."""
    if protocol != "s3":
        return {}
    import fsspec.config
    from aiobotocore.session import AioSession

    session = AioSession(profile=fsspec.config.conf.get("s3", {}).get("profile"))
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return {"session": session}


#: The environment the credential chains and endpoints are resolved from.
_CONFIGURATION_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_", "AZURE_", "GCS", "BOTO")


def _configuration() -> str:
    """A digest of the variables a file system is configured from: a process whose endpoint or
    profile changes (a test, a long-lived service) gets a new file system, never a stale one."""
    items = sorted((k, v) for k, v in os.environ.items() if k.startswith(_CONFIGURATION_PREFIXES))
    return hashlib.sha256(repr(items).encode("utf-8", "surrogatepass")).hexdigest()


def register_secret_variables() -> None:
    """Register the secret values of the usual credential variables, and the key of a connection string."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value:
            secrets.register(value)
            for part in value.split(";"):  # AccountKey=...;SharedAccessSignature=...
                key, _, secret = part.partition("=")
                if key.strip().lower() in ("accountkey", "sharedaccesssignature") and secret:
                    secrets.register(secret)


def register_resolved_credentials(fs: Any) -> None:
    """The credentials botocore resolved (a profile's, a role's) or fsspec's config gave s3fs."""
    for attribute in ("secret", "token"):
        value = getattr(fs, attribute, None)
        if isinstance(value, str):
            secrets.register(value)
    if type(fs).__module__.split(".")[0] != "s3fs":
        return
    from fsspec.asyn import sync

    async def resolve() -> Any:
        await fs.set_session()
        credentials = await fs.session.get_credentials()
        return None if credentials is None else await credentials.get_frozen_credentials()

    try:
        frozen = sync(fs.loop, resolve)
    except Exception:  # no credentials (anonymous access) or none yet: nothing to register
        return
    if frozen is not None:
        secrets.register(frozen.secret_key)
        secrets.register(frozen.token)


# ---------------------------------------------------------------------- errors
def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(error: BaseException) -> tuple[int | None, str]:
    """The HTTP status and error code an exception (botocore's, gcsfs's, azure's) carries."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return (status if isinstance(status, int) else None), code
    for attribute in ("status_code", "status", "code"):
        value = getattr(error, attribute, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value, ""
    return None, ""


def is_transient(error: BaseException) -> bool:
    """5xx, 429, throttling, timeouts, connection failures: what may work later."""
    for link in _chain(error):
        status, code = _status(link)
        if code in TRANSIENT_CODES or (status is not None and (status >= 500 or status == 429)):
            return True
        if status is not None:
            return False
        if isinstance(link, (TimeoutError, ConnectionError)):
            return True
        if isinstance(link, OSError) and link.errno in (errno.EBUSY, getattr(errno, "EREMOTEIO", -1)):
            return True
        name = type(link).__name__
        if any(word in name for word in ("Timeout", "Connection", "HTTPClientError", "ClientPayloadError",
                                         "IncompleteRead", "ServiceRequestError", "ResponseParserError")):
            return True
    return False


def _plain_reason(error: BaseException) -> str | None:
    """A one-line reason for what will not work later (missing, forbidden, changed), else ``None``."""
    for link in _chain(error):
        status, code = _status(link)
        if status == 404 or code in ("NoSuchKey", "NotFound", "NoSuchBucket") or isinstance(link, FileNotFoundError):
            return "no such object (404)"
        if status in (401, 403) or code == "AccessDenied" or isinstance(link, PermissionError):
            return "access denied (403): check the credentials' rights on it"
        if status == 412 or code == "PreconditionFailed":
            return "the object changed since it was listed (its ETag is not the listed one): run again"
    return None


def fetch_error(error: BaseException, url: str) -> BaseException:
    """What a fetcher raises for a failed download: :class:`ServiceError` (later), an ``OSError``
    with a plain reason (missing, forbidden, changed: the image fails in one line), or the error."""
    reason = _plain_reason(error)
    if reason is not None:
        return OSError(errno.EIO, reason)
    if is_transient(error):
        return ServiceError(f"{url}: {exception_line(error)}")
    return error


def listing_error(error: BaseException, url: str) -> UsageError:
    """A listing that failed after the client's retries: one line (the run stops, the journal keeps what was done)."""
    name = type(error).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return UsageError(f"cannot list {url}: no credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                          f"AWS_PROFILE or ~/.aws/credentials)")
    for link in _chain(error):
        status, code = _status(link)
        if code == "NoSuchBucket" or (isinstance(link, FileNotFoundError) and not code):
            return UsageError(f"cannot list {url}: no such bucket")
        if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return UsageError(f"cannot list {url}: access denied ({code or status}): check the credentials")
    return UsageError(f"cannot list {url}: {exception_line(error)}")


# ---------------------------------------------------------------------- listing
def _etag(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "generation", "version_id", "mtime", "LastModified", "last_modified"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    return ""


def s3_pages(fs: Any, bucket: str, prefix: str, recursive: bool) -> Iterator[list[Entry]]:
    """ListObjectsV2 pages of ``bucket/prefix``: one request per page, nothing kept between pages."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if not recursive:
        kwargs["Delimiter"] = "/"
    while True:
        page = fs.call_s3("list_objects_v2", **kwargs)
        yield [Entry(f"{bucket}/{item['Key']}", int(item.get("Size", 0)), f"{str(item.get('ETag', '')).strip(chr(34))}|{item.get('Size', 0)}")
               for item in page.get("Contents", ()) if not item["Key"].endswith("/")]
        token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        if not token:
            return
        kwargs["ContinuationToken"] = token


def _binary(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def walk_pages(fs: Any, folder: str, recursive: bool) -> Iterator[list[Entry]]:
    """Any fsspec store: one folder's listing (``ls``) at a time, sorted by the UTF-8 bytes of the
    names, a sub-folder's name followed by ``/`` and its subtree listed where it sorts: exactly the
    binary order of the full keys, as S3 lists them."""
    listed = fs.ls(folder, detail=True)
    items: list[tuple[bytes, str, dict[str, Any] | None]] = []
    for info in listed:
        name = str(info["name"]).rstrip("/")
        base = name.rsplit("/", 1)[-1]
        if info.get("type") == "directory":
            if recursive and name != folder.rstrip("/"):
                items.append((_binary(base + "/"), name, None))
        else:
            items.append((_binary(base), name, info))
    del listed
    items.sort(key=lambda item: item[0])
    page: list[Entry] = []
    for _, name, info in items:
        if info is None:  # a sub-folder: its subtree comes here, in order
            if page:
                yield page
                page = []
            yield from walk_pages(fs, name, recursive)
        else:
            size = int(info.get("size") or 0)
            page.append(Entry(name, size, f"{_etag(info)}|{size}"))
    if page:
        yield page


# ---------------------------------------------------------------------- the spool
class Spool:
    """A bounded folder of local copies: the oldest beyond ``max_files`` or ``max_bytes`` are
    deleted as new ones arrive (an evicted copy is fetched again if it is needed again)."""

    def __init__(self, folder: str, max_files: int = SPOOL_FILES, max_bytes: int = SPOOL_BYTES) -> None:
        self.folder = folder
        self.max_files = max(1, max_files)
        self.max_bytes = max_bytes
        self._copies: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def added(self, path: str, size: int) -> None:
        """Note a new copy; evict the oldest ones beyond the bounds (never the newest)."""
        with self._lock:
            self._bytes -= self._copies.pop(path, 0)
            self._copies[path] = size
            self._bytes += size
            while len(self._copies) > 1 and (len(self._copies) > self.max_files or self._bytes > self.max_bytes):
                old, old_size = self._copies.popitem(last=False)
                self._bytes -= old_size
                try:
                    os.unlink(old)
                except FileNotFoundError:
                    pass

    def __len__(self) -> int:
        with self._lock:
            return len(self._copies)


_spools: dict[str, Spool] = {}
_spools_lock = threading.Lock()


def spool_at(folder: str, max_files: int, max_bytes: int) -> Spool:
    """The process's :class:`Spool` of ``folder`` (a fetcher in another process makes its own)."""
    with _spools_lock:
        spool = _spools.get(folder)
        if spool is None:
            spool = _spools[folder] = Spool(folder, max_files, max_bytes)
        return spool


# ---------------------------------------------------------------------- fetching
@dataclass(frozen=True)
class ObjectFetcher:
    """Downloads an image's object to ``image.path``, atomically; picklable (no credentials)."""

    protocol: str
    spool: str
    max_files: int = SPOOL_FILES
    max_bytes: int = SPOOL_BYTES

    def __call__(self, image: ImageFile) -> None:
        assert image.origin is not None
        fs = filesystem(self.protocol)
        os.makedirs(os.path.dirname(image.path), exist_ok=True)
        temporary = f"{image.path}.{uuid.uuid4().hex}.part"
        etag = image.version.rsplit("|", 1)[0]
        try:
            if type(fs).__module__.split(".")[0] == "s3fs":
                _s3_download(fs, fs._strip_protocol(image.origin), etag, temporary)
            else:
                fs.get_file(fs._strip_protocol(image.origin), temporary)
            os.replace(temporary, image.path)
        except BaseException as error:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            if isinstance(error, Exception):
                raise fetch_error(error, image.origin) from None
            raise
        spool_at(self.spool, self.max_files, self.max_bytes).added(image.path, os.stat(image.path).st_size)


def _s3_download(fs: Any, path: str, etag: str, target: str) -> None:
    """GET the object (the listed ETag asked for: ``If-Match``) and stream its body to ``target``."""
    from fsspec.asyn import sync

    bucket, _, key = path.partition("/")

    async def download() -> None:
        extra = {"IfMatch": f'"{etag}"'} if etag else {}
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key, **extra)
        body = response["Body"]
        try:
            with open(target, "wb") as handle:
                while True:
                    chunk = await body.read(1 << 16)
                    if not chunk:
                        break
                    handle.write(chunk)
        finally:
            body.close()

    sync(fs.loop, download)


# ---------------------------------------------------------------------- the source
class ObjectSource(Source):
    """The images under a URL (``s3://bucket/prefix``), streamed page by page (see the module docstring).

    ``options.extra`` may bound the spool: ``spool_files``, ``spool_bytes``.
    """

    def __init__(self, url: str, protocol: str, options: SourceOptions | None = None) -> None:
        options = options or SourceOptions()
        scheme, _, rest = url.partition(":")
        if not rest.startswith("//") or not rest[2:].strip("/"):
            raise UsageError(f"give the source as {scheme}://BUCKET/PREFIX (got {url!r})")
        self.scheme = scheme
        self.root = rest[2:].strip("/")
        self.url = f"{scheme}://{self.root}"
        #: The journal's name for the run's source: the URL.
        self.name = self.url
        self.protocol = protocol
        self.recursive = options.recursive
        self.case_sensitive = options.case_sensitive
        self.extensions = tuple(e if options.case_sensitive else e.lower() for e in options.extensions)
        self.fs = filesystem(protocol)
        self._s3 = type(self.fs).__module__.split(".")[0] == "s3fs"
        folder = tempfile.mkdtemp(prefix="alpolicy-spool-")
        self.fetcher = ObjectFetcher(protocol, folder, int(options.extra.get("spool_files", SPOOL_FILES)),
                                     int(options.extra.get("spool_bytes", SPOOL_BYTES)))
        self.spool = spool_at(folder, self.fetcher.max_files, self.fetcher.max_bytes)
        #: The first page ``check()`` listed and the rest of that listing, for the first ``__iter__``.
        self._resume: tuple[list[Entry], Iterator[list[Entry]]] | None = None

    # -- listing
    def _pages(self) -> Iterator[list[Entry]]:
        if self._s3:
            bucket, _, key = self.root.partition("/")
            return s3_pages(self.fs, bucket, f"{key}/" if key else "", self.recursive)
        return walk_pages(self.fs, self.root, self.recursive)

    def _listed(self) -> Iterator[list[Entry]]:
        """The pages, errors as one line; the listing ``check()`` started is carried on, not asked again."""
        resumed, self._resume = self._resume, None
        try:
            if resumed is not None:
                first, rest = resumed
                yield first
                yield from rest
            else:
                yield from self._pages()
        except UsageError:
            raise
        except Exception as error:
            raise listing_error(error, self.url) from None

    def _wanted(self, entry: Entry) -> bool:
        name = entry.path.rsplit("/", 1)[-1]
        return (name if self.case_sensitive else name.lower()).endswith(self.extensions)

    def _image(self, entry: Entry) -> ImageFile:
        origin = f"{self.scheme}://{entry.path}"
        name = entry.path.rsplit("/", 1)[-1]
        suffix = os.path.splitext(name)[1].lower()
        local = os.path.join(self.fetcher.spool, hashlib.sha256(f"{origin}|{entry.version}".encode("utf-8", "surrogatepass")).hexdigest()[:32] + suffix)
        return ImageFile(local, entry.size, 0, origin=origin, version=entry.version, fetcher=self.fetcher)

    def check(self) -> None:
        """List until the first image: none is a usage error. When it is on the first page (the usual
        case), the listing is kept and carried on by ``__iter__``: no page is requested twice."""
        pages = self._pages()
        try:
            for index, page in enumerate(pages):
                if any(self._wanted(entry) for entry in page):
                    self._resume = (page, pages) if index == 0 else None
                    return
        except UsageError:
            raise
        except Exception as error:
            raise listing_error(error, self.url) from None
        where = "" if self.recursive else " (sub-folders not searched: --recursive)"
        raise UsageError(f"no images under {self.url} with extension {', '.join(self.extensions)}{where}")

    def __iter__(self) -> Iterator[ImageFile]:
        for page in self._listed():
            for entry in page:
                if self._wanted(entry):
                    yield self._image(entry)

    def close(self) -> None:
        """Delete the spool (every local copy) at the end of the run."""
        with _spools_lock:
            _spools.pop(self.fetcher.spool, None)
        shutil.rmtree(self.fetcher.spool, ignore_errors=True)
