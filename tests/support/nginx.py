"""A real nginx in front of the tier, keeping upstream connections alive as production proxies do."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.process import stop_process

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 64m;
    upstream tier {{
        server 127.0.0.1:{upstream};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://tier;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise RuntimeError("nginx is missing: `make nginx` (scripts/install-debian.sh) installs Debian's")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def nginx_in_front_of(upstream_port: int) -> Iterator[tuple[int, Path]]:
    """nginx proxying to 127.0.0.1:``upstream_port``; yields its port and its error log."""
    with tempfile.TemporaryDirectory(prefix="imagegate-nginx-") as tmp:
        port = free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(CONFIG.format(tmp=tmp, port=port, upstream=upstream_port))
        proc = subprocess.Popen([nginx_binary(), "-c", str(conf), "-e", f"{tmp}/error.log"], stderr=subprocess.PIPE)
        try:
            _wait_listening(port, proc)
            yield port, Path(tmp) / "error.log"
        finally:
            stop_process(proc)


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Connect until nginx accepts, with a deadline; fail at once if it exited."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            try:
                proc.wait(timeout=0.02)  # the poll's pause, which also notices an exit
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}") from None
    raise RuntimeError("nginx did not start listening within 10 s")
