"""OpenCV for this process: its own decode limits as a backstop, quiet logs, one thread per call.

OpenCV reads its limits from the environment once, when ``cv2`` is first imported, so
``configure_opencv`` must run where the process starts, before anything imports
``processing.image``: ``python -m app`` calls it first thing. Our own checks
(``processing.sniff.read_header`` against ``decode.*``) refuse large images first; these
make OpenCV refuse them too should a header lie.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping

from app.settings_checks import OPENCV_MAX_PIXELS, OPENCV_MAX_SIDE

OPENCV_ENVIRONMENT = {
    "OPENCV_IO_MAX_IMAGE_PIXELS": str(OPENCV_MAX_PIXELS),
    "OPENCV_IO_MAX_IMAGE_WIDTH": str(OPENCV_MAX_SIDE),
    "OPENCV_IO_MAX_IMAGE_HEIGHT": str(OPENCV_MAX_SIDE),
    "OPENCV_IO_ENABLE_OPENEXR": "0",
    "OPENCV_LOG_LEVEL": "SILENT",  # corrupt images are the clients' errors, reported in their answers
}


def configure_opencv(environ: MutableMapping[str, str]) -> None:
    """Set OpenCV's limits in ``environ`` (values already there win), then load it single-threaded.

    Raises RuntimeError if cv2 was imported before: its limits could no longer take effect.
    """
    if "cv2" in sys.modules:
        raise RuntimeError("configure_opencv must run before cv2 is imported")
    for key, value in OPENCV_ENVIRONMENT.items():
        environ.setdefault(key, value)
    import cv2

    # Parallelism comes from our decode thread pool (one image per worker); OpenCV's own
    # threads would only contend with it.
    cv2.setNumThreads(1)
