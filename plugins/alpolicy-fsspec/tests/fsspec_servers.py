"""Loopback servers for the object-storage tests: real HTTP, real S3 protocol.

* :class:`S3Proxy`: a counting HTTP proxy in front of moto's S3 server (moto has no fault
  injection): every request is recorded (method, path, query), and the first N GETs of a chosen
  object are answered ``503 SlowDown`` as S3 answers them.
* :class:`GeneratedBucket`: a server speaking S3's ListObjectsV2 (XML pages of 1000 keys,
  continuation tokens) over a bucket of any number of keys generated on the fly, so that a
  million-object listing costs no million PUTs: the client (s3fs, botocore) does all it does
  against S3; only the keys are invented.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message><RequestId>injected</RequestId></Error>")

#: The secret of the tests' credentials: no log record, message, journal or report may show it.
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class S3Proxy(_Server):
    """Forwards to ``upstream`` (moto), counting requests; ``fail_gets[path] = n`` fails n GETs with 503."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[tuple[str, str, str]] = []
        self.fail_gets: dict[str, int] = {}
        self.injected: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                with proxy.lock:
                    proxy.requests.append((self.command, path, query))
                    fail = self.command == "GET" and proxy.fail_gets.get(path, 0) > 0
                    if fail:
                        proxy.fail_gets[path] -= 1
                        proxy.injected[path] += 1
                if fail:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                status, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _serve

        super().__init__(Handler)

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("connection", "keep-alive")}
            connection.request(method, path, body=body or None, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def count(self, method: str, path: str | None = None, query: str | None = None) -> int:
        """Requests of ``method`` (to ``path``; whose query string holds ``query``)."""
        with self.lock:
            return sum(1 for m, p, q in self.requests
                       if m == method and (path is None or p == path) and (query is None or query in q))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()


class GeneratedBucket(_Server):
    """ListObjectsV2 over ``count`` keys ``PREFIX/img_0000000.jpg``... (binary order = numeric order)."""

    PAGE = 1000

    def __init__(self, bucket: str, prefix: str, count: int) -> None:
        self.bucket, self.prefix, self.count = bucket, prefix, count
        self.pages = 0
        self.others: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                if parts.path.strip("/") != server.bucket or query.get("list-type") != "2":
                    server.others.append(self.path)
                    return self._answer(404, b"<Error><Code>NoSuchKey</Code><Message>not here</Message></Error>")
                server.pages += 1
                self._answer(200, server.page(query.get("prefix", ""), int(query.get("continuation-token") or 0),
                                              min(int(query.get("max-keys") or server.PAGE), server.PAGE)))

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_HEAD = do_GET

        super().__init__(Handler)

    def page(self, prefix: str, start: int, size: int) -> bytes:
        if prefix != self.prefix:
            start, end = 0, 0
        else:
            end = min(self.count, start + size)
        truncated = end < self.count and prefix == self.prefix
        contents = "".join(
            f"<Contents><Key>{escape(self.prefix)}img_{index:07d}.jpg</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
            f"<ETag>&quot;{index:032x}&quot;</ETag><Size>{1000 + index % 997}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            for index in range(start, end))
        token = f"<NextContinuationToken>{end}</NextContinuationToken>" if truncated else ""
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{self.bucket}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{end - start}</KeyCount>"
                f"<MaxKeys>{size}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{token}"
                f"{contents}</ListBucketResult>").encode()
