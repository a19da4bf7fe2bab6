"""Health checks: the rise/fall state, and the HTTP and TCP probes against real servers on loopback."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from herd.daemon.checks import CheckState
from herd.daemon.checks.http import http_check
from herd.daemon.checks.tcp import tcp_check
from herd.spec import Check, CheckKind


def test_rise_and_fall() -> None:
    state = CheckState(rise=2, fall=3)
    assert not state.up
    assert state.record(None) is False and not state.up
    assert state.record(None) is True and state.up          # up after 2 successes
    assert state.record("x") is False and state.record(None) is False  # a single failure is forgiven
    assert [state.record("x") for _ in range(3)] == [False, False, True]
    assert not state.up and state.last_error == "x"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = {"/ok": b"hello herd", "/other": b"hello world"}.get(self.path)
        self.send_response(200 if body else 503)
        self.end_headers()
        self.wfile.write(body or b"down")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()


def check(path: str = "/ok", expect: str = "herd", kind: CheckKind = CheckKind.HTTP) -> Check:
    return Check(kind=kind, path=path, expect=expect, status=200, interval=1.0, timeout=0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_check(server: int) -> None:
    assert asyncio.run(http_check("127.0.0.1", server, check())) is None
    assert "lacks 'herd'" in str(asyncio.run(http_check("127.0.0.1", server, check("/other"))))
    assert "status 503" in str(asyncio.run(http_check("127.0.0.1", server, check("/missing"))))
    assert "connect" in str(asyncio.run(http_check("127.0.0.1", free_port(), check())))


def test_http_check_times_out_on_a_silent_server() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        error = asyncio.run(http_check("127.0.0.1", silent.getsockname()[1], check()))
    assert error is not None and "timed out" in error


def test_tcp_check(server: int) -> None:
    assert asyncio.run(tcp_check("127.0.0.1", server, check(kind=CheckKind.TCP))) is None
    assert asyncio.run(tcp_check("127.0.0.1", free_port(), check(kind=CheckKind.TCP))) is not None
