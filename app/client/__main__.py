"""``python -m app.client PATH|URLS.txt ...``: the same as ``imagegate classify ...``."""

from app.client.cli import main

if __name__ == "__main__":  # guarded: tests import every module of app/
    raise SystemExit(main())
