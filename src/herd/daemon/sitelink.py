"""The asyncio glue of site failover, on a backup site's directors: while this node holds the VIP it probes the
main site's public address(es) with the health checks' own probes, feeds the verdicts to the pure
SiteMachine, and carries out its effects (DNS lookups and updates, blocking dnspython calls) in a thread.
Only the VIP holder does any of it, so a director failover in the backup site never doubles an update."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import TYPE_CHECKING, Any

from herd.daemon import dnsupdate
from herd.daemon.checks import PROBES
from herd.daemon.site import Effect, Lookup, Policy, Publish, SiteMachine, Target
from herd.spec import Failback, Site, SiteRole, Spec

if TYPE_CHECKING:
    from herd.daemon.loop import Daemon

log = logging.getLogger("herdd")
IDLE = 0.1  # how often a standby looks whether it has become the holder


class SiteLink:
    @staticmethod
    def wanted(spec: Spec) -> bool:
        return spec.site is not None and spec.site.role == SiteRole.BACKUP

    def __init__(self, daemon: Daemon) -> None:
        assert daemon.spec.site is not None
        self.daemon = daemon
        self.site: Site = daemon.spec.site
        self.zone = dnsupdate.Zone(self.site)
        self.machine = SiteMachine(Policy(self.site.down_seconds, self.site.up_seconds,
                                          auto_failback=self.site.failback == Failback.AUTO))
        self.io: set[asyncio.Task[None]] = set()  # DNS requests out (at most one: the machine waits for it)
        # One after the other, in the order given: an update still out from before the VIP left and came back
        # reaches the server before the new term's first lookup, which so sees what it did.
        self.dns_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dns")

    # -- the probe loop ------------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            started = self.daemon.clock()
            try:
                await self._round(started)
            except Exception:  # a bug in one round must not end site failover for good
                log.exception("site: probe round failed")
            await asyncio.sleep(max(IDLE, self.site.interval - (self.daemon.clock() - started))
                                if self.machine.active else IDLE)

    async def _round(self, started: float) -> None:
        if not self._follow_holding():
            return
        error = await self.probe_main()
        if not self._follow_holding():
            return  # the VIP went elsewhere while probing: that verdict is not ours to act on
        was = self.machine.main_up
        self.apply(self.machine.observe(error is None, started, error))
        if was != self.machine.main_up:
            state = "up" if error is None else f"down ({error})"
            print(f"herd: site: main site {', '.join(self.zone.main)} is {state}", flush=True)

    def _follow_holding(self) -> bool:
        holding = self.daemon.election.holding
        if holding and not self.machine.active:
            print(f"herd: site: {self.daemon.me.name} holds the VIP, so it watches the main site "
                  f"{', '.join(self.zone.main)} and moves {', '.join(self.site.names)}", flush=True)
            self.apply(self.machine.activate(self.daemon.clock()))
        elif not holding and self.machine.active:
            print("herd: site: no longer the VIP holder; the new one watches the main site", flush=True)
            self.machine.deactivate()
        return holding

    async def probe_main(self) -> str | None:
        """None when some main address passes every service's check; else what failed."""
        services = self.daemon.spec.services
        errors: list[str] = []
        for address in self.zone.main:
            results = await asyncio.gather(*(PROBES[svc.check.kind](address, svc.port, svc.check)
                                             for svc in services))
            failed = [f"{svc.name} {address}:{svc.port}: {e}" for svc, e in zip(services, results, strict=True) if e]
            if not failed:
                return None
            errors += failed
        return "; ".join(errors)

    def tick(self, now: float) -> None:
        if self.machine.active:
            self.apply(self.machine.tick(now))

    # -- effects ---------------------------------------------------------------------------------------------
    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            task = asyncio.get_running_loop().create_task(self._carry_out(effect, self.machine.term))
            self.io.add(task)
            task.add_done_callback(self.io.discard)

    async def _carry_out(self, effect: Effect, term: int) -> None:
        error: str | None = None
        points: Target | None = None
        if isinstance(effect, Publish):
            addresses = ", ".join(self.zone.addresses(effect.target))
            print(f"herd: site: pointing {', '.join(self.site.names)} at the {effect.target} site ({addresses}): "
                  f"{effect.reason}", flush=True)
        try:
            loop = asyncio.get_running_loop()
            if isinstance(effect, Lookup):
                points = await loop.run_in_executor(self.dns_thread, dnsupdate.where, self.zone)
            else:
                await loop.run_in_executor(self.dns_thread, dnsupdate.publish, self.zone, effect.target)
        except dnsupdate.DnsError as exc:
            error = str(exc)
        except Exception as exc:  # a bug here must not stop the machine waiting forever for an answer
            log.exception("site: DNS %s failed", "lookup" if isinstance(effect, Lookup) else "update")
            error = f"internal error: {type(exc).__name__}: {exc}"
        now = self.daemon.clock()
        if isinstance(effect, Lookup):
            if error is None:
                print(f"herd: site: {', '.join(self.site.names)} point at the {points} site now", flush=True)
            else:
                print(f"herd: site: DNS lookup failed: {error}", flush=True)
            self.apply(self.machine.looked_up(term, points, now, error))
        else:
            if error is None:
                print(f"herd: site: {', '.join(self.site.names)} now point at the {effect.target} site "
                      "(verified at the server)", flush=True)
            else:
                print(f"herd: site: DNS update failed: {error}", flush=True)
            self.apply(self.machine.published(term, effect.target, now, error))
        if error is not None and self.machine.retry_at is not None and term == self.machine.term:
            print(f"herd: site: retrying in {self.machine.retry_at - now:.0f} s", flush=True)

    # -- herdctl -----------------------------------------------------------------------------------------------
    def command(self, action: str, holder: str | None) -> dict[str, Any]:
        if not self.machine.active:
            where = f"run it on {holder}, the VIP holder" if holder else "nobody holds the VIP here yet"
            return {"ok": False, "error": f"{self.daemon.me.name} does not speak for site {self.site.name}: {where}"}
        now = self.daemon.clock()
        print(f"herd: site: herdctl site {action}", flush=True)
        self.apply(self.machine.failover(now) if action == "failover" else self.machine.failback(now))
        return {"ok": True, "site": self.machine.status(now)}

    def cancel(self) -> None:
        for task in list(self.io):
            task.cancel()
