"""The ``imagegate`` console script: ``imagegate serve`` runs the tier, ``imagegate classify`` the bulk client.

``imagegate serve ARGS`` is ``python -m app ARGS``, which stays the tier's own entry. Each command imports
only what it needs: ``classify`` never loads the server (Tornado, gRPC, OpenCV).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

USAGE = """usage: imagegate {serve,classify} ...

  imagegate serve [--config FILE] [--port N] ...     run the tier (the same as python -m app)
  imagegate classify PATH|URLS.txt [--model M] ...   classify a folder or a list of URLs through a tier

imagegate COMMAND --help tells more."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "classify":
        from app.bulk.cli import main as classify

        return classify(rest)
    if command == "serve":
        return serve(rest)
    if command in ("-h", "--help"):
        print(USAGE)
        return 0
    print(USAGE, file=sys.stderr)
    if command:
        print(f"imagegate: unknown command {command!r}", file=sys.stderr)
    return 2


def serve(argv: Sequence[str]) -> int:
    """The tier, as ``python -m app`` starts it: OpenCV's limits first (OpenCV reads them when it loads)."""
    from app.serving.opencv import configure_opencv

    configure_opencv(os.environ)
    from app.serving.cli import main as serve_main

    return serve_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
