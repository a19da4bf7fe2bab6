"""Health checks: the rise/fall state, the HTTP and TCP probes against real servers on loopback, and the
director's check loop, which no probe's error ends."""

from __future__ import annotations

import asyncio
import http.server
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from herd.daemon.checks import PROBES, CheckState
from herd.daemon.checks.http import http_check
from herd.daemon.checks.tcp import tcp_check
from herd.daemon.loop import Config, Daemon
from herd.daemon.state import StateDir
from herd.spec import Check, CheckKind, Role, load


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


def answering(status_line: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(status_line + b"\r\n\r\nherd")
        await writer.drain()
        writer.close()
    return serve


@pytest.mark.parametrize("status", [b"2" * 5000, b"2000", b"20", b"\xd9\xa2\xd9\xa0\xd9\xa0"])
def test_http_check_takes_only_a_three_digit_status(status: bytes) -> None:
    """A status of 4300 digits and more made int() raise, which ended the server's check loop for good."""
    async def main() -> str | None:
        server = await asyncio.start_server(answering(b"HTTP/1.0 " + status + b" OK"), "127.0.0.1", 0)
        try:
            return await http_check("127.0.0.1", server.sockets[0].getsockname()[1], check())
        finally:
            server.close()

    assert asyncio.run(main()) == "not an HTTP response"


def test_a_probe_that_raises_is_a_failed_check_and_the_checks_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    spec = load(Path(__file__).resolve().parents[2] / "examples/cluster.toml")
    me, web = spec.node_named("dir1"), spec.nodes_of(Role.WEB)[0]
    assert me is not None
    d = Daemon(Config(spec, me, b"k" * 32, 5, tmp_path / "sock", None, StateDir(tmp_path / "state")))
    assert d.balancer is not None
    d.balancer.ipvs_state = "unavailable"  # no netlink here
    calls: list[int] = []

    async def probe(address: str, port: int, c: Check) -> str | None:
        calls.append(1)
        if len(calls) <= 3:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return None

    monkeypatch.setitem(PROBES, CheckKind.HTTP, probe)
    svc = spec.services[0]
    service = SimpleNamespace(name=svc.name, port=svc.port, check=Check(interval=0.001, rise=2, fall=2))
    state = d.balancer.checks[(svc.name, web.name)]
    state.up = True

    async def main() -> None:
        task = asyncio.create_task(d.balancer.check_loop(service, web))
        while len(calls) < 6 and not task.done():
            await asyncio.sleep(0.001)
        assert not task.done(), "the check loop ended"
        task.cancel()

    with caplog.at_level(logging.ERROR, logger="herdd"):
        asyncio.run(main())
    assert state.up and len(calls) >= 6  # down after two failures, up again after two successes
    assert sum("check of" in r.getMessage() for r in caplog.records) == 1  # a repeated error logged once
