"""The asyncio glue, the only place where the pure parts meet sockets and the clock: UDP heartbeats in and
out, the membership ticker, health sampling, the control socket (herdctl), the metrics endpoint and the
systemd watchdog."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from herd.daemon import drbd, galera, health, ipvs, mariadb, metrics, roles, vip
from herd.daemon.checks import PROBES, CheckState
from herd.daemon.claim import SlotTable
from herd.daemon.election import AcquireVip, Election, ReleaseVip
from herd.daemon.membership import DrainChanged, Event, Membership, PeerDown, PeerUp
from herd.daemon.notify import sd_notify
from herd.daemon.sitelink import SiteLink
from herd.daemon.state import StateDir
from herd.daemon.storagelink import StorageLink
from herd.daemon.wire import (
    KIND_CLAIM,
    KIND_GRANT,
    KIND_HEARTBEAT,
    KIND_RELEASE,
    Drop,
    Message,
    ReplayGuard,
    decode,
    encode,
)
from herd.release import installed as installed_release
from herd.secrets import db_password
from herd.spec import Node, Role, Spec

log = logging.getLogger("herdd")
HEALTH_EVERY = 2.0
CONTROL_LIMIT = 64 * 1024


@dataclass
class Config:
    spec: Spec
    me: Node
    key: bytes
    generation: int
    socket_path: Path
    metrics_port: int | None
    state: StateDir
    manage_roles: bool = False  # set up the role's engines (not under --sandbox: tests share the host)


class ClaimServer(asyncio.DatagramProtocol):
    """Answers slot claims from boxes not yet identified, over IPv6 link-local (they have no IPv4 address)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        d = self.daemon
        try:
            msg = decode(data, d.spec.name, d.config.key)
            if msg.kind not in (KIND_CLAIM, KIND_RELEASE) or not msg.sender.startswith("mac:"):
                raise Drop("unknown-sender")
            d.guard.check(msg)
            p = msg.payload
            slot, mac, round_id, role = p.get("slot"), p.get("mac"), p.get("round"), p.get("role")
            if not all(isinstance(v, str) for v in (slot, mac, round_id, role)) or msg.sender != f"mac:{mac}":
                raise Drop("malformed")
        except Drop as drop:
            d.dropped[drop.reason] += 1
            return
        d.guard.accept(msg)
        assert isinstance(slot, str) and isinstance(mac, str) and isinstance(round_id, str) and isinstance(role, str)
        if msg.kind == KIND_RELEASE:
            if d.slots.release(slot, mac, round_id):
                d.config.state.save_json("slots.json", d.slots.to_json())
            return
        held = d.slots.bindings.get(slot)
        holder: str | None
        in_use = slot == d.me.name or (slot in d.address_of and d.membership.peers[slot].alive)
        if in_use and (held is None or held.mac != mac):
            # A node is running as that slot (one claimed before this node kept records): not free.
            granted, holder, changed = False, held.mac if held else "", False
        else:
            granted, holder, changed = d.slots.claim(slot, mac, round_id, role)
        if changed:
            # On disk before the answer: a grant must survive this node's restart.
            d.config.state.save_json("slots.json", d.slots.to_json())
        if granted and changed:
            print(f"herd: granted slot {slot} to {mac}", flush=True)
        d.seq += 1
        reply = Message(KIND_GRANT, d.me.name, d.config.generation, d.seq,
                        {"slot": slot, "round": round_id, "granted": granted, "holder": holder})
        if self.transport is not None:
            self.transport.sendto(encode(reply, d.spec.name, d.config.key), addr)


