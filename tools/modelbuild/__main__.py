"""``python -m tools.modelbuild --out build/models``: build the demo models (cached; see modelbuild.build)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from tools.modelbuild.build import build_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.modelbuild", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/models"), help="models directory")
    args = parser.parse_args(argv)
    # TensorFlow's C++ start-up chatter (CPU features, oneDNN) buries the build report.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    build_all(args.out)
    print(f"done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
