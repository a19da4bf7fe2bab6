"""The asyncio glue's core, where the pure parts meet sockets and the clock: UDP heartbeats in and out, the
membership and election ticker, the VIP, health sampling, the control socket (herdctl), the metrics endpoint
and the systemd watchdog. The role-specific glue hangs off it: balancer.py (directors), rolelink.py,
sitelink.py and storagelink.py."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from herd.daemon import bounds, drbd, health, linklocal, metrics, netconfig, ratelimit, roles, vip, wire
from herd.daemon.balancer import Balancer
from herd.daemon.claim import SlotTable
from herd.daemon.election import AcquireVip, AnnounceVip, Effect, Election, ReleaseVip
from herd.daemon.membership import DrainChanged, Event, Membership, Paused, PeerDown, PeerUp
from herd.daemon.metricsserver import MetricsServer
from herd.daemon.notify import sd_notify
from herd.daemon.rolelink import RoleLink
from herd.daemon.sitelink import SiteLink
from herd.daemon.state import StateDir
from herd.daemon.storagelink import StorageLink
from herd.daemon.wire import (
    KIND_CLAIM,
    KIND_GRANT,
    KIND_HEARTBEAT,
    KIND_PROVE,
    KIND_RELEASE,
    KIND_STALE,
    Drop,
    Echoers,
    Message,
    ReplayGuard,
    admit_box,
    admit_peer,
    decode,
    encode,
    proves_fresh,
)
from herd.release import installed as installed_release
from herd.spec import Node, Role, Spec

log = logging.getLogger("herdd")
HEALTH_EVERY = 2.0
NETWORK_EVERY = 10.0
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
            msg = decode(data, d.spec.name, d.config.key, admit_box((KIND_CLAIM, KIND_RELEASE)))
            d.check_fresh(msg, addr, self.transport)
            p = msg.payload
            slot, mac, round_id, role = p.get("slot"), p.get("mac"), p.get("round"), p.get("role")
            # The sender is `mac:` and a well-formed unicast MAC (admit_box): so is `mac`, which goes to
            # slots.json and the console.
            if not all(isinstance(v, str) for v in (slot, mac, round_id, role)) or msg.sender != f"mac:{mac}":
                raise Drop("malformed")
            d.echoers.check(msg)  # a box that has echoed `seen` always does: one without is an old capture
        except Drop as drop:
            d.dropped[drop.reason] += 1
            return
        assert isinstance(slot, str) and isinstance(mac, str) and isinstance(round_id, str) and isinstance(role, str)
        if not proves_fresh(msg, d.me.name, d.config.generation):
            # It may be one captured before this node started (its replay guard is in memory): the claimer is
            # asked to say it again with this node's generation, which the answer's header carries.
            d.dropped["unproven"] += 1
            if d.may_answer("prove", addr):
                of = "release" if msg.kind == KIND_RELEASE else "claim"
                self.send(KIND_PROVE, {"to": msg.sender, "of": of, "slot": slot, "round": round_id}, addr)
            return
        d.guard.accept(msg)
        d.learn_echoer(msg)
        if msg.kind == KIND_RELEASE:
            if d.slots.release(slot, mac, round_id):
                d.persist("slots.json", d.slots.to_json())
            return
        held = d.slots.bindings.get(slot)
        holder: str | None
        in_use = slot == d.me.name or (slot in d.address_of and d.membership.peers[slot].alive)
        if in_use and (held is None or held.mac != mac):
            # A node is running as that slot (one claimed before this node kept records): not free.
            granted, holder, changed = False, held.mac if held else "", False
        else:
            granted, holder, changed = d.slots.claim(slot, mac, round_id, role)
        if granted and changed:
            print(f"herd: granted slot {slot} to {mac}", flush=True)
        payload = {"slot": slot, "round": round_id, "granted": granted, "holder": holder}
        if changed:
            # On disk before the answer: a grant must survive this node's restart.
            d.persist("slots.json", d.slots.to_json(), then=lambda: self.send(KIND_GRANT, payload, addr))
        else:
            self.send(KIND_GRANT, payload, addr)

    def send(self, kind: int, payload: dict[str, Any], addr: tuple[Any, ...]) -> None:
        d = self.daemon
        d.seq += 1
        reply = Message(kind, d.me.name, d.config.generation, d.seq, payload)
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
        self.proven: set[str] = set()  # senders with a heartbeat taken since this node started
        self.stale_sent: dict[str, float] = {}  # sender: when it was last told its generation is behind
        self.answers = ratelimit.answers()  # PROVE and STALE: each source address gets its share (may_answer)
        self.generations: dict[str, int] = {}  # sender: the highest generation of an authentic message of its
        self.echoers = Echoers.from_json(config.state.load_json("echoes.json"))  # who sends `seen` (wire.py)
        self.seq = 0
        self.left_out: list[str] = []  # drain registers the last heartbeat had no room for
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
        self.disk_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="disk")  # in order
        self.vip_iface: str | None = None
        self.is_director = self.me.role == Role.DIRECTOR
        # Directors: health checks, IPVS and its connection sync; every node: what its role needs beyond this.
        self.balancer = Balancer(self) if self.is_director else None
        self.rolelink = RoleLink(self)
        # Off-site failover: the backup site's directors; the VIP holder among them probes and updates DNS.
        self.site = SiteLink(self) if self.is_director and SiteLink.wanted(self.spec) else None
        # Two nfs nodes: the docroot on DRBD, served by one of them from the NFS service address.
        self.storage = StorageLink(self) if config.manage_roles and StorageLink.wanted(self.spec, self.me.role) \
            else None
        # Every node of a spec with replicated storage passes on the highest storage term it has heard of, so
        # the cluster remembers who served last even while that nfs node is away (herd.daemon.storage).
        saved = config.state.load_json("storage_term.json") or {}
        self.storage_term = saved["term"] if bounds.counter(saved.get("term")) else 0
        self.saved_storage_term = self.storage_term

    # -- UDP --------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            # Kind, sender and source address are checked before the HMAC: a flood of forgeries costs little.
            msg = decode(data, self.spec.name, self.config.key,
                         admit_peer((KIND_HEARTBEAT, KIND_STALE), self.address_of, self.me.name, str(addr[0])))
            # Echoed in this node's heartbeats: the highest, so a replayed older one changes nothing.
            self.generations[msg.sender] = max(msg.generation, self.generations.get(msg.sender, 0))
            self.check_fresh(msg, addr, self.transport)
            if msg.kind == KIND_HEARTBEAT and msg.sender not in self.proven \
                    and not proves_fresh(msg, self.me.name, self.config.generation):
                # The first heartbeat since this node started: without the proof it may be one captured before.
                # (Only a proven heartbeat lets the guard alone judge the next: a STALE needs no proof, so one
                # replayed must not vouch for the heartbeats captured with it.)
                raise Drop("unproven")
            if msg.kind == KIND_HEARTBEAT:
                self.echoers.check(msg)  # without `seen` from a sender that sends it: captured from an older herdd
        except Drop as drop:
            self.dropped[drop.reason] += 1
            return
        except Exception:  # never let a packet crash the daemon
            log.exception("unexpected error decoding a packet")
            self.dropped["malformed"] += 1
            return
        self.guard.accept(msg)
        if msg.kind == KIND_STALE:
            self.stale_heard(msg)
            return
        self.proven.add(msg.sender)
        self.learn_echoer(msg)
        self.counters["received"] += 1
        payload, refused = bounds.heartbeat(msg.payload, self.storage_term)
        for field in refused:
            self.counters[f"refused_{field}"] += 1
        self.report(self.membership.heard(dataclasses.replace(msg, payload=payload), self.clock()))

    def learn_echoer(self, msg: Message) -> None:
        """A sender seen to echo `seen` for the first time: on disk, so that after a restart this node still
        drops its messages without it (Echoers)."""
        if self.echoers.learn(msg):
            self.persist("echoes.json", self.echoers.to_json())

    def check_fresh(self, msg: Message, addr: tuple[Any, ...], transport: asyncio.DatagramTransport | None) -> None:
        """The replay guard; a sender behind a generation seen from it before (reflashed, its clock behind)
        is told which, at most once a second, so that it moves past it instead of being ignored for good."""
        seen = self.guard.behind(msg)
        if seen is not None and msg.kind != KIND_STALE and transport is not None:
            now = self.clock()
            if now - self.stale_sent.get(msg.sender, -1.0) >= 1.0 and self.may_answer("stale", addr):
                self.stale_sent[msg.sender] = now
                self.seq += 1
                notice = Message(KIND_STALE, self.me.name, self.config.generation, self.seq,
                                 {"to": msg.sender, "seen": seen})
                transport.sendto(encode(notice, self.spec.name, self.config.key), addr)
        self.guard.check(msg)

    def may_answer(self, kind: str, addr: tuple[Any, ...]) -> bool:
        """Whether a PROVE or STALE (`kind`) may go to addr now, the source of a message not taken: each source
        gets its share (herd.daemon.ratelimit), so that one played back from a spoofed address does not have
        every node that hears it flood that address. Answers held back are counted."""
        if self.answers.allow(ratelimit.source_of(addr), self.clock()):
            return True
        self.counters[f"answers_limited_{kind}"] += 1
        return False

    def stale_heard(self, msg: Message) -> None:
        seen = msg.payload.get("seen")
        # Only a generation above this node's own is news: a peer answering one of this node's heartbeats
        # replayed from before it restarted names the generation it runs as now.
        if msg.payload.get("to") != self.me.name or not isinstance(seen, int) or isinstance(seen, bool) \
                or seen <= self.config.generation:
            return
        old, self.config.generation = self.config.generation, self.config.state.raise_generation(seen)
        print(f"herd: {msg.sender} had seen generation {seen} from this node, which started as {old} "
              f"(is the clock behind?): now {self.config.generation}", flush=True)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable from a dead peer's address: expected while it is down.
        self.counters["send_errors"] += 1

    def send_heartbeat(self) -> None:
        if self.transport is None:
            return
        if self.spec.replicated_storage:
            self.pass_on_storage_term()
            # Whom this node hears: a standby nfs node takes over from a silent server only once no one does.
            self.health["hears"] = sorted(self.membership.alive() - {self.me.name})
        now, health = self.clock(), self.health
        if self.storage is not None and isinstance(drbd := health.get("drbd"), dict):
            health = {**health, "drbd": self.storage.machine.heartbeat_report(drbd, now)}
        self.seq += 1
        msg = Message(KIND_HEARTBEAT, self.me.name, self.config.generation, self.seq,
                      self.membership.payload(health, self.election.claims(now), self.election.quorate,
                                              self.generations))
        payload, left_out = self.membership.fitted(
            msg.payload, lambda p: wire.size(dataclasses.replace(msg, payload=p)) <= wire.MAX_SIZE)
        if left_out:
            msg = dataclasses.replace(msg, payload=payload)
            self.counters["admin_left_out"] += len(left_out)
        if left_out != self.left_out:  # said when it changes, not at every beat
            if left_out:
                log.warning("heartbeats too big for the wire: drain registers of %s left out", ", ".join(left_out))
            else:
                log.warning("heartbeats carry every drain register again")
            self.left_out = left_out
        data = encode(msg, self.spec.name, self.config.key)
        for peer in self.peers:
            self.transport.sendto(data, peer)
            self.counters["sent"] += 1

    def pass_on_storage_term(self) -> None:
        heard = [t for p in self.membership.peers.values() if p.alive
                 and isinstance(t := p.health.get("storage_term"), int) and not isinstance(t, bool)]
        self.storage_term = max([self.storage_term, *heard])
        self.health["storage_term"] = self.storage_term
        if self.storage_term != self.saved_storage_term:
            self.persist("storage_term.json", {"term": self.storage_term})
            self.saved_storage_term = self.storage_term

    def persist(self, name: str, data: Any, then: Callable[[], None] | None = None) -> None:
        """Save state on the disk thread, then (once it is on disk) call `then` on the event loop: an fsync on
        a busy USB stick can take longer than a deadtime, and the heartbeats must not wait for it."""
        loop = asyncio.get_running_loop() if then is not None else None

        def save() -> None:
            self.config.state.save_json(name, data)
            if then is not None and loop is not None:
                loop.call_soon_threadsafe(then)

        self.disk_thread.submit(save).add_done_callback(_log_failure(f"saving {name}"))

    def report(self, events: list[Event]) -> None:
        for event in events:
            match event:
                case PeerUp(name):
                    print(f"herd: {name} is alive", flush=True)
                case PeerDown(name, silent):
                    print(f"herd: {name} is dead (silent for {silent * 1000:.0f} ms)", flush=True)
                    if self.spec.replicated_storage:
                        self.send_heartbeat()  # the standby nfs node waits for everyone's verdict: spread it now
                case Paused(seconds):
                    self.counters["pauses"] += 1
                    log.info("paused for %.0f ms: reading what is queued before judging anyone", seconds * 1000)
                case DrainChanged(name, drained):
                    print(f"herd: {name} {'drained' if drained else 'undrained'}", flush=True)
                    if self.balancer is not None:
                        self.balancer.reconcile_ipvs()

    # -- periodic work ----------------------------------------------------------------------------------
    async def every(self, seconds: float, action: Callable[[], object]) -> None:
        """Run action on a fixed beat that does not drift with the time the action takes."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        failing: str | None = None  # the last error, logged once while it repeats (a tick is interval / 4)
        while True:
            try:
                action()
                failing = None
            except Exception as exc:  # one bad beat must not end the task: the watchdog would not notice
                self.counters["task_errors"] += 1
                if repr(exc) != failing:
                    log.exception("%s failed; it runs again at the next beat", getattr(action, "__name__", action))
                    failing = repr(exc)
            next_at += seconds
            delay = next_at - loop.time()
            if delay < 0:  # we fell behind (suspended, overloaded): skip the missed beats
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def tick(self) -> None:
        now = self.clock()
        self.report(self.membership.tick(now))
        for effect in self.election.tick(now, self.membership.peers, self.membership.settling(now)):
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
        future.add_done_callback(_log_failure("netlink"))
        return future

    def apply_vip(self, effect: Effect) -> concurrent.futures.Future[object] | None:
        address = str(self.spec.network.vip)
        if isinstance(effect, AnnounceVip):
            print(f"herd: {self.me.name} announces the VIP {address} again ({effect.rival} let go of it)",
                  flush=True)
            self.announce_vip()
            return None
        done = None
        if self.vip_iface is not None:
            iface, prefix, present = self.vip_iface, self.spec.network.subnet.prefixlen, isinstance(effect, AcquireVip)
            done = self.netlink(lambda ipr: vip.set_vip(ipr, iface, address, prefix, present))
        if self.balancer is not None:
            self.balancer.sync_daemon(master=isinstance(effect, AcquireVip))
        if isinstance(effect, AcquireVip):
            print(f"herd: {self.me.name} takes the VIP {address}", flush=True)
            self.announce_vip()
        else:
            print(f"herd: {self.me.name} releases the VIP {address} ({effect.reason})", flush=True)
        self.send_heartbeat()  # tell the others now, not at the next beat
        return done

    def repair_network(self) -> None:
        """The node's own address and default route, as set up at start, put back if something took them away
        (they are what every heartbeat and replication link rides on)."""
        address = ipaddress.IPv4Interface(f"{self.me.address}/{self.spec.network.subnet.prefixlen}")
        gateway = self.spec.network.gateway

        def repair(ipr: Any) -> None:
            for op in netconfig.reconcile(address, gateway):
                print(f"herd: network repaired: {op}", flush=True)

        self.netlink(repair)

    def announce_vip(self) -> None:
        loop = asyncio.get_running_loop()
        for delay in vip.GARP_SCHEDULE:
            loop.call_later(delay, self.garp)

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
            kept: dict[str, Any] = {k: self.health[k] for k in ("drbd", "storage_term", "hears") if k in self.health}
            self.health = health.sample()
            self.health.update(kept)
            if self.config.manage_roles:
                self.health.update(roles.role_health(self.me.role.value))
            if self.rolelink.galera_report is not None:
                self.health["galera"] = self.rolelink.galera_report.to_json()
            if self.rolelink.garbd:
                self.health["garbd"] = self.rolelink.garbd_active
        except OSError:
            log.exception("health sampling failed")

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
            "services": self.balancer.services_status() if self.balancer else [],
            "ipvs": self.balancer.ipvs_state if self.balancer else None,
            "galera": self.rolelink.galera_decision or None,
            "site": self.site_status(now),
            "storage": self.storage_status(),
            "counters": {**self.counters, **{f"refused_{k}": v for k, v in self.membership.refused.items()}},
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

    def metrics_refused(self, reason: str) -> None:
        self.counters[reason] += 1

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
            linklocal.listen(self.claims, self.spec.membership.port, self.dropped)  # on-link senders only
        except OSError as exc:
            log.warning("no IPv6 (%s): boxes without a MAC in the spec cannot claim a slot through this node", exc)
        path = self.config.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        control = await asyncio.start_unix_server(self.handle_control, path=str(path), limit=CONTROL_LIMIT)
        os.chmod(path, 0o600)
        servers: list[asyncio.AbstractServer] = [control]
        metrics_server = MetricsServer(
            lambda: metrics.render(self.status(), dict(self.counters), dict(self.dropped)),
            self.spec.membership.metrics_allow or (self.spec.network.subnet,), self.metrics_refused)
        if self.config.metrics_port:
            await metrics_server.start(bind, self.config.metrics_port)
        interval = self.spec.membership.interval_ms / 1000
        tasks = [
            asyncio.create_task(self.every(interval, self.send_heartbeat)),
            asyncio.create_task(self.every(interval / 4, self.tick)),
            asyncio.create_task(self.every(HEALTH_EVERY, self.sample_health)),
        ]
        if self.config.manage_roles:
            tasks.append(asyncio.create_task(self.rolelink.run()))
            tasks.append(asyncio.create_task(self.every(NETWORK_EVERY, self.repair_network)))
        if self.site is not None:
            tasks.append(asyncio.create_task(self.site.run()))
        if self.balancer is not None:
            tasks += self.balancer.start()
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
            metrics_server.close()
            if self.transport is not None:
                self.transport.close()
            if self.claims.transport is not None:
                self.claims.transport.close()
            if self.election.holding:
                self.election.holding = False
                released = self.apply_vip(ReleaseVip("stopping"))
                if released is not None:
                    await asyncio.wrap_future(released)
            if self.balancer is not None and self.balancer.ipvs is not None:
                table = self.balancer.ipvs
                self.netlink(lambda ipr: table.close())
            if self.ipr is not None:
                self.netlink(lambda ipr: ipr.close())
            self.netlink_thread.shutdown(wait=True)
            self.disk_thread.shutdown(wait=True)
            path.unlink(missing_ok=True)


def _log_failure(what: str) -> Callable[[concurrent.futures.Future[Any]], None]:
    def log_it(future: concurrent.futures.Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("%s: %s", what, exc, exc_info=exc)
    return log_it
