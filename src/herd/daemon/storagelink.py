"""The asyncio glue of replicated storage, on the two nfs nodes: bring the DRBD disk up, read its state at every
heartbeat (it rides in them), feed the pure Storage machine, and carry out its effects (drbdadm, mounts, the NFS
server, the service address) in a thread of their own, one at a time, in order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd.daemon import drbdctl, roles, vip
from herd.daemon.drbd import Report
from herd.daemon.storage import Connect, CutLink, Demote, Effect, Initialize, Outdate, Promote, Storage
from herd.spec import Role, Spec

if TYPE_CHECKING:
    from herd.daemon.loop import Daemon

log = logging.getLogger("herdd")
SETUP_RETRY = 5.0
POLL_EVERY = 0.1  # seconds at most between two looks at DRBD and the membership
FRESH_EVERY = 2.0  # while the pair has never started: how often to look whether the peer created the disk


class Laps:
    """How long each step of a takeover took, for its log line (and bench/storage.py, which reads it)."""

    def __init__(self, started: float) -> None:
        self.last = started
        self.steps: list[tuple[str, float]] = []

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((step, now - self.last))
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.steps)


class StorageLink:
    @staticmethod
    def wanted(spec: Spec, role: Role) -> bool:
        return role == Role.NFS and spec.replicated_storage

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        spec = daemon.spec
        assert spec.nfs.address is not None
        self.address = str(spec.nfs.address)
        self.prefix = spec.network.subnet.prefixlen
        self.export = Path(spec.nfs.export)
        saved = daemon.config.state.load_json("storage.json") or {}
        term = saved.get("term")
        self.machine = Storage(spec, daemon.me.name, daemon.clock(), victim=saved.get("victim") is True,
                               term=term if isinstance(term, int) else 0)
        # What storage.json is to say (victim, term), as last decided on the event loop; written on the storage
        # thread, which alone writes that file, so the latest values are always the last written.
        self.state: tuple[bool, int] = (self.machine.victim, self.machine.term)
        self.queued: tuple[bool, int] | None = self.state  # the state the last save job queued will write
        self.save_retry_at = 0.0
        # Between forcing the blank disk primary and its filesystem made: a power cut there leaves a disk that is
        # no longer "fresh" to DRBD but holds nothing, and this mark says so.
        self.initializing = saved.get("initializing") is True
        self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="storage")
        self.up = False        # the DRBD resource is attached and connecting
        self.fresh = False     # its metadata was never promoted (read with drbdadm get-gi)
        self.fresh_checked = 0.0
        self.error: str | None = None
        self.iface: str | None = None
        self.local = Report()
        self.peer_host_answered = False  # said once, not at every probe
        self.ready = False  # serving and done: the web nodes may reconnect to the service address now
        self.loop: asyncio.AbstractEventLoop | None = None
        self.running: list[concurrent.futures.Future[None]] = []  # effects handed to the storage thread

    # -- the loop --------------------------------------------------------------------------------------------
    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        me = str(self.daemon.me.address)
        self.iface = await asyncio.wrap_future(self.daemon.netlink(lambda ipr: vip.interface_with(ipr, me)))  # type: ignore[arg-type]
        while not self.up:
            try:
                made = await asyncio.wrap_future(self.worker.submit(self._bring_up))
                print(f"herd: replicated disk up{' (metadata made)' if made else ''}", flush=True)
                self.error = None
            except drbdctl.EngineError as exc:
                if str(exc) != self.error:
                    print(f"herd: replicated disk not up: {exc}", flush=True)
                self.error = str(exc)
                self.poll()
                await asyncio.sleep(SETUP_RETRY)
        # Often, and cheap (/proc/drbd and the pure machine): a takeover or a step-down waits for this beat.
        await self.daemon.every(min(self.daemon.spec.membership.interval_ms / 4000, POLL_EVERY), self.poll)

    def _bring_up(self) -> bool:
        made = drbdctl.bring_up(drbdctl.choose_disk(self.daemon.spec.nfs.disk))
        self.fresh = drbdctl.fresh()
        self.up = True
        return made

    def poll(self) -> None:
        """Read DRBD, decide, act; put the report in the next heartbeats."""
        now = self.daemon.clock()
        was_serving = self.machine.serving
        report = drbdctl.read_report() if self.up else Report()
        self.ready = self.ready and self.machine.serving
        self.local = report.with_(fresh=self.fresh, serving=self.machine.serving, error=self.error, ready=self.ready,
                                  waiting="" if self.machine.serving else self.machine.waiting)
        membership = self.daemon.membership
        effects = self.machine.tick(now, membership.peers, self.local, membership.settling(now)) if self.up else []
        self.running = [f for f in self.running if not f.done()]
        if self.running and self.machine.serving == was_serving:
            # Housekeeping (reconnect, outdate, step down a leftover primary) decided on a state the effects
            # still running are about to change: dropped, the machine asks again in a few seconds. Left
            # queued, a stale one could run after a promotion and undo it.
            effects = []
        # On disk, and on the storage thread (an fsync under the state directory's lock can take longer than a
        # deadtime on a busy stick: not on the event loop). After a reboot this node must still know whether
        # its changes since it stepped down were never acknowledged, and which term its data belongs to. A
        # promotion saves first, in its own job: its term and `victim = False` are on disk before it takes a
        # write, and if they cannot be saved it does not serve. Anything else is saved after its effects:
        # stepping down (dropping the address) must not wait for a disk.
        self.state = (self.machine.victim, self.machine.term)
        for effect in effects:
            serves = isinstance(effect, Initialize | Promote)
            self.running.append(self.worker.submit(self._carry_out, effect, serves))
            if serves:
                self.queued = self.state
        if self.state != self.queued and now >= self.save_retry_at:
            self.queued = self.state
            self.worker.submit(self._save_state)
        self.ready = self.ready and self.machine.serving
        self.local = self.local.with_(serving=self.machine.serving, ready=self.ready,
                                      waiting="" if self.machine.serving else self.machine.waiting)
        self._publish()
        self.daemon.storage_term = self.machine.known_term(self.daemon.membership.peers)
        if self.fresh and self.up and now - self.fresh_checked >= FRESH_EVERY:
            self.fresh_checked = now
            self.worker.submit(self._check_fresh)
        if self.machine.serving != was_serving:
            self.daemon.send_heartbeat()  # tell the others now, not at the next beat

    def _publish(self) -> None:
        """The DRBD report for the next heartbeats, with the term of this disk's data (Storage.peer_own_term)."""
        self.daemon.health["drbd"] = {**self.local.to_json(), "term": self.machine.term}

    def save(self) -> None:
        """On the storage thread only: the latest state the event loop decided, and the first start's mark."""
        victim, term = self.state
        self.daemon.config.state.save_json("storage.json", {"victim": victim, "term": term,
                                                            "initializing": self.initializing})

    def _save_state(self) -> None:
        try:
            self.save()
        except Exception as exc:
            log.error("storage: saving storage.json failed (tried again in %.0f s): %s", SETUP_RETRY, exc)
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._save_failed)

    def _save_failed(self) -> None:
        self.queued = None
        self.save_retry_at = self.daemon.clock() + SETUP_RETRY

    def _check_fresh(self) -> None:
        self.fresh = drbdctl.fresh()

    # -- effects, in the storage thread ------------------------------------------------------------------------
    def _carry_out(self, effect: Effect, save_first: bool = False) -> None:
        name, started = self.daemon.me.name, time.monotonic()
        try:
            if save_first:
                try:
                    self.save()
                except Exception:
                    if self.loop is not None:
                        self.loop.call_soon_threadsafe(self._save_failed)
                    raise
            match effect:
                case Initialize(reason):
                    print(f"herd: {name} creates the replicated disk ({reason})", flush=True)
                    self.initializing = True
                    self.save()
                    drbdctl.primary(force=True)
                    self.fresh = False
                    self._make_filesystem()
                    self._serve(reason, started)
                case Promote(reason):
                    watch = Laps(started)
                    drbdctl.primary()  # with the fence-peer handler, when the peer is gone
                    watch.lap("primary")
                    if self.initializing:  # the first start was cut short before its filesystem was made
                        self._make_filesystem()
                    self._serve(reason, started, watch)
                case Demote(reason, disconnect):
                    self._stop(reason, disconnect)
                case Connect(discard_mine):
                    what = " (dropping this node's unacknowledged changes)" if discard_mine else ""
                    print(f"herd: reconnecting the replicated disk{what}", flush=True)
                    drbdctl.connect(discard_mine)
                case Outdate(reason):
                    print(f"herd: marking this disk outdated ({reason})", flush=True)
                    drbdctl.outdate()
                case CutLink(peer, address):
                    self._cut_link_if_gone(peer, address)
            self.error = None
        except Exception as exc:  # an engine's refusal, or a bug: either way this node must not half-serve
            if not isinstance(exc, drbdctl.EngineError):
                log.exception("storage: %s failed", effect)
            self.error = str(exc)
            print(f"herd: storage: {exc}", flush=True)
            if isinstance(effect, Initialize | Promote):
                try:
                    self._stop("could not serve", disconnect=False)
                except Exception as again:
                    print(f"herd: storage: {again}", flush=True)
                if self.loop is not None:
                    self.loop.call_soon_threadsafe(self.machine.failed, self.daemon.clock())

    def _cut_link_if_gone(self, peer: str, address: str) -> None:
        if self.iface is None:
            raise drbdctl.EngineError("no interface holds this node's address")
        if vip.answers_arp(self.iface, str(self.daemon.me.address), address):
            if not self.peer_host_answered:
                print(f"herd: {peer} is silent but its host answers ARP: waiting for DRBD to see it gone", flush=True)
            self.peer_host_answered = True
            return
        self.peer_host_answered = False
        print(f"herd: {peer}'s host does not answer ARP either: cutting the replication link", flush=True)
        drbdctl.disconnect()

    def _make_filesystem(self) -> None:
        drbdctl.make_filesystem()
        self.initializing = False
        self.save()
        print("herd: filesystem made on the replicated disk", flush=True)

    def _serve(self, reason: str, started: float, watch: Laps | None = None) -> None:
        watch = watch or Laps(started)
        seeded = drbdctl.serve(self.export, roles.SITE, watch.lap)
        self._set_address(True)
        watch.lap("address")
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._announce)
            self.loop.call_soon_threadsafe(self._ready)
        seed = "; seeded with the example site" if seeded else ""
        print(f"herd: {self.daemon.me.name} serves the docroot on {self.address} ({reason}; ready "
              f"{time.monotonic() - started:.1f} s after the decision: {watch}){seed}", flush=True)

    def _stop(self, reason: str, disconnect: bool) -> None:
        # The address first: from now on no reply reaches a client, so nothing this node writes from here on
        # can have been acknowledged (storage.py counts on that).
        self._set_address(False)
        if disconnect:
            try:
                drbdctl.disconnect()
            except drbdctl.EngineError as exc:
                print(f"herd: storage: {exc}", flush=True)
        drbdctl.stop_serving(self.export)
        drbdctl.secondary()
        print(f"herd: {self.daemon.me.name} stops serving the docroot ({reason})", flush=True)

    def _set_address(self, present: bool) -> None:
        if self.iface is None:
            raise drbdctl.EngineError("no interface holds this node's address")
        iface, address, prefix = self.iface, self.address, self.prefix
        self.daemon.netlink(lambda ipr: vip.set_vip(ipr, iface, address, prefix, present)).result(timeout=30)

    def _ready(self) -> None:
        if self.machine.serving:
            self.ready = True
            self.local = self.local.with_(ready=True)
            self._publish()
            self.daemon.send_heartbeat()  # the web nodes reconnect on this

    def _announce(self) -> None:
        assert self.loop is not None
        for delay in vip.GARP_SCHEDULE:
            self.loop.call_later(delay, self._garp)

    def _garp(self) -> None:
        if self.iface is None or not self.machine.serving:
            return
        try:
            vip.send_garp(self.iface, self.address)
        except OSError as exc:
            log.warning("gratuitous ARP for %s failed: %s", self.address, exc)

    # -- herdctl, DRBD's handler, stopping ----------------------------------------------------------------------
    def fence_peer(self) -> bool:
        now, membership = self.daemon.clock(), self.daemon.membership
        return self.machine.may_fence(now, membership.peers, membership.settling(now))

    def status(self) -> dict[str, Any]:
        return {"address": self.address, "self": self.local.to_json()}

    async def close(self) -> None:
        """herdd stops: hand the docroot over at once, as the directors hand over the VIP."""
        if self.machine.serving:
            self.machine.serving = False
            await asyncio.wrap_future(self.worker.submit(self._carry_out, Demote("herdd stops")))
        self.worker.shutdown(wait=False)
