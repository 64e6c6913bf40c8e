"""``python -m tools.localserving``: see ``localserving.cli``."""

from __future__ import annotations

import os
import sys

from tools.localserving.cli import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
# Everything is stopped and flushed; TensorFlow's own teardown at interpreter exit would add seconds.
os._exit(code)
