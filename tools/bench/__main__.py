"""``python -m tools.bench``: see ``bench.run``."""

from __future__ import annotations

from tools.bench.run import main

raise SystemExit(main())
