"""Scenario 9's floor: Tornado's HTTP server alone, answering every predict with a canned answer.

``python -m tools.bench.tornado_floor --port 0 [...]`` takes the tier's arguments (and ignores all
but ``--port``), reads and parses the request's JSON body as the tier does, and answers the JSON
the tier would (4 items of 3 classes) without downloading, decoding or predicting anything: the
CPU per image it spends is what the tier's HTTP in and out cost at the least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

import tornado.httpserver
import tornado.netutil
import tornado.web

CLASSES = [{"class_id": j, "label": f"class {j}", "score": 0.25 / (j + 1)} for j in range(3)]


class CannedPredict(tornado.web.RequestHandler):
    def post(self, name: str) -> None:
        urls = json.loads(self.request.body)
        answer = {
            "model": {"name": name, "version": 1},
            "predictions": [{"source": u, "classes": CLASSES} for u in urls],
        }
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(answer, separators=(",", ":")))


async def serve(port: int) -> None:
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/v1/models/([^/:]+):predict", CannedPredict)]))
    server.add_sockets(sockets)
    print(f"imagegate: ready on http://127.0.0.1:{sockets[0].getsockname()[1]} models=canned", flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.tornado_floor")
    parser.add_argument("--port", type=int, default=0)
    args, _ignored = parser.parse_known_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
