"""``python -m app.client ...``, the bulk client's former name: says the new one on stderr, then runs it."""

import sys

from app.bulk import PROG
from app.bulk.cli import main

NOTICE = f"{PROG}: python -m app.client is now python -m app.bulk (or {PROG})"

if __name__ == "__main__":  # guarded: tests import every module of app/
    print(NOTICE, file=sys.stderr)
    raise SystemExit(main())
