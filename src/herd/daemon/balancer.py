"""The directors' load balancing, as asyncio tasks and netlink jobs: health checks of every real server
(ldirectord's job), the kernel's IPVS table reconciled to the spec and the checks' verdicts (only differences
applied), and the kernel's IPVS connection sync daemon (master on the VIP holder, backup on the standby)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from typing import TYPE_CHECKING, Any

from herd.daemon import ipvs
from herd.daemon.checks import PROBES, CheckState
from herd.spec import Role

if TYPE_CHECKING:
    from herd.daemon.loop import Daemon

log = logging.getLogger("herdd")


class Balancer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        spec = daemon.spec
        self.checks = {(svc.name, n.name): CheckState(svc.check.rise, svc.check.fall)
                       for svc in spec.services for n in spec.nodes_of(Role.WEB)}
        self.ipvs: ipvs.IpvsTable | None = None
        self.ipvs_state = "not started"
        self.sync_wanted: str | None = None  # the IPVS sync daemon this director should run: master or backup

    def weight(self, service: str, node: str) -> int:
        spec_node = self.daemon.spec.node_named(node)
        if spec_node is None or self.daemon.membership.admin[node].drained or not self.checks[(service, node)].up:
            return 0
        return spec_node.weight

    async def check_loop(self, service: Any, node: Any) -> None:
        state = self.checks[(service.name, node.name)]
        probe = PROBES[service.check.kind]
        failing: str | None = None  # the last unexpected error, logged once while it repeats
        while True:
            try:
                error = await probe(str(node.address), service.port, service.check)
                failing = None
            except Exception as exc:  # a probe's bug or an answer it did not foresee: a failed check, not the
                # end of this server's checks (its state would freeze, and nothing would say so)
                error = f"check failed: {type(exc).__name__}: {str(exc)[:200]}"
                if repr(exc) != failing:
                    log.exception("%s check of %s for %s failed", service.check.kind.value, node.name, service.name)
                    failing = repr(exc)
            if state.record(error):
                print(f"herd: {node.name} is {'up' if state.up else 'down'} for {service.name}"
                      f"{'' if state.up else f' ({error})'}", flush=True)
                self.reconcile_ipvs()
            await asyncio.sleep(service.check.interval)

    def reconcile_ipvs(self) -> None:
        if not self.daemon.is_director or self.ipvs_state == "unavailable":
            return
        want = ipvs.desired(self.daemon.spec, self.weight)
        vip_address = str(self.daemon.spec.network.vip)

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

        self.daemon.netlink(apply)

    def sync_daemon(self, master: bool | None = None) -> None:
        """The kernel's IPVS connection sync: master on the VIP holder, backup on the standby. With `master`,
        switch to that; without, check that the kernel runs what was last asked and repair it if not (a start
        can fail while the kernel is still stopping the other thread, as when the VIP flaps)."""
        if not self.daemon.is_director or self.daemon.vip_iface is None or self.ipvs_state == "unavailable":
            return
        if master is not None:
            self.sync_wanted = "master" if master else "backup"
        wanted, iface = self.sync_wanted, self.daemon.vip_iface
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

        self.daemon.netlink(switch)

    def services_status(self) -> list[dict[str, Any]]:
        out = []
        for svc in self.daemon.spec.services:
            servers = []
            for node in self.daemon.spec.nodes_of(Role.WEB):
                state = self.checks.get((svc.name, node.name))
                servers.append({
                    "name": node.name, "address": str(node.address),
                    "weight": self.weight(svc.name, node.name) if state else None,
                    "check": None if state is None else ("up" if state.up else "down"),
                    "error": None if state is None else state.last_error,
                })
            out.append({"name": svc.name, "address": str(self.daemon.spec.network.vip), "port": svc.port,
                        "protocol": svc.protocol.value, "scheduler": svc.scheduler.value,
                        "forwarding": svc.forwarding.value, "real_servers": servers})
        return out

    def start(self) -> list[asyncio.Task[None]]:
        """Program IPVS and start the backup sync daemon now; the checks and the repairs from here on."""
        d = self.daemon
        self.reconcile_ipvs()
        self.sync_daemon(master=False)
        tasks = [asyncio.create_task(self.check_loop(svc, node))
                 for svc in d.spec.services for node in d.spec.nodes_of(Role.WEB)]
        tasks.append(asyncio.create_task(d.every(5.0, self.reconcile_ipvs)))  # repairs outside edits
        tasks.append(asyncio.create_task(d.every(5.0, self.sync_daemon)))
        return tasks
