"""What herdd does for a node's role beyond membership, as asyncio tasks: the web nodes' docroot (mounted from
the nfs node or the NFS service address) and database settings, the db nodes' databases and Galera start-up,
garbd on the directors. The engines' side effects are in roles.py and mariadb.py, the decisions in galera.py;
replicated storage has its own link (storagelink.py)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from herd.daemon import galera, mariadb, nfsfollow, roles
from herd.secrets import db_password
from herd.spec import Node, Role

if TYPE_CHECKING:
    from herd.daemon.loop import Daemon


FOLLOW_EVERY = 0.1  # seconds: how often a web node looks whether the NFS service moved


class RoleLink:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        spec = daemon.spec
        self.db_names = [n.name for n in spec.nodes_of(Role.DB)]
        self.galera = len(self.db_names) > 1  # 2+ db nodes: MariaDB is a Galera cluster that herdd starts
        self.galera_report: galera.Report | None = None
        self.galera_decision = ""
        # An arbitrator on the directors when the db nodes are even in number, so half of them is no tie.
        self.garbd = daemon.me.role == Role.DIRECTOR and self.galera and len(self.db_names) % 2 == 0
        self.garbd_active = False
        self.db_host: str | None = None  # web: the db node the pages use now
        self.follow = nfsfollow.Follow()  # web, replicated docroot: when to cut the NFS client's old connection
        self.tasks: set[asyncio.Task[None]] = set()

    def databases(self) -> list[tuple[str, str, str]]:
        return [(d.name, d.user, db_password(self.daemon.config.key, d.user)) for d in self.daemon.spec.databases]

    async def db_setup(self) -> None:
        """Create the spec's databases and users once MariaDB is up; retried until it is."""
        if not self.daemon.spec.databases:
            return
        sql = roles.database_sql(self.databases(), str(self.daemon.spec.network.subnet))
        last = None
        while True:
            error = await asyncio.to_thread(roles.apply_database_sql, sql)
            if error is None:
                print(f"herd: databases ready: {', '.join(d.name for d in self.daemon.spec.databases)}", flush=True)
                return
            if error != last:
                print(f"herd: databases not ready yet: {error}", flush=True)
                last = error
            await asyncio.sleep(2)

    def db_serving(self, name: str) -> bool:
        """Does this db node take queries, by its last heartbeat?"""
        health = self.daemon.membership.peers[name].health
        if self.galera:
            report = galera.Report.from_json(health.get("galera"))
            return report is not None and report.running and report.primary
        return health.get("mariadb") is True

    async def web_db_config(self) -> None:
        """Point the pages (/etc/herd/db.php) at a db node that serves: the first one until it has heard
        from any, then the one pick_db_host chooses, rewritten only when that changes."""
        if not self.db_names or not self.daemon.spec.databases:
            return
        alive = self.daemon.membership.alive()
        serving = {n: self.db_serving(n) for n in self.db_names}
        chosen = galera.pick_db_host(self.db_names, alive, serving, self.db_host)
        if chosen is None:
            if self.db_host is not None:
                return  # keep the last good choice: nothing better to offer
            chosen = self.db_names[0]
        elif chosen != self.db_host and self.db_host is not None:
            print(f"herd: pages now use database node {chosen}", flush=True)
        address = self.daemon.address_of[chosen]
        text = roles.php_db_config(address, self.databases())
        await asyncio.to_thread(roles.write_web_db_config, text)
        if serving.get(chosen):
            self.db_host = chosen

    async def galera_loop(self) -> None:
        """Start this db node's MariaDB when galera.decide says so, and create the spec's databases once it is
        primary. MariaDB's own unit is disabled in the image: herdd alone decides when it starts."""
        probe = mariadb.Probe()
        me = self.daemon.me
        await asyncio.to_thread(mariadb.write_node_conf, me.name, str(me.address))
        databases_ready = False
        while True:
            try:
                self.galera_report = await asyncio.to_thread(probe.read)
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"herd: galera: cannot read the local state: {exc}", flush=True)
                await asyncio.sleep(5)
                continue
            reports = {n: galera.Report.from_json(self.daemon.membership.peers[n].health.get("galera"))
                       for n in self.db_names if n != self.daemon.me.name}
            reports[self.daemon.me.name] = self.galera_report
            decision = galera.decide(self.daemon.me.name, self.db_names, reports, self.daemon.membership.alive())
            text = f"{decision.action}: {decision.reason}"
            if probe.error:
                text += f" (recovery: {probe.error})"
            if text != self.galera_decision:
                print(f"herd: galera: {text}", flush=True)
                self.galera_decision = text
            if decision.action in (galera.Action.BOOTSTRAP, galera.Action.JOIN):
                self.galera_report = galera.Report(running=True, primary=False)  # tell the others: starting
                self.daemon.sample_health()
                self.daemon.send_heartbeat()
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
                                             if self.daemon.membership.peers[n].alive):
                r = await asyncio.to_thread(subprocess.run, ["systemctl", "start", "garb.service"],
                                            capture_output=True, text=True, timeout=300)
                print(f"herd: garbd {'started' if r.returncode == 0 else 'failed: ' + r.stderr.strip()}",
                      flush=True)
            await asyncio.sleep(5)

    async def run(self) -> None:
        """nfs: export the docroot (seeded with the example site). web: mount it once the nfs node is alive,
        and again whenever it is lost; keep the pages pointed at a db node that serves. db: the databases,
        and with Galera, starting the cluster."""
        nfs_nodes = self.daemon.spec.nodes_of(Role.NFS)
        if self.daemon.storage is not None:
            await self.daemon.storage.run()
            return
        if self.daemon.me.role == Role.NFS:
            seeded = await asyncio.to_thread(roles.prepare_export, Path(self.daemon.spec.nfs.export))
            print(f"herd: exporting {self.daemon.spec.nfs.export}{' (seeded with the example site)' if seeded else ''}",
                  flush=True)
            return
        if self.daemon.me.role == Role.DB:
            await (self.galera_loop() if self.galera else self.db_setup())
            return
        if self.garbd:
            await self.garbd_loop()
            return
        if self.daemon.me.role != Role.WEB:
            return
        if self.daemon.spec.replicated_storage:
            # Often: the heartbeat saying the other node is ready may arrive at any moment.
            task = asyncio.create_task(self.daemon.every(FOLLOW_EVERY, lambda: self.follow_nfs(nfs_nodes)))
            self.tasks.add(task)
        last_error = None
        while True:
            await self.web_db_config()
            server = self.nfs_server(nfs_nodes)
            if server is not None:
                error = await asyncio.to_thread(roles.mount_docroot, server[1], self.daemon.spec.nfs.export,
                                                hard=self.daemon.spec.replicated_storage)
                if error is None and last_error != "mounted":
                    print(f"herd: docroot mounted from {server[0]}:{self.daemon.spec.nfs.export}", flush=True)
                    last_error = "mounted"
                elif error is not None and error != last_error:
                    print(f"herd: cannot mount the docroot yet: {error}", flush=True)
                    last_error = error
            await asyncio.sleep(2)

    def follow_nfs(self, nfs_nodes: tuple[Node, ...]) -> None:
        server = nfsfollow.ready_server(self.daemon.membership.peers, nfs_nodes)
        if self.follow.moved(server) and roles.docroot_source() is not None:
            address = str(self.daemon.spec.nfs.address)
            asyncio.get_running_loop().run_in_executor(None, self._reconnect, server, address)

    @staticmethod
    def _reconnect(server: str | None, address: str) -> None:
        error = nfsfollow.cut_connections(address)
        print(f"herd: the docroot is served by {server} now: " + (
            f"cannot cut the old NFS connection: {error}" if error else "NFS reconnects to it"), flush=True)

    def nfs_server(self, nfs_nodes: tuple[Node, ...]) -> tuple[str, str] | None:
        """(who, address) to mount the docroot from, once it is served: the nfs node, or with two of them the
        NFS service address once one says it serves there (its address moves with the service)."""
        if not self.daemon.spec.replicated_storage:
            if nfs_nodes and self.daemon.membership.peers[nfs_nodes[0].name].alive:
                return nfs_nodes[0].name, str(nfs_nodes[0].address)
            return None
        if nfsfollow.server(self.daemon.membership.peers, nfs_nodes) is None:
            return None
        return str(self.daemon.spec.nfs.address), str(self.daemon.spec.nfs.address)
