"""A real nginx in front of the tier, keeping upstream connections alive as production proxies do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.nginx import start_nginx

PROXY = """\
    access_log {dir}/access.log;
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
"""


@contextmanager
def nginx_in_front_of(upstream_port: int) -> Iterator[tuple[int, Path]]:
    """nginx proxying to 127.0.0.1:``upstream_port``; yields its port and its error log."""
    nginx = start_nginx(PROXY, {"upstream": upstream_port})
    try:
        yield nginx.port, nginx.error_log
    finally:
        nginx.stop()
