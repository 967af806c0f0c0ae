"""A fault-injecting HTTP proxy on loopback, in front of a real server (Label Studio in the tests).

The Roboflow fake injects faults itself; a real Label Studio cannot, so this proxy forwards each
request to it and, by a per-path-prefix schedule, answers 503 (or a chosen status and body) instead, resets the connection
before forwarding, or forwards and then drops the connection without answering (the "lost
response": the server did the work, the client never hears). Counted, so tests can assert.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Faults:
    prefix: str  # applies to request paths starting with this (query string excluded)
    error_every: int = 0
    reset_every: int = 0
    lose_every: int = 0
    max_faults: int | None = None
    #: The injected error's status and body (Label Studio's JSON shape by default).
    error_status: int = 503
    error_body: bytes = b'{"detail": "injected 503"}'
    seen: int = 0
    injected: dict[str, int] = field(default_factory=dict)

    def pick(self) -> str | None:
        self.seen += 1
        if self.max_faults is not None and sum(self.injected.values()) >= self.max_faults:
            return None
        for kind, every in (("error", self.error_every), ("reset", self.reset_every), ("lose", self.lose_every)):
            if every and self.seen % every == 0:
                self.injected[kind] = self.injected.get(kind, 0) + 1
                return kind
        return None


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.faults: list[Faults] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                faults = proxy._faults_for(self.path.split("?", 1)[0])
                fault = proxy._fault(faults)
                if fault == "reset":
                    return self._reset()
                if fault == "error":
                    assert faults is not None
                    payload = faults.error_body
                    self.send_response(faults.error_status)
                    self.send_header("Content-Type", "application/json" if payload[:1] in (b"{", b"[") else "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                if fault == "lose":
                    return self._reset()
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _faults_for(self, path: str) -> Faults | None:
        with self.lock:
            return next((faults for faults in self.faults if path.startswith(faults.prefix)), None)

    def _fault(self, faults: Faults | None) -> str | None:
        if faults is None:
            return None
        with self.lock:
            return faults.pick()

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection", "keep-alive")}
            forwarded["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            connection.request(method, path, body=body or None, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def injected(self) -> dict[str, int]:
        with self.lock:
            total: dict[str, int] = {}
            for faults in self.faults:
                for kind, count in faults.injected.items():
                    total[kind] = total.get(kind, 0) + count
            return total

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
