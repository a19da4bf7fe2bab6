"""herdctl: the status table, health text, and requests to a real unix socket server in a thread."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from herd.ctl import CtlError, health_text, main, request, status_table

NODES: list[dict[str, Any]] = [
    {"name": "dir1", "role": "director", "address": "192.168.50.11", "state": "alive", "last_seen_ms": 0,
     "health": {"load1": 0.42, "mem_pct": 37.4, "disk_pct": 12.0, "temp_c": 48.2}},
    {"name": "dir2", "role": "director", "address": "192.168.50.12", "state": "alive", "last_seen_ms": 120,
     "health": {}},
    {"name": "web1", "role": "web", "address": "192.168.50.21", "state": "drained", "last_seen_ms": 80,
     "health": {"load1": 1.5}},
    {"name": "web2", "role": "web", "address": "192.168.50.22", "state": "dead", "last_seen_ms": 4321,
     "health": {"mem_pct": 90.0}},
    {"name": "nfs1", "role": "nfs", "address": "192.168.50.31", "state": "unknown", "last_seen_ms": None,
     "health": {}},
    {"name": "db1", "role": "db", "address": "192.168.50.41", "state": "alive", "last_seen_ms": 199,
     "health": None},
]


def status(holder: str | None = "dir1") -> dict[str, Any]:
    return {"cluster": "demo", "self": "dir1", "role": "director", "generation": 7, "nodes": NODES,
            "vip": {"address": "192.168.50.10", "holder": holder}, "counters": {"sent": 5},
            "dropped": {}}


def rendered(st: dict[str, Any]) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(status_table(st))
    return console.export_text()


def rows(text: str) -> list[list[str]]:
    """The table's body rows, as stripped cells."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


# -- health_text and status_table ----------------------------------------------------------------------------

def test_health_text() -> None:
    assert health_text({}) == ""
    assert health_text({"load1": 0.42, "mem_pct": 37.4, "disk_pct": 12.0, "temp_c": 48.2}) == (
        "load 0.42  mem 37%  disk 12%  48°C")
    assert health_text({"mem_pct": 99.7}) == "mem 100%"
    assert health_text({"temp_c": 61.4, "load1": 3}) == "load 3  61°C"  # fixed order, whatever the dict's
    assert health_text({"unknown": 1}) == ""


def test_health_text_shows_the_roles_engines() -> None:
    assert health_text({"apache": True, "docroot": "nfs1:/srv"}) == "apache up"
    assert health_text({"mariadb": False}) == "mariadb DOWN"
    assert health_text({"nfsd": 8}) == "nfsd 8 threads"
    assert health_text({"nfsd": 0, "garbd": True}) == "garbd up  nfsd DOWN"
    assert health_text({"mariadb": True, "galera": {"running": True, "primary": True}}) == (
        "mariadb up  galera primary")
    assert health_text({"galera": {"running": True, "primary": False}}) == "galera starting"
    assert health_text({"galera": {"running": False, "primary": False, "position": {"seqno": 42}}}) == (
        "galera stopped at seqno 42")


def test_status_table_renders_every_node() -> None:
    text = rendered(status())
    title = text.splitlines()[0].strip()
    assert title == "cluster demo — seen from dir1 — VIP 192.168.50.10 held by dir1"
    assert rows(text) == [
        ["dir1 (self)", "director", "192.168.50.11", "alive", "0 ms", "load 0.42  mem 37%  disk 12%  48°C"],
        ["dir2", "director", "192.168.50.12", "alive", "120 ms", ""],
        ["web1", "web", "192.168.50.21", "drained", "80 ms", "load 1.5"],
        ["web2", "web", "192.168.50.22", "dead", "4321 ms", "mem 90%"],
        ["nfs1", "nfs", "192.168.50.31", "unknown", "-", ""],
        ["db1", "db", "192.168.50.41", "alive", "199 ms", ""],
    ]
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["node", "role", "address", "state", "last seen",
                                                           "health"]


