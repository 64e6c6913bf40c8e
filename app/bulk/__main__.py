"""``python -m app.bulk PATH|URLS.txt ...``: the same as ``imagegate classify ...``."""

from app.bulk.cli import main

if __name__ == "__main__":  # guarded: tests import every module of app/
    raise SystemExit(main())
