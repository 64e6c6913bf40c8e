"""The one place that imports OpenCV, after setting its own decode limits as a backstop.

Our own checks (``processing.sniff.read_header`` against ``DecodeLimits``) refuse large
images first; these environment variables make OpenCV refuse them too should a header
lie. They must be set before cv2 is imported for the first time.
"""

from __future__ import annotations

import os

BACKSTOP_MAX_PIXELS = 1 << 26  # 67 megapixels: above any sane configured cap
BACKSTOP_MAX_SIDE = 1 << 15

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(BACKSTOP_MAX_PIXELS))
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_WIDTH", str(BACKSTOP_MAX_SIDE))
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_HEIGHT", str(BACKSTOP_MAX_SIDE))
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "0")
# Corrupt images are the clients' errors, reported in their answers, not stderr noise.
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402

# Parallelism comes from our thread pool (one image per worker); OpenCV's own threads
# would only contend with it.
cv2.setNumThreads(1)

__all__ = ["cv2"]