def test_status_table_styles_states() -> None:
    table = status_table(status())
    state_column = next(c for c in table.columns if c.header == "state")
    cells = [(str(cell), str(cell.style)) for cell in state_column.cells]  # type: ignore[attr-defined]
    assert cells == [("alive", "green"), ("alive", "green"), ("drained", "yellow"), ("dead", "bold red"),
                     ("unknown", "dim"), ("alive", "green")]


def test_status_table_title_names_the_release() -> None:
    st = dict(status(), release="2026.11.0")
    title = rendered(st).splitlines()[0].strip()
    assert title == "cluster demo release 2026.11.0 — seen from dir1 — VIP 192.168.50.10 held by dir1"
    assert "release" not in rendered(dict(status(), release=None)).splitlines()[0]  # outside an image


def test_main_status_json_has_the_release(serve: Any, sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve({"ok": True, "status": dict(status(), release="2026.11.0")})
    assert main(["--socket", str(sock_path), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["release"] == "2026.11.0"


def test_status_table_without_a_vip_holder() -> None:
    assert "VIP 192.168.50.10 held by nobody" in rendered(status(holder=None))


def test_status_table_with_no_vip_at_all() -> None:
    st = status()
    del st["vip"]
    assert "held by nobody" in rendered(st)


def test_status_table_shows_a_state_it_does_not_know() -> None:
    st = status()
    st["nodes"] = [dict(NODES[1], state="joining")]  # a newer herdd than this herdctl
    assert rows(rendered(st))[0][3] == "joining"


# -- a real control socket -----------------------------------------------------------------------------------

class Server:
    """Answers one connection on a unix socket with a fixed reply, recording the request line."""

    def __init__(self, path: Path, reply: bytes) -> None:
        self.path = path
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(5)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.requests.append(json.loads(data))
            if self.reply:
                conn.sendall(self.reply)
            else:
                self.done.wait(5)  # say nothing until the client gives up

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    path = tmp_path / "h.sock"
    assert len(str(path)) < 100, "unix socket paths are limited to 108 bytes"
    return path


@pytest.fixture
def serve(sock_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(reply: dict[str, Any] | bytes) -> Server:
        data = reply if isinstance(reply, bytes) else json.dumps(reply).encode() + b"\n"
        server = Server(sock_path, data)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_request_ok(serve: Any, sock_path: Path) -> None:
    server = serve({"ok": True, "status": status()})
    reply = request(sock_path, {"cmd": "status"})
    assert reply == {"ok": True, "status": status()}
    assert server.requests == [{"cmd": "status"}]


def test_request_reply_in_pieces(serve: Any, sock_path: Path) -> None:
    big = {"ok": True, "status": status(), "pad": "x" * 200_000}  # larger than one recv()
    serve(big)
    assert request(sock_path, {"cmd": "status"}) == big


def test_request_refused(serve: Any, sock_path: Path) -> None:
    serve({"ok": False, "error": "x"})
    with pytest.raises(CtlError) as info:
        request(sock_path, {"cmd": "drain", "node": "nope"})
    assert str(info.value) == "x"


def test_request_refused_without_a_reason(serve: Any, sock_path: Path) -> None:
    serve({"ok": False})
    with pytest.raises(CtlError, match="herdd refused the request"):
        request(sock_path, {"cmd": "status"})


def test_request_reply_not_json(serve: Any, sock_path: Path) -> None:
    serve(b"<html>\n")
    with pytest.raises(CtlError, match="not JSON"):
        request(sock_path, {"cmd": "status"})


def test_request_no_socket(tmp_path: Path) -> None:
    with pytest.raises(CtlError, match="is herdd running"):
        request(tmp_path / "missing.sock", {"cmd": "status"})


def test_request_nobody_listening(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))  # a socket file left behind, with no listener
    try:
        with pytest.raises(CtlError, match="refused"):
            request(sock_path, {"cmd": "status"})
    finally:
        stale.close()


def test_request_times_out(serve: Any, sock_path: Path) -> None:
    serve(b"")  # reads the request and then says nothing
    with pytest.raises(CtlError, match="timed out"):
        request(sock_path, {"cmd": "status"}, timeout=0.2)


# -- main ----------------------------------------------------------------------------------------------------

def test_main_status_json(serve: Any, sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve({"ok": True, "status": status()})
    assert main(["--socket", str(sock_path), "status", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == status()
    assert err == ""


def test_main_status_table(serve: Any, sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve({"ok": True, "status": status()})
    assert main(["--socket", str(sock_path), "status"]) == 0
    out = capsys.readouterr().out
    for node in NODES:
        assert node["name"] in out


@pytest.mark.parametrize("command", ["drain", "undrain"])
def test_main_drain(serve: Any, sock_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    server = serve({"ok": True})
    assert main(["--socket", str(sock_path), command, "web1"]) == 0
    assert capsys.readouterr().out == f"web1: {command}ed\n"
    assert server.requests == [{"cmd": command, "node": "web1"}]


def test_main_error(serve: Any, sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve({"ok": False, "error": "no node named 'nope' in cluster demo"})
    assert main(["--socket", str(sock_path), "drain", "nope"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "herdctl: no node named 'nope' in cluster demo\n"


def test_main_no_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", str(tmp_path / "none.sock"), "status"]) == 1
    assert "is herdd running" in capsys.readouterr().err


def test_main_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def storage_status() -> dict[str, Any]:
    from herd.daemon.drbd import Report

    return {"address": "192.168.50.30", "server": "nfs1", "nodes": {
        "nfs1": Report("Primary", "SyncSource", "UpToDate", "Inconsistent", "Secondary", sync=17.7,
                       serving=True).to_json(),
        "nfs2": Report("Secondary", "SyncTarget", "Inconsistent", "UpToDate", "Primary", sync=17.7,
                       waiting="this disk is Inconsistent, 17.7 % synced").to_json(),
    }}


def test_storage_lines_show_each_nfs_node_and_the_sync() -> None:
    from herd.ctl import storage_lines

    lines = [str(line) for line in storage_lines(storage_status())]
    assert lines == [
        "storage — docroot on DRBD, NFS at 192.168.50.30 served by nfs1",
        "  nfs1: primary, SyncSource, disk UpToDate/Inconsistent, synced 17.7 %",
        "  nfs2: secondary, SyncTarget, disk Inconsistent/UpToDate, synced 17.7 % — this disk is Inconsistent, "
        "17.7 % synced",
    ]
    nobody = dict(storage_status(), server=None, nodes={"nfs1": None})
    assert [str(line) for line in storage_lines(nobody)] == [
        "storage — docroot on DRBD, NFS at 192.168.50.30 served by nobody", "  nfs1: not heard from"]


def test_main_status_prints_the_storage(serve: Any, sock_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve({"ok": True, "status": dict(status(), storage=storage_status())})
    assert main(["--socket", str(sock_path), "status"]) == 0
    assert "NFS at 192.168.50.30 served by nfs1" in capsys.readouterr().out


@pytest.mark.parametrize(("fence", "code"), [(True, 5), (False, 1)])
def test_fence_peer_exit_codes_are_drbds(serve: Any, sock_path: Path, fence: bool, code: int) -> None:
    serve({"ok": True, "fence": fence})
    assert main(["--socket", str(sock_path), "fence-peer"]) == code


def test_fence_peer_without_herdd_refuses(sock_path: Path) -> None:
    assert main(["--socket", str(sock_path), "fence-peer"]) == 1  # nobody to vouch for the peer: not outdated


def test_a_replicating_standby_shows_nfsd_standby_not_down() -> None:
    from herd.ctl import health_text

    assert health_text({"nfsd": 0, "drbd": {"serving": False}}) == "nfsd standby"
    assert health_text({"nfsd": 0, "drbd": {"serving": True}}) == "nfsd DOWN"
    assert health_text({"nfsd": 0}) == "nfsd DOWN"
    assert health_text({"nfsd": 8, "drbd": {"serving": True}}) == "nfsd 8 threads"
