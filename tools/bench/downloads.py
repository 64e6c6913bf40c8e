"""Issue 18's download lever, in-process by this process's CPU clock: ``python -m tools.bench.downloads``.

The same 640x480 JPEGs (about 80 KB) from nginx on loopback, 16 downloads in flight, each
client in turn over the rounds, CPU per download of this process:

- the tier's ``UrlFetcher`` (aiohttp's client with every check: URL, policy, caps, redirects);
- a bare ``aiohttp.ClientSession``: the floor of the client under the fetcher, no check at all;
- Tornado's ``CurlAsyncHTTPClient`` (libcurl);
- pycurl's multi interface driven directly from the event loop, the body written by libcurl into a
  ``BytesIO``: the floor of libcurl from Python, no check at all.

The two floors bound what a rewrite on that client could save; the note in tools/bench/README.md
says what each check costs and why the fetcher stays on aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pycurl
from tornado.curl_httpclient import CurlAsyncHTTPClient

from app.fetch.fetcher import UrlFetcher
from app.settings import FetchSettings
from tools.bench import procs
from tools.bench.imagehost import start_image_host
from tools.bench.images import make_workload
from tools.process import ROOT

IN_FLIGHT = 16


def cpu() -> float:
    return time.process_time()  # every thread of this process, at the clock's full resolution


class CurlMulti:
    """pycurl's multi interface on the running asyncio loop: libcurl's socket and timer callbacks."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._timer)
        self.timer: asyncio.TimerHandle | None = None
        self.pending: dict[Any, tuple[asyncio.Future[bytes], io.BytesIO]] = {}
        self.idle: list[Any] = []

    def _socket(self, event: int, fd: int, _multi: Any, _data: Any) -> None:
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)
        if event in (pycurl.POLL_IN, pycurl.POLL_INOUT):
            self.loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if event in (pycurl.POLL_OUT, pycurl.POLL_INOUT):
            self.loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)

    def _timer(self, ms: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if ms >= 0:
            self.timer = self.loop.call_later(ms / 1000, self._act, pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, event: int) -> None:
        while self.multi.socket_action(fd, event)[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, done, failed = self.multi.info_read()
            for handle in done:
                future, body = self._finish(handle)
                future.set_result(body)
            for handle, _code, message in failed:
                future, _ = self._finish(handle)
                future.set_exception(RuntimeError(message))
            if not queued:
                return

    def _finish(self, handle: Any) -> tuple[asyncio.Future[bytes], bytes]:
        self.multi.remove_handle(handle)
        future, body = self.pending.pop(handle)
        self.idle.append(handle)  # libcurl keeps the connection in the multi handle's cache
        return future, body.getvalue()

    def get(self, url: str) -> asyncio.Future[bytes]:
        handle = self.idle.pop() if self.idle else pycurl.Curl()
        body = io.BytesIO()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.WRITEDATA, body)
        future: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[handle] = (future, body)
        self.multi.add_handle(handle)
        return future

    def close(self) -> None:
        for handle in self.idle:
            handle.close()
        self.multi.close()


async def cpu_per_download(get: Callable[[str], Awaitable[bytes]], urls: Sequence[str], count: int) -> float:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(url: str) -> bytes:
        async with gate:
            return await get(url)

    await asyncio.gather(*[one(urls[i % len(urls)]) for i in range(200)])  # warm: connections made
    start = cpu()
    bodies = await asyncio.gather(*[one(urls[i % len(urls)]) for i in range(count)])
    spent = cpu() - start
    assert all(body[:2] == b"\xff\xd8" for body in bodies), "a download was not the JPEG"
    return spent / count


async def measure(urls: Sequence[str], rounds: int, count: int) -> dict[str, list[float]]:
    fetcher = UrlFetcher.from_settings(FetchSettings(allow_cidrs=("127.0.0.0/8",)))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    curl = CurlAsyncHTTPClient(force_instance=True, max_clients=IN_FLIGHT)
    multi = CurlMulti()

    async def bare_aiohttp(url: str) -> bytes:
        async with session.get(url) as response:
            return await response.read()

    async def tornado_curl(url: str) -> bytes:
        return bytes((await curl.fetch(url)).body)

    clients: dict[str, Callable[[str], Awaitable[bytes]]] = {
        "imagegate UrlFetcher on aiohttp (kept)": fetcher.fetch,
        "bare aiohttp ClientSession, no checks": bare_aiohttp,
        "Tornado CurlAsyncHTTPClient (libcurl)": tornado_curl,
        "pycurl multi from the loop, no checks": multi.get,
    }
    found: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for _ in range(rounds):
            for name, get in clients.items():
                found[name].append(await cpu_per_download(get, urls, count) * 1e3)
    finally:
        await fetcher.close()
        await session.close()
        curl.close()
        multi.close()
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.downloads", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    workload = make_workload(ROOT / "build" / "bench" / "images")
    host = start_image_host(Path(workload.directory))
    try:
        found = asyncio.run(measure([host.url(name) for name in workload.small], args.rounds, args.count))
    finally:
        host.stop()
    print(procs.median_table("client", "CPU ms per download", found, digits=3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