class Daemon(asyncio.DatagramProtocol):
    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.spec = config.spec
        self.me = config.me
        self.clock = clock
        self.membership = Membership(self.spec, self.me.name, clock())
        self.guard = ReplayGuard()
        self.seq = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.health: dict[str, Any] = health.sample()
        self.transport: asyncio.DatagramTransport | None = None
        self.stopping = asyncio.Event()
        self.peers = [(str(n.address), self.spec.membership.port) for n in self.spec.nodes if n.name != self.me.name]
        self.address_of = {n.name: str(n.address) for n in self.spec.nodes}
        self.slots = SlotTable(self.spec, SlotTable.from_json(config.state.load_json("slots.json")))
        self.claims = ClaimServer(self)
        self.election = Election(self.spec, self.me.name, clock(), preempt=self.spec.network.preempt)
        self.ipr: Any = None  # pyroute2 IPRoute, made and used on netlink_thread only
        self.netlink_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")
        self.vip_iface: str | None = None
        self.is_director = self.me.role == Role.DIRECTOR
        self.checks = {(svc.name, n.name): CheckState(svc.check.rise, svc.check.fall)
                       for svc in self.spec.services for n in self.spec.nodes_of(Role.WEB)} if self.is_director else {}
        self.ipvs: ipvs.IpvsTable | None = None
        self.ipvs_state = "not started"
        self.sync_wanted: str | None = None  # the IPVS sync daemon this director should run: master or backup
        self.db_names = [n.name for n in self.spec.nodes_of(Role.DB)]
        self.galera = len(self.db_names) > 1  # 2+ db nodes: MariaDB is a Galera cluster that herdd starts
        self.galera_report: galera.Report | None = None
        self.galera_decision = ""
        # An arbitrator on the directors when the db nodes are even in number, so half of them is no tie.
        self.garbd = self.is_director and self.galera and len(self.db_names) % 2 == 0
        self.garbd_active = False
        self.db_host: str | None = None  # web: the db node the pages use now
        # Off-site failover: the backup site's directors; the VIP holder among them probes and updates DNS.
        self.site = SiteLink(self) if self.is_director and SiteLink.wanted(self.spec) else None
        # Two nfs nodes: the docroot on DRBD, served by one of them from the NFS service address.
        self.storage = StorageLink(self) if config.manage_roles and StorageLink.wanted(self.spec, self.me.role) \
            else None

    # -- UDP --------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            msg = decode(data, self.spec.name, self.config.key)
            if msg.sender not in self.address_of or msg.sender == self.me.name:
                raise Drop("unknown-sender")
            if addr[0] != self.address_of[msg.sender]:
                raise Drop("spoofed-source")
            self.guard.check(msg)
        except Drop as drop:
            self.dropped[drop.reason] += 1
            return
        except Exception:  # never let a packet crash the daemon
            log.exception("unexpected error decoding a packet")
            self.dropped["malformed"] += 1
            return
        self.guard.accept(msg)
        self.counters["received"] += 1
        self.report(self.membership.heard(msg, self.clock()))

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable from a dead peer's address: expected while it is down.
        self.counters["send_errors"] += 1

    def send_heartbeat(self) -> None:
        if self.transport is None:
            return
        self.seq += 1
        msg = Message(KIND_HEARTBEAT, self.me.name, self.config.generation, self.seq,
                      self.membership.payload(self.health, self.election.holding))
        data = encode(msg, self.spec.name, self.config.key)
        for peer in self.peers:
            self.transport.sendto(data, peer)
            self.counters["sent"] += 1

    def report(self, events: list[Event]) -> None:
        for event in events:
            match event:
                case PeerUp(name):
                    print(f"herd: {name} is alive", flush=True)
                case PeerDown(name, silent):
                    print(f"herd: {name} is dead (silent for {silent * 1000:.0f} ms)", flush=True)
                case DrainChanged(name, drained):
                    print(f"herd: {name} {'drained' if drained else 'undrained'}", flush=True)
                    self.reconcile_ipvs()

    # -- periodic work ----------------------------------------------------------------------------------
    async def every(self, seconds: float, action: Callable[[], object]) -> None:
        """Run action on a fixed beat that does not drift with the time the action takes."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            action()
            next_at += seconds
            delay = next_at - loop.time()
            if delay < 0:  # we fell behind (suspended, overloaded): skip the missed beats
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def tick(self) -> None:
        now = self.clock()
        self.report(self.membership.tick(now))
        for effect in self.election.tick(now, self.membership.peers):
            self.apply_vip(effect)
        if self.site is not None:
            self.site.tick(now)

    def netlink(self, call: Callable[[Any], object]) -> concurrent.futures.Future[object]:
        """Run call(ipr) on the netlink thread: pyroute2's IPRoute runs an event loop of its own, so it lives
        in one thread of its own, and its calls are done there, in order."""

        def run() -> object:
            if self.ipr is None:
                from pyroute2 import IPRoute

                self.ipr = IPRoute()
            return call(self.ipr)

        future = self.netlink_thread.submit(run)
        future.add_done_callback(_log_failure)
        return future

    def apply_vip(self, effect: AcquireVip | ReleaseVip) -> concurrent.futures.Future[object] | None:
        address = str(self.spec.network.vip)
        done = None
        if self.vip_iface is not None:
            iface, prefix, present = self.vip_iface, self.spec.network.subnet.prefixlen, isinstance(effect, AcquireVip)
            done = self.netlink(lambda ipr: vip.set_vip(ipr, iface, address, prefix, present))
        self.sync_daemon(master=isinstance(effect, AcquireVip))
        if isinstance(effect, AcquireVip):
            print(f"herd: {self.me.name} takes the VIP {address}", flush=True)
            loop = asyncio.get_running_loop()
            for delay in vip.GARP_SCHEDULE:
                loop.call_later(delay, self.garp)
        else:
            print(f"herd: {self.me.name} releases the VIP {address} ({effect.reason})", flush=True)
        self.send_heartbeat()  # tell the others now, not at the next beat
        return done

    def garp(self) -> None:
        if self.vip_iface is None or not self.election.holding:
            return
        try:
            vip.send_garp(self.vip_iface, str(self.spec.network.vip))
            self.counters["garp_sent"] += 1
        except OSError as exc:
            log.warning("gratuitous ARP on %s failed: %s", self.vip_iface, exc)

    def sample_health(self) -> None:
        try:
            drbd = self.health.get("drbd")  # the storage link keeps it current at every beat
            self.health = health.sample()
            if drbd is not None:
                self.health["drbd"] = drbd
            if self.config.manage_roles:
                self.health.update(roles.role_health(self.me.role.value))
            if self.galera_report is not None:
                self.health["galera"] = self.galera_report.to_json()
            if self.garbd:
                self.health["garbd"] = self.garbd_active
        except OSError:
            log.exception("health sampling failed")

    # -- roles --------------------------------------------------------------------------------------------
    def databases(self) -> list[tuple[str, str, str]]:
        return [(d.name, d.user, db_password(self.config.key, d.user)) for d in self.spec.databases]

    async def db_setup(self) -> None:
        """Create the spec's databases and users once MariaDB is up; retried until it is."""
        if not self.spec.databases:
            return
        sql = roles.database_sql(self.databases(), str(self.spec.network.subnet))
        last = None
        while True:
            error = await asyncio.to_thread(roles.apply_database_sql, sql)
            if error is None:
                print(f"herd: databases ready: {', '.join(d.name for d in self.spec.databases)}", flush=True)
                return
            if error != last:
                print(f"herd: databases not ready yet: {error}", flush=True)
                last = error
            await asyncio.sleep(2)

    def db_serving(self, name: str) -> bool:
        """Does this db node take queries, by its last heartbeat?"""
        health = self.membership.peers[name].health
        if self.galera:
            report = galera.Report.from_json(health.get("galera"))
            return report is not None and report.running and report.primary
        return health.get("mariadb") is True

    async def web_db_config(self) -> None:
        """Point the pages (/etc/herd/db.php) at a db node that serves: the first one until it has heard
        from any, then the one pick_db_host chooses, rewritten only when that changes."""
        if not self.db_names or not self.spec.databases:
            return
        alive = self.membership.alive()
        serving = {n: self.db_serving(n) for n in self.db_names}
        chosen = galera.pick_db_host(self.db_names, alive, serving, self.db_host)
        if chosen is None:
            if self.db_host is not None:
                return  # keep the last good choice: nothing better to offer
            chosen = self.db_names[0]
        elif chosen != self.db_host and self.db_host is not None:
            print(f"herd: pages now use database node {chosen}", flush=True)
        address = self.address_of[chosen]
        text = roles.php_db_config(address, self.databases())
        await asyncio.to_thread(roles.write_web_db_config, text)
        if serving.get(chosen):
            self.db_host = chosen

    async def galera_loop(self) -> None:
        """Start this db node's MariaDB when galera.decide says so, and create the spec's databases once it is
        primary. MariaDB's own unit is disabled in the image: herdd alone decides when it starts."""
        probe = mariadb.Probe()
        await asyncio.to_thread(mariadb.write_node_conf, self.me.name, self.address_of[self.me.name])
        databases_ready = False
        while True:
            try:
                self.galera_report = await asyncio.to_thread(probe.read)
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"herd: galera: cannot read the local state: {exc}", flush=True)
                await asyncio.sleep(5)
                continue
            reports = {n: galera.Report.from_json(self.membership.peers[n].health.get("galera"))
                       for n in self.db_names if n != self.me.name}
            reports[self.me.name] = self.galera_report
            decision = galera.decide(self.me.name, self.db_names, reports, self.membership.alive())
            text = f"{decision.action}: {decision.reason}"
            if probe.error:
                text += f" (recovery: {probe.error})"
            if text != self.galera_decision:
                print(f"herd: galera: {text}", flush=True)
                self.galera_decision = text
            if decision.action in (galera.Action.BOOTSTRAP, galera.Action.JOIN):
                self.galera_report = galera.Report(running=True, primary=False)  # tell the others: starting
                self.sample_health()
                self.send_heartbeat()
                error = await asyncio.to_thread(mariadb.start, decision.action == galera.Action.BOOTSTRAP)
                print(f"herd: galera: {decision.action} {'failed: ' + error if error else 'done'}", flush=True)
                continue
            if self.galera_report.primary and not databases_ready:
                await self.db_setup()
                databases_ready = True
            await asyncio.sleep(2)

    async def garbd_loop(self) -> None:
        """Directors run the Galera arbitrator, started once a db node is primary (garbd joins a running
        cluster; it cannot make one), and again whenever it has stopped."""
        while True:
            self.garbd_active = await asyncio.to_thread(mariadb.unit_active, "garb.service")
            if not self.garbd_active and any(self.db_serving(n) for n in self.db_names
                                             if self.membership.peers[n].alive):
                r = await asyncio.to_thread(subprocess.run, ["systemctl", "start", "garb.service"],
                                            capture_output=True, text=True, timeout=300)
                print(f"herd: garbd {'started' if r.returncode == 0 else 'failed: ' + r.stderr.strip()}",
                      flush=True)
            await asyncio.sleep(5)

    async def role_loop(self) -> None:
        """nfs: export the docroot (seeded with the example site). web: mount it once the nfs node is alive,
        and again whenever it is lost; keep the pages pointed at a db node that serves. db: the databases,
        and with Galera, starting the cluster."""
        nfs_nodes = self.spec.nodes_of(Role.NFS)
        if self.storage is not None:
            await self.storage.run()
            return
        if self.me.role == Role.NFS:
            seeded = await asyncio.to_thread(roles.prepare_export, Path(self.spec.nfs.export))
            print(f"herd: exporting {self.spec.nfs.export}{' (seeded with the example site)' if seeded else ''}",
                  flush=True)
            return
        if self.me.role == Role.DB:
            await (self.galera_loop() if self.galera else self.db_setup())
            return
        if self.garbd:
            await self.garbd_loop()
            return
        if self.me.role != Role.WEB:
            return
        last_error = None
        while True:
            await self.web_db_config()
            server = self.nfs_server(nfs_nodes)
            if server is not None:
                error = await asyncio.to_thread(roles.mount_docroot, server[1], self.spec.nfs.export,
                                                hard=self.spec.replicated_storage)
                if error is None and last_error != "mounted":
                    print(f"herd: docroot mounted from {server[0]}:{self.spec.nfs.export}", flush=True)
                    last_error = "mounted"
                elif error is not None and error != last_error:
                    print(f"herd: cannot mount the docroot yet: {error}", flush=True)
                    last_error = error
            await asyncio.sleep(2)

    def nfs_server(self, nfs_nodes: tuple[Node, ...]) -> tuple[str, str] | None:
        """(who, address) to mount the docroot from, once it is served: the nfs node, or with two of them the
        NFS service address once one says it serves there (its address moves with the service)."""
        if not self.spec.replicated_storage:
            if nfs_nodes and self.membership.peers[nfs_nodes[0].name].alive:
                return nfs_nodes[0].name, str(nfs_nodes[0].address)
            return None
        for node in nfs_nodes:
            peer = self.membership.peers[node.name]
            report = drbd.Report.from_json(peer.health.get("drbd"))
            if peer.alive and report is not None and report.serving:
                return str(self.spec.nfs.address), str(self.spec.nfs.address)
        return None

    # -- load balancing (directors) ----------------------------------------------------------------------
    def weight(self, service: str, node: str) -> int:
        spec_node = self.spec.node_named(node)
        if spec_node is None or self.membership.admin[node].drained or not self.checks[(service, node)].up:
            return 0
        return spec_node.weight

    async def check_loop(self, service: Any, node: Any) -> None:
        state = self.checks[(service.name, node.name)]
        probe = PROBES[service.check.kind]
        while True:
            error = await probe(str(node.address), service.port, service.check)
            if state.record(error):
                print(f"herd: {node.name} is {'up' if state.up else 'down'} for {service.name}"
                      f"{'' if state.up else f' ({error})'}", flush=True)
                self.reconcile_ipvs()
            await asyncio.sleep(service.check.interval)

    def reconcile_ipvs(self) -> None:
        if not self.is_director or self.ipvs_state == "unavailable":
            return
        want = ipvs.desired(self.spec, self.weight)
        vip_address = str(self.spec.network.vip)

        def apply(ipr: Any) -> None:
            if self.ipvs is None:
                try:
                    self.ipvs = ipvs.IpvsTable()
                except Exception as exc:  # no ip_vs module (containers, the netns tests)
                    self.ipvs_state = "unavailable"
                    log.warning("IPVS is not available here (%s): not load balancing", exc)
                    return
            ops = ipvs.plan(want, self.ipvs.read(), vip_address)
            self.ipvs.apply(ops)
            for op in ops:
                log.info("ipvs: %s", op)
            self.ipvs_state = "in sync"

        self.netlink(apply)

    def sync_daemon(self, master: bool | None = None) -> None:
        """The kernel's IPVS connection sync: master on the VIP holder, backup on the standby. With `master`,
        switch to that; without, check that the kernel runs what was last asked and repair it if not (a start
        can fail while the kernel is still stopping the other thread, as when the VIP flaps)."""
        if not self.is_director or self.vip_iface is None or self.ipvs_state == "unavailable":
            return
        if master is not None:
            self.sync_wanted = "master" if master else "backup"
        wanted, iface = self.sync_wanted, self.vip_iface
        if wanted is None:
            return

        def switch(ipr: Any) -> None:
            import shutil

            if shutil.which("ipvsadm") is None:
                return
            running = ipvs.sync_daemons(subprocess.run(["ipvsadm", "-L", "--daemon"], capture_output=True,
                                                       text=True, timeout=30).stdout)
            if running == {wanted}:
                return
            other = "backup" if wanted == "master" else "master"
            if other in running:
                subprocess.run(["ipvsadm", "--stop-daemon", other], capture_output=True, timeout=30)
            if wanted not in running:
                r = subprocess.run(["ipvsadm", "--start-daemon", wanted, "--mcast-interface", iface, "--syncid", "1"],
                                   capture_output=True, text=True, timeout=30)
                if r.returncode != 0:
                    log.warning("ipvs: connection sync %s did not start: %s (retried within 5 s)", wanted,
                                r.stderr.strip())
                    return
            log.info("ipvs: connection sync %s on %s", wanted, iface)

        self.netlink(switch)

    def services_status(self) -> list[dict[str, Any]]:
        out = []
        for svc in self.spec.services:
            servers = []
            for node in self.spec.nodes_of(Role.WEB):
                state = self.checks.get((svc.name, node.name))
                servers.append({
                    "name": node.name, "address": str(node.address),
                    "weight": self.weight(svc.name, node.name) if state else None,
                    "check": None if state is None else ("up" if state.up else "down"),
                    "error": None if state is None else state.last_error,
                })
            out.append({"name": svc.name, "address": str(self.spec.network.vip), "port": svc.port,
                        "protocol": svc.protocol.value, "scheduler": svc.scheduler.value,
                        "forwarding": svc.forwarding.value, "real_servers": servers})
        return out

    # -- status, control, metrics -----------------------------------------------------------------------
    def site_status(self, now: float) -> dict[str, Any] | None:
        site = self.spec.site
        if site is None:
            return None
        out: dict[str, Any] = {"name": site.name, "role": site.role.value, "names": list(site.names),
                               "server": f"{site.server}:{site.port}",
                               "main_addresses": [str(a) for a in site.main], "backup_address": str(site.backup),
                               "failback": site.failback.value, "down_seconds": site.down_seconds,
                               "up_seconds": site.up_seconds}
        if self.site is not None:
            out.update(self.site.machine.status(now))
            out["speaker"] = self.election.holder(self.membership.peers)  # who probes and updates
        return out

    def storage_status(self) -> dict[str, Any] | None:
        """Two nfs nodes: the service address, who serves it, and each one's DRBD state as last heard (every
        node knows them: they ride in the nfs nodes' heartbeats)."""
        if not self.spec.replicated_storage:
            return None
        nodes = {}
        for node in self.spec.nodes_of(Role.NFS):
            peer = self.membership.peers[node.name]
            raw = self.health.get("drbd") if node.name == self.me.name else peer.health.get("drbd")
            report = drbd.Report.from_json(raw)
            nodes[node.name] = None if report is None else report.to_json()
        serving = [n for n, r in nodes.items() if r and r["serving"] and (n == self.me.name
                                                                         or self.membership.peers[n].alive)]
        return {"address": str(self.spec.nfs.address), "server": serving[0] if serving else None, "nodes": nodes}

    def status(self) -> dict[str, Any]:
        now = self.clock()
        nodes = self.membership.view(now)
        for row in nodes:
            if row["name"] == self.me.name:
                row["health"] = self.health
        return {
            "cluster": self.spec.name,
            "self": self.me.name,
            "role": self.me.role.value,
            "release": installed_release(),  # /etc/herd/release, read once; None outside an image
            "generation": self.config.generation,
            "nodes": nodes,
            "vip": {"address": str(self.spec.network.vip), "holder": self.election.holder(self.membership.peers)},
            "services": self.services_status() if self.is_director else [],
            "ipvs": self.ipvs_state if self.is_director else None,
            "galera": self.galera_decision or None,
            "site": self.site_status(now),
            "storage": self.storage_status(),
            "counters": dict(self.counters),
            "dropped": dict(self.dropped),
        }

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        match request:
            case {"cmd": "status"}:
                return {"ok": True, "status": self.status()}
            case {"cmd": "drain" | "undrain" as cmd, "node": str(name)}:
                if name not in self.address_of:
                    return {"ok": False, "error": f"no node named {name!r} in cluster {self.spec.name}"}
                self.report(self.membership.set_drained(name, cmd == "drain"))
                self.send_heartbeat()  # spread it now, not at the next beat
                return {"ok": True}
            case {"cmd": "fence-peer"}:
                if self.storage is None:
                    return {"ok": False, "error": "only the nfs nodes of a spec with two of them replicate storage"}
                return {"ok": True, "fence": self.storage.fence_peer()}
            case {"cmd": "site", "action": "failover" | "failback" as action}:
                if self.site is None:
                    return {"ok": False, "error": "only the directors of a spec with [site] role = \"backup\" move "
                            "the names; run it there, on the VIP holder"}
                return self.site.command(action, self.election.holder(self.membership.peers))
        return {"ok": False, "error": f"unknown request {request!r}"}

    async def handle_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            try:
                request = json.loads(line)
                reply = self.command(request) if isinstance(request, dict) else {"ok": False, "error": "bad request"}
            except ValueError:
                reply = {"ok": False, "error": "request is not JSON"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def handle_metrics(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if path in (b"/metrics", b"/"):
                body = metrics.render(self.status(), dict(self.counters), dict(self.dropped)).encode()
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            else:
                body, head = b"not found\n", b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    # -- main -------------------------------------------------------------------------------------------
    def setup_vip(self, ipr: Any) -> None:
        """Directors start without the VIP (a stale one from a crash is removed: the election decides);
        web nodes take the real-server side of LVS direct routing. Runs on the netlink thread."""
        address = str(self.spec.network.vip)
        if self.me.role == Role.DIRECTOR:
            self.vip_iface = vip.interface_with(ipr, str(self.me.address))
            if self.vip_iface and vip.set_vip(ipr, self.vip_iface, address, self.spec.network.subnet.prefixlen, False):
                log.info("removed a stale VIP from %s", self.vip_iface)
        elif self.me.role == Role.WEB:
            for change in vip.real_server_side(ipr, address):
                log.info("LVS-DR: %s", change)

    async def run(self, bind: str, on_ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.wrap_future(self.netlink(self.setup_vip))
        await loop.create_datagram_endpoint(lambda: self, local_addr=(bind, self.spec.membership.port))
        try:
            await loop.create_datagram_endpoint(lambda: self.claims, sock=ipv6_socket(self.spec.membership.port))
        except OSError as exc:
            log.warning("no IPv6 (%s): boxes without a MAC in the spec cannot claim a slot through this node", exc)
        path = self.config.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        control = await asyncio.start_unix_server(self.handle_control, path=str(path), limit=CONTROL_LIMIT)
        os.chmod(path, 0o600)
        servers: list[asyncio.AbstractServer] = [control]
        if self.config.metrics_port:
            servers.append(await asyncio.start_server(self.handle_metrics, host=bind, port=self.config.metrics_port))
        interval = self.spec.membership.interval_ms / 1000
        tasks = [
            asyncio.create_task(self.every(interval, self.send_heartbeat)),
            asyncio.create_task(self.every(min(interval / 4, 0.05), self.tick)),
            asyncio.create_task(self.every(HEALTH_EVERY, self.sample_health)),
        ]
        if self.config.manage_roles:
            tasks.append(asyncio.create_task(self.role_loop()))
        if self.site is not None:
            tasks.append(asyncio.create_task(self.site.run()))
        if self.is_director:
            self.reconcile_ipvs()
            self.sync_daemon(master=False)
            tasks += [asyncio.create_task(self.check_loop(svc, node))
                      for svc in self.spec.services for node in self.spec.nodes_of(Role.WEB)]
            tasks.append(asyncio.create_task(self.every(5.0, self.reconcile_ipvs)))  # repairs outside edits
            tasks.append(asyncio.create_task(self.every(5.0, self.sync_daemon)))
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if watchdog_usec:
            tasks.append(asyncio.create_task(self.every(watchdog_usec / 2e6, lambda: sd_notify("WATCHDOG=1"))))
        if on_ready is not None:
            on_ready()
        try:
            await self.stopping.wait()
        finally:
            sd_notify("STOPPING=1")
            for task in tasks:
                task.cancel()
            if self.site is not None:
                self.site.cancel()
            if self.storage is not None:
                await self.storage.close()
            for server in servers:
                server.close()
            if self.transport is not None:
                self.transport.close()
            if self.claims.transport is not None:
                self.claims.transport.close()
            if self.election.holding:
                self.election.holding = False
                released = self.apply_vip(ReleaseVip("stopping"))
                if released is not None:
                    await asyncio.wrap_future(released)
            if self.ipvs is not None:
                table = self.ipvs
                self.netlink(lambda ipr: table.close())
            if self.ipr is not None:
                self.netlink(lambda ipr: ipr.close())
            self.netlink_thread.shutdown(wait=True)
            path.unlink(missing_ok=True)


def _log_failure(future: concurrent.futures.Future[object]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("netlink: %s", exc, exc_info=exc)


def ipv6_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
