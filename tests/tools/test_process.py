"""The process toolkit with real child processes: ready lines, failures to start, stopping a whole group."""

from __future__ import annotations

import signal
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.waiting import wait_for
from tools.process import NotReady, free_port, start_child

SERVE = "import signal; signal.pause()"  # a child that stays until it is signalled
STUBBORN = f"import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); {SERVE}"


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie left for its new parent to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in "ZX"


def test_start_returns_once_the_ready_lines_are_printed() -> None:
    code = f"print('warming up'); print('ready on 127.0.0.1:1234', flush=True); print('ready on b'); {SERVE}"
    child = start_child("demo", python(code), r"ready on (\S+)", count=2, timeout=30)
    try:
        assert [m.group(1) for m in child.ready] == ["127.0.0.1:1234", "b"]
        assert child.match.group(1) == "127.0.0.1:1234" and child.ready_s > 0
        assert child.output[0] == "warming up\n"
    finally:
        assert child.stop() == -signal.SIGTERM


def test_stderr_is_in_the_output_and_all_of_it_once_the_child_exited() -> None:
    code = """
        import signal, sys
        signal.signal(signal.SIGTERM, lambda *_: (print("stopping", file=sys.stderr), sys.exit(0)))
        print("ready", flush=True)
        signal.pause()
    """
    child = start_child("demo", python(code), "ready", timeout=30)
    child.proc.send_signal(signal.SIGTERM)
    assert child.proc.wait(timeout=30) == 0
    assert child.output[-1] == "stopping\n"


def test_a_child_that_exits_before_it_is_ready_fails_with_its_code_and_last_lines() -> None:
    with pytest.raises(NotReady, match=r"(?s)exited with code 3 .*no model here"):
        start_child("demo", python("print('no model here'); raise SystemExit(3)"), "ready", timeout=30)


def test_a_child_that_is_never_ready_is_killed_at_the_deadline() -> None:
    code = f"import os; print('pid', os.getpid(), flush=True); {SERVE}"
    with pytest.raises(NotReady, match=r"no line matching 'ready' within 0\.5 s") as failed:
        start_child("demo", python(code), "ready", timeout=0.5)
    assert gone(int(str(failed.value).split()[-1]))  # its pid, the last line it printed


def test_stop_kills_the_whole_group_of_a_child_that_ignores_sigterm() -> None:
    code = f"""
        import signal, subprocess, sys
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker = subprocess.Popen([sys.executable, "-c", "{STUBBORN}"])
        print("ready", worker.pid, flush=True)
        {SERVE}
    """
    child = start_child("demo", python(code), r"ready (\d+)", timeout=30)
    worker = int(child.match.group(1))
    assert child.stop(grace_s=0.5) == -signal.SIGKILL
    wait_for(lambda: gone(worker), "the worker to be killed with its parent")


def test_wait_for_reads_on_from_a_line() -> None:
    child = start_child("demo", python(f"print('reloaded', flush=True); {SERVE}"), "reloaded", timeout=30)
    try:
        assert child.wait_for("reloaded", 0.2, since=0)[0].string == "reloaded\n"
        with pytest.raises(NotReady, match=r"no line matching 'reloaded' within 0\.2 s"):
            child.wait_for("reloaded", 0.2, since=len(child.output))
    finally:
        child.stop()


def test_keep_lines_bounds_the_output_of_a_chatty_child() -> None:
    child = start_child("demo", python(f"[print(i) for i in range(100)]; print('ready', flush=True); {SERVE}"), None)
    try:
        assert child.wait_for("99", 30)[0].string == "99\n"
    finally:
        child.stop()
    bounded = start_child("demo", python("[print(i) for i in range(100)]"), None, keep_lines=10)
    bounded.proc.wait(timeout=30)
    assert bounded.output == [f"{i}\n" for i in range(10)]


def test_wait_listening_for_a_server_that_prints_nothing() -> None:
    port = free_port()
    code = f"""
        import socket, signal
        server = socket.create_server(("127.0.0.1", {port}))
        {SERVE}
    """
    child = start_child("demo", python(code), None)
    try:
        child.wait_listening(port, timeout=30)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        child.stop()
    quitter = start_child("demo", python("raise SystemExit(4)"), None)
    with pytest.raises(NotReady, match=f"exited with code 4 before listening on {port}"):
        quitter.wait_listening(port, timeout=30)
