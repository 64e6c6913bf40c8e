"""Serving the workload images over HTTP on loopback at little CPU cost.

nginx from Debian when it can be had (installed with apt-get if missing and we are
root), run in the foreground as one process with a generated configuration in a
temporary directory; otherwise Python's ``http.server`` in a child process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tools.bench.procs import free_port

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    open_file_cache max=64;
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@dataclass
class ImageHost:
    kind: str  # "nginx 1.22.1" or "python http.server"
    port: int
    proc: subprocess.Popen[bytes]
    tmp: tempfile.TemporaryDirectory[str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()


def find_nginx(install: bool = True) -> str | None:
    """The nginx binary, installing Debian's nginx-light first if it is missing and we may."""
    found = _nginx_binary()
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_args = ["apt-get", "install", "-y", "-q", "nginx-light"]
    for args in (install_args, ["apt-get", "update", "-q"], install_args):
        subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        found = _nginx_binary()
        if found:
            return found
    return None


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


def start_image_host(root: Path, prefer_nginx: bool = True, install: bool = True) -> ImageHost:
    """Serve ``root``; nginx if possible (installed first if ``install``), else a Python server."""
    nginx = find_nginx(install) if prefer_nginx else None
    if nginx is not None:
        try:
            return _start_nginx(nginx, root)
        except RuntimeError as exc:
            print(f"bench: nginx would not start ({exc}); using Python's http.server", file=sys.stderr)
    return _start_python(root)


def _start_nginx(binary: str, root: Path) -> ImageHost:
    tmp = tempfile.TemporaryDirectory(prefix="bench-nginx-")
    port = free_port()
    conf = Path(tmp.name) / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp.name, port=port, root=root.resolve()))
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", tmp.name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    host = ImageHost(f"nginx {version.rpartition('/')[2]}", port, proc, tmp)
    _wait_for_port(host)
    return host


def _start_python(root: Path) -> ImageHost:
    tmp = tempfile.TemporaryDirectory(prefix="bench-http-")
    port = free_port()
    args = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = ImageHost("python http.server", port, proc, tmp)
    _wait_for_port(host)
    return host


def _wait_for_port(host: ImageHost, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.proc.poll() is not None:
            host.tmp.cleanup()
            raise RuntimeError(f"{host.kind} exited with status {host.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", host.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    host.stop()
    raise RuntimeError(f"{host.kind} did not listen on port {host.port}")
