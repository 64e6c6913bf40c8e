"""The browser page's files, served with security headers a <meta> tag cannot set."""

from __future__ import annotations

import tornado.web

from handlers.base import TrackedHandler

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class PageFileHandler(TrackedHandler, tornado.web.StaticFileHandler):
    """Static files of the page: strict CSP, no framing (clickjacking), no sniffing, no referrer."""

    route = "page"

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
