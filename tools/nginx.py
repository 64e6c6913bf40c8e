"""nginx for development: one foreground process, its configuration generated into a temporary directory.

The bench serves its images with it (``tools/bench/imagehost.py``); the tests put it in front of the tier as a
proxy that keeps upstream connections alive, as production proxies do (``tests/support/nginx.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tools.process import Child, free_port, start_child

INSTALL_HINT = "`make nginx` (scripts/install-debian.sh) installs Debian's"
# Everything but the http block's own directives, and every file nginx writes, inside the temporary directory.
CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log {log_level};
events {{ worker_connections {connections}; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}}}
"""


@dataclass
class Nginx:
    """A running nginx, listening on ``127.0.0.1:<port>``."""

    child: Child
    port: int
    directory: tempfile.TemporaryDirectory[str]  # its configuration, pid file, logs and temporary files

    @property
    def error_log(self) -> Path:
        return Path(self.directory.name) / "error.log"

    def stop(self) -> None:
        self.child.stop()
        self.directory.cleanup()


def find_nginx(install: bool = False) -> str | None:
    """The nginx binary; with ``install``, Debian's nginx-light is installed first if it is missing and we may."""
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


def nginx_version(binary: str) -> str:
    """``1.22.1``, say."""
    said = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stderr.strip()
    return said.rpartition("/")[2]


def start_nginx(
    http: str,
    values: Mapping[str, object] | None = None,
    *,
    binary: str | None = None,
    connections: int = 256,
    log_level: str = "info",
) -> Nginx:
    """Start nginx with ``http`` as its http block's directives and wait until it listens. ``http`` is a template
    (braces doubled): ``{port}`` is the free port it must listen on, ``{dir}`` its directory, and ``values`` the
    rest. RuntimeError if nginx is missing; NotReady, with its output, if it does not start."""
    binary = binary or find_nginx()
    if binary is None:
        raise RuntimeError(f"nginx is missing: {INSTALL_HINT}")
    directory = tempfile.TemporaryDirectory(prefix="imagegate-nginx-")
    port = free_port()
    names = {**(values or {}), "dir": directory.name, "port": port}
    config = CONFIG.format(dir=directory.name, log_level=log_level, connections=connections, http=http.format(**names))
    conf = Path(directory.name) / "nginx.conf"
    conf.write_text(config, encoding="utf-8")
    command = [binary, "-p", directory.name, "-c", str(conf), "-e", f"{directory.name}/error.log"]
    nginx = Nginx(start_child("nginx", command, None), port, directory)
    try:
        nginx.child.wait_listening(port)
    except BaseException:
        nginx.child.kill()
        directory.cleanup()
        raise
    return nginx


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
