"""``make run``: the local TF-Serving-compatible backend, an image server for the demo URLs, and the tier.

Development only: production runs the tier against the ``tensorflow/serving`` image
(see docker-compose.yml and deploy/k8s). Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import tornado.web

from app.serving.opencv import configure_opencv
from app.settings import SettingsError, load_settings
from tools.localserving.launcher import start_local_backend
from tools.process import ROOT, NotReady, stop_process

DEMO_IMAGES = ROOT / "tests" / "fixtures" / "images"

ANNOUNCE = """
  Open http://{{host}}:{{port}}/ in a browser, or try:

  curl -F image=@tests/fixtures/images/coffee.jpg http://{{host}}:{{port}}/v1/models/mobilenet_v2:predict

  curl -X POST http://{{host}}:{{port}}/v1/models/mobilenet_v2:predict -H 'Content-Type: application/json' \\
       -d '["http://127.0.0.1:{images}/coffee.jpg", "http://127.0.0.1:{images}/chelsea.jpg"]'

  The same photo's bytes, decoded in the model's graph, and its 1280-d embedding:

  curl -F image=@tests/fixtures/images/coffee.jpg http://{{host}}:{{port}}/v1/models/mobilenet_v2_bytes:predict
  curl -F image=@tests/fixtures/images/coffee.jpg http://{{host}}:{{port}}/v1/models/mobilenet_v2_embed:predict

  Faces (BlazeFace), boxes and keypoints in the photo's pixels:

  curl -F image=@tests/fixtures/images/astronaut.jpg http://{{host}}:{{port}}/v1/models/faces:predict

  Ctrl-C stops the tier and the local backend.
"""


async def run_tier(config: Path, backend: str, images_port: int) -> None:
    from app.serving.lifecycle import serve  # after configure_opencv: it imports OpenCV

    settings = load_settings(config, os.environ, [f"backend.address={backend}"])
    images = tornado.web.Application([(r"/(.*)", tornado.web.StaticFileHandler, {"path": str(DEMO_IMAGES)})])
    server = images.listen(images_port, "127.0.0.1")
    try:
        await serve(settings, announce=ANNOUNCE.format(images=images_port))
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run")
    parser.add_argument("--config", type=Path, default=ROOT / "deploy" / "config.dev.yaml")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "models")
    parser.add_argument("--backend-port", type=int, default=8500)
    parser.add_argument("--images-port", type=int, default=8081)
    args = parser.parse_args(argv)
    configure_opencv(os.environ)
    try:
        # In a process group of its own: Ctrl-C reaches this process alone, which stops the tier, then the backend.
        backend = start_local_backend(
            model_config_file=args.models.resolve() / "models.config", port=args.backend_port, echo=sys.stdout
        )
    except NotReady as exc:
        print(f"make run: the local backend did not start: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(run_tier(args.config, backend.address, args.images_port))
    except SettingsError as exc:
        print(f"imagegate: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(backend.proc)  # however it ends: an unclean exit of the backend is on the screen already
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
