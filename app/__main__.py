"""``python -m app``: OpenCV's limits first (OpenCV reads them when it loads), then the command line."""

import os

from app.serving.opencv import configure_opencv

configure_opencv(os.environ)

from app.serving.cli import main  # noqa: E402

raise SystemExit(main())
