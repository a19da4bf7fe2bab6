"""Before anything changes, and in what order: the roles' redundancy decides.

The order: one web node as the canary (out of rotation, its connections finished, rebooted, checked, back in
rotation, then a soak), the other web nodes the same way; the nfs standby, a planned switchover to it, the old
server; the db nodes one at a time (each Synced again before the next); the standby director, the VIP handed to
it, the old holder. A lone nfs or db node goes last: its service stops for one reboot (its data is kept)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from herd.rollout.view import ClusterView
from herd.spec import Role


class Kind(enum.StrEnum):
    DRAIN = "drain"  # a web node out of rotation (weight 0) until its connections have finished
    REBOOT = "reboot"  # into the new release; done once it runs it and passes its role check
    UNDRAIN = "undrain"  # back in rotation
    SOAK = "soak"  # the canary serves on the new release for a while before any other node is touched
    SWITCH_NFS = "switch-nfs"
    HAND_VIP = "hand-vip"


@dataclass(frozen=True)
class Step:
    kind: Kind
    node: str

    def __str__(self) -> str:
        return f"{self.kind.value} {self.node}"


def preflight(view: ClusterView) -> list[str]:
    """What is missing for a rollout to keep every service up: empty when it may start."""
    problems = [f"{n.name} is not alive" for n in view.nodes if not n.alive]
    problems += [f"{n.name} does not pass its role check" for n in view.nodes if n.alive and not n.check]
    directors = [n.name for n in view.of(Role.DIRECTOR)]
    if view.vip_holder not in directors:
        problems.append("no director holds the VIP")
    dbs = view.of(Role.DB)
    if len(dbs) > 1 and set(view.galera_synced) != {n.name for n in dbs}:
        missing = sorted({n.name for n in dbs} - set(view.galera_synced))
        problems.append(f"Galera is not at full size and Synced: {', '.join(missing)} not")
    nfs = view.of(Role.NFS)
    if len(nfs) > 1 and not view.drbd_uptodate:
        problems.append("DRBD is not UpToDate on both nfs nodes")
    if len(nfs) > 1 and view.nfs_primary not in {n.name for n in nfs}:
        problems.append("no nfs node serves the docroot")
    return problems


def warnings(view: ClusterView) -> list[str]:
    """Services that stop for one reboot: said before the operator confirms."""
    found = []
    for role, what in ((Role.NFS, "the docroot"), (Role.DB, "the database")):
        nodes = view.of(role)
        if len(nodes) == 1:
            found.append(f"{nodes[0].name} is the only {role.value} node: {what} is out of service while it "
                         "reboots (its data is kept); it goes last")
    if len(view.of(Role.DIRECTOR)) == 1:
        found.append(f"{view.of(Role.DIRECTOR)[0].name} is the only director: the VIP is down while it reboots")
    return found


def order(view: ClusterView) -> tuple[Step, ...]:
    steps: list[Step] = []
    for web in view.of(Role.WEB):
        steps += [Step(Kind.DRAIN, web.name), Step(Kind.REBOOT, web.name), Step(Kind.UNDRAIN, web.name)]
        if len(steps) == 3:
            steps.append(Step(Kind.SOAK, web.name))
    lone = []
    nfs = [n.name for n in view.of(Role.NFS)]
    if len(nfs) > 1:
        standby = [n for n in nfs if n != view.nfs_primary]
        steps += [Step(Kind.REBOOT, n) for n in standby]
        steps += [Step(Kind.SWITCH_NFS, standby[0]), Step(Kind.REBOOT, str(view.nfs_primary))]
    else:
        lone += nfs
    dbs = [n.name for n in view.of(Role.DB)]
    if len(dbs) > 1:
        steps += [Step(Kind.REBOOT, n) for n in dbs]
    else:
        lone += dbs
    directors = [n.name for n in view.of(Role.DIRECTOR)]
    standby = [d for d in directors if d != view.vip_holder]
    if standby:
        steps += [Step(Kind.REBOOT, d) for d in standby]
        steps += [Step(Kind.HAND_VIP, standby[0]), Step(Kind.REBOOT, str(view.vip_holder))]
    else:
        lone += directors
    return (*steps, *(Step(Kind.REBOOT, n) for n in lone))
