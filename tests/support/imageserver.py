"""A real local HTTP server for image URLs in tests, with routes for the awkward cases.

Runs ``http.server.ThreadingHTTPServer`` in a daemon thread, so it serves both
in-process async tests and tiers running as subprocesses. Counts the requests it got and
the connections they came on (HTTP/1.1 keep-alive, as most image hosts).
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "images"

Route = Callable[["_Handler"], None]


class ImageServer:
    def __init__(self, host: str = "127.0.0.1", directory: Path = FIXTURES, tls: ssl.SSLContext | None = None) -> None:
        self.directory = directory
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        handler = type("BoundHandler", (_Handler,), {"image_server": self})
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.host = host
        self.scheme = "https" if tls else "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{path.lstrip('/')}"

    def route(self, path: str, handler: Route) -> None:
        self.routes["/" + path.lstrip("/")] = handler

    def record(self, path: str) -> None:
        with self._lock:
            self.hits.append(path)

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    image_server: ImageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.image_server.count_connection()

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # a client closed a kept-alive connection
            super().handle()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.image_server.record(path)
        route = self.image_server.routes.get(path)
        if route is not None:
            route(self)
            return
        file = (self.image_server.directory / path.lstrip("/")).resolve()
        if not file.is_file() or self.image_server.directory not in file.parents:
            self.send_bytes(404, b"not found", "text/plain")
            return
        self.send_bytes(200, file.read_bytes(), _content_type(file))

    def send_bytes(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send_bytes(status, b"", "text/plain", {"Location": location})

    def send_chunked(self, chunks: list[bytes], content_type: str, delay_s: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                if delay_s:
                    time.sleep(delay_s)  # a deliberately slow source, not test synchronisation
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_gzip(self, body: bytes, content_type: str) -> None:
        self.send_bytes(200, gzip.compress(body), content_type, {"Content-Encoding": "gzip"})


def _content_type(file: Path) -> str:
    return {
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".png": "image/png",
        ".gif": "image/gif",
        ".webp": "image/webp",
        ".bmp": "image/bmp",
    }.get(file.suffix.lower(), "application/octet-stream")
