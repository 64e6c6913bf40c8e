"""Child processes for the tools and the tests: start one, wait for its ready line with a deadline, stop its group.

Every server started for development (the local backend, the tier, the fake backend, nginx, the bench's baselines)
starts here, in a process group of its own, its stdout and stderr merged and read line by line by a thread: the
pipe never fills, every line is kept in ``Child.output`` (for failure messages and for tests that read a log), and
whoever waits for a line is woken when it arrives, never by polling. Stopping is SIGTERM to the child, whose own
shutdown is under test (the tier passes it on to its workers), then SIGKILL to the whole group if it is late.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TextIO

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 10.0
OUTPUT_END_WAIT_S = 5.0  # between its exit and the end of its output (a grandchild may hold the pipe a moment)


class NotReady(RuntimeError):
    """A child exited, or did not get ready in time; the message ends with the last lines it printed."""


class Child:
    """A started process, its output so far, and the matches of the ready lines it was started with."""

    def __init__(
        self, name: str, command: list[str], proc: subprocess.Popen[str], echo: TextIO | None, keep_lines: int | None
    ) -> None:
        self.name = name
        self.proc = proc
        self.command = command
        self._lines: list[str] = []
        self.ready: list[re.Match[str]] = []
        self.ready_s = 0.0  # from start to the last ready line
        self._echo = echo
        self._keep_lines = keep_lines
        self._changed = threading.Condition()
        self._ended = False
        self._waited_for_end = False
        threading.Thread(target=self._read_output, name=f"{name}-output", daemon=True).start()

    @classmethod
    def start(
        cls,
        name: str,
        command: Sequence[str | Path],
        ready: str | re.Pattern[str] | None,
        *,
        count: int = 1,
        timeout: float = 120.0,
        cwd: Path = ROOT,
        env: Mapping[str, str] | None = None,
        echo: TextIO | None = None,
        keep_lines: int | None = None,
    ) -> Self:
        """Start ``command`` (from ``cwd``, the repository unless given; ``env`` on top of this process's) and,
        unless ``ready`` is None, wait for ``count`` lines matching it. NotReady if it exits or ``timeout`` passes
        first (the child is killed then). ``echo`` gets every line as it comes; ``keep_lines`` bounds ``output``
        for a child that logs every request."""
        started = time.perf_counter()
        argv = [str(part) for part in command]
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            process_group=0,
        )
        child = cls(name, argv, proc, echo, keep_lines)
        if ready is None:
            return child
        try:
            child.ready = child.wait_for(ready, timeout, count)
        except BaseException:
            child.kill()
            raise
        child.ready_s = time.perf_counter() - started
        return child

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> list[str]:
        """Every line it printed so far, stdout and stderr as they came (the first ``keep_lines`` if given); once it
        has exited, all of them (its last lines may still be on their way from the pipe when it is reaped)."""
        if not (self._ended or self._waited_for_end) and self.proc.poll() is not None:
            with self._changed:
                self._changed.wait_for(lambda: self._ended, OUTPUT_END_WAIT_S)
            self._waited_for_end = True
        return self._lines

    @property
    def match(self) -> re.Match[str]:
        """The first ready line's match: its groups hold what the child announced (an address, a URL)."""
        return self.ready[0]

    def wait_for(
        self, pattern: str | re.Pattern[str], timeout: float, count: int = 1, since: int = 0
    ) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the lines from ``output[since]`` on, waiting for them to be
        printed; NotReady if the child's output ends first or ``timeout`` seconds pass."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []
        scanned = since

        def done() -> bool:
            nonlocal scanned
            while len(found) < count and scanned < len(self._lines):
                if match := regex.search(self._lines[scanned]):
                    found.append(match)
                scanned += 1
            return len(found) >= count or self._ended

        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise NotReady(self._failure(f"printed no line matching {regex.pattern!r} within {timeout:g} s"))
        if len(found) < count:
            code = self.proc.wait(OUTPUT_END_WAIT_S)  # its output ended: it is exiting, if not gone
            raise NotReady(self._failure(f"exited with code {code} before printing {regex.pattern!r}"))
        return found

    def wait_listening(self, port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
        """Connect to ``port`` until it accepts, for servers that print no ready line (nginx, ``http.server``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise NotReady(self._failure(f"exited with code {self.proc.returncode} before listening on {port}"))
            if time.monotonic() > deadline:
                raise NotReady(self._failure(f"did not listen on port {port} within {timeout:g} s"))
            with self._changed:
                self._changed.wait(0.05)  # the poll's pause; a line printed (an error, say) ends it early

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM, then SIGKILL to its group after ``grace_s``; its exit code (negative: the signal that ended it)."""
        stop_process(self.proc, grace_s)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to its group, and wait for it."""
        _kill_group(self.proc)
        self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])

    def _failure(self, what: str) -> str:
        return f"{self.name} ({' '.join(self.command)}) {what}; its last lines:\n{self.tail()}"

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self._echo is not None:
                self._echo.write(line)
                self._echo.flush()
            with self._changed:
                if self._keep_lines is None or len(self._lines) < self._keep_lines:
                    self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()


# What most callers use; a subclass that knows what its child announces starts with its own ``start``.
start_child = Child.start


def stop_process(proc: subprocess.Popen[Any], grace_s: float = STOP_GRACE_S) -> bool:
    """Stop ``proc``; True if it had exited or exited on SIGTERM within ``grace_s``, False if it had to be killed."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        return False
    return True


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL to ``proc``'s process group if it leads one (its workers too), else to ``proc``. Only while it is
    not reaped: until then its id cannot have been given to another process."""
    if proc.returncode is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A loopback port free now, for a server that must be told its port (nginx, the bench's baselines)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
