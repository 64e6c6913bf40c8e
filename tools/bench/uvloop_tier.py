"""The tier on uvloop's event loop instead of asyncio's, for scenario 9 (``python -m tools.bench.uvloop_tier ARGS``).

The product does not use uvloop (tools/bench/README.md says why); this launcher only sets the
event loop policy and then runs ``python -m app`` with the same arguments.
"""

from __future__ import annotations

import asyncio
import runpy
import sys

import uvloop


def main() -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.argv[0] = "app"
    runpy.run_module("app", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
