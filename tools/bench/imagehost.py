"""Serving the workload images over HTTP on loopback at little CPU cost.

nginx from Debian when it can be had (installed with apt-get if missing and we are
root), run in the foreground as one process with a generated configuration in a
temporary directory; otherwise Python's ``http.server`` in a child process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.nginx import find_nginx, nginx_version, start_nginx
from tools.process import NotReady, free_port, start_child

STATIC = """\
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    open_file_cache max=64;
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
"""


@dataclass
class ImageHost:
    kind: str  # "nginx 1.22.1" or "python http.server"
    port: int
    stop: Callable[[], object]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def start_image_host(root: Path, prefer_nginx: bool = True, install: bool = True) -> ImageHost:
    """Serve ``root``; nginx if possible (installed first if ``install``), else a Python server."""
    binary = find_nginx(install) if prefer_nginx else None
    if binary is not None:
        try:
            nginx = start_nginx(STATIC, {"root": root.resolve()}, binary=binary, connections=4096, log_level="warn")
        except NotReady as exc:
            print(f"bench: nginx would not start ({exc}); using Python's http.server", file=sys.stderr)
        else:
            return ImageHost(f"nginx {nginx_version(binary)}", nginx.port, nginx.stop)
    port = free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]
    # It logs every request: the first lines are enough for a failure message.
    child = start_child("http.server", command, r"Serving HTTP on", timeout=15, keep_lines=100)
    return ImageHost("python http.server", port, child.stop)
