"""herdctl: ask the local herdd about the cluster, drain and undrain nodes, move the site's DNS names."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from herd import __version__, fence
from herd.ctlsocket import SOCKET, CtlError, request

STATE_STYLE = {"alive": "green", "dead": "bold red", "drained": "yellow", "unknown": "dim"}


def health_text(health: dict[str, Any]) -> str:
    parts = []
    if "load1" in health:
        parts.append(f"load {health['load1']}")
    if "mem_pct" in health:
        parts.append(f"mem {health['mem_pct']:.0f}%")
    if "disk_pct" in health:
        parts.append(f"disk {health['disk_pct']:.0f}%")
    if "temp_c" in health:
        parts.append(f"{health['temp_c']:.0f}°C")
    for engine in ("apache", "mariadb", "garbd"):
        if engine in health:
            parts.append(f"{engine} {'up' if health[engine] else 'DOWN'}")
    if "nfsd" in health:
        drbd = health.get("drbd")
        standby = isinstance(drbd, dict) and not drbd.get("serving")  # replicated: only the server runs nfsd
        parts.append(f"nfsd {health['nfsd']} threads" if health["nfsd"] else "nfsd standby" if standby
                     else "nfsd DOWN")
    galera = health.get("galera")
    if isinstance(galera, dict):
        position = galera.get("position") or {}
        if galera.get("primary"):
            parts.append("galera primary")
        elif galera.get("running"):
            parts.append("galera starting")
        else:
            parts.append(f"galera stopped at seqno {position.get('seqno', '?')}")
    return "  ".join(parts)


def status_table(status: dict[str, Any]) -> Table:
    vip = status.get("vip") or {}
    release = f" release {status['release']}" if status.get("release") else ""
    title = (f"cluster {status['cluster']}{release} — seen from {status['self']}"
             f" — VIP {vip.get('address')} held by {vip.get('holder') or 'nobody'}")
    table = Table(title=title, title_justify="left")
    for column in ("node", "role", "address", "state", "last seen", "health"):
        table.add_column(column)
    for node in status["nodes"]:
        seen = "-" if node["last_seen_ms"] is None else f"{node['last_seen_ms']} ms"
        name = node["name"] + (" (self)" if node["name"] == status["self"] else "")
        state = Text(node["state"], style=STATE_STYLE.get(node["state"], ""))
        table.add_row(Text(name), Text(node["role"]), Text(node["address"]), state, seen,
                      Text(health_text(node.get("health") or {})))
    return table


def services_table(status: dict[str, Any]) -> Table:
    ipvs = status.get("ipvs") or "-"
    table = Table(title=f"virtual services (IPVS {ipvs})", title_justify="left")
    for column in ("service", "real server", "weight", "check", "last error"):
        table.add_column(column)
    for svc in status.get("services") or []:
        name = f"{svc['protocol']} {svc['address']}:{svc['port']} {svc['scheduler']} {svc['forwarding']}"
        for i, rs in enumerate(svc["real_servers"]):
            check = rs["check"] or "-"
            table.add_row(Text(f"{svc['name']}: {name}" if i == 0 else ""), Text(f"{rs['name']} {rs['address']}"),
                          Text(str(rs["weight"])), Text(check, style="green" if check == "up" else "bold red"),
                          Text(rs["error"] or ""))
    return table


def _ago(seconds: float | None) -> str:
    return "" if seconds is None else f" for {seconds:.0f} s" if seconds < 120 else f" for {seconds / 60:.0f} min"


def site_lines(site: dict[str, Any]) -> list[Text]:
    """Where the public names point and why, as the backup site's VIP holder sees it."""
    names = ", ".join(site["names"])
    head = Text(f"site {site['name']} ({site['role']}) — {names} at {site['server']}", style="bold")
    if site["role"] == "main":
        return [head, Text("  the backup site's VIP holder watches this site and moves the names")]
    lines = [head]
    if not site.get("active"):
        speaker = site.get("speaker")
        lines.append(Text(f"  standby: {speaker or 'the VIP holder'} watches the main site and moves the names"))
        return lines
    main_style = {"up": "green", "down": "bold red"}.get(site["main"], "dim")
    main = Text("  main site ")
    main.append(f"{site['main']}{_ago(site.get('main_for_s'))}", style=main_style)
    main.append(f" ({', '.join(site['main_addresses'])})")
    if site["main"] == "down" and site.get("main_error"):
        main.append(f": {site['main_error']}")
    lines.append(main)
    dns = Text("  DNS points at ")
    dns.append(f"the {site['dns']} site" if site["dns"] != "unknown" else "(not looked up yet)",
               style="yellow" if site["dns"] == "backup" else "")
    if site.get("want") and site["want"] != site["dns"]:
        dns.append(f", moving to the {site['want']} site")
    if site.get("pinned"):
        dns.append(" — pinned by herdctl site failover")
    lines.append(dns)
    back = f"after {site['up_seconds']:g} s up" if site["failback"] == "auto" else "by hand (herdctl site failback)"
    policy = f"  policy: fail over after {site['down_seconds']:g} s down, fail back {back}"
    lines.append(Text(policy))
    last = site.get("last")
    if last:
        ok = last["result"] == "ok"
        text = Text(f"  last {last['kind']}" + (f" ({last['target']})" if last.get("target") else "")
                    + f" {last['ago_s']:.0f} s ago: ")
        text.append(last["result"], style="green" if ok else "bold red")
        if site.get("retry_in_s") is not None:
            text.append(f"; retry in {site['retry_in_s']:g} s")
        lines.append(text)
    lines.append(Text(f"  updates sent: {site['updates']}"))
    return lines


def storage_lines(storage: dict[str, Any]) -> list[Text]:
    """The replicated docroot: who serves it, and each nfs node's DRBD role, link, disks and sync."""
    server = storage.get("server")
    head = Text(f"storage — docroot on DRBD, NFS at {storage['address']} served by ", style="bold")
    head.append(server or "nobody", style="bold" if server else "bold red")
    lines = [head]
    for name, report in (storage.get("nodes") or {}).items():
        if report is None:
            lines.append(Text(f"  {name}: not heard from", style="dim"))
            continue
        line = Text(f"  {name}: ")
        line.append(report["role"].lower(), style="green" if report.get("serving") else "")
        line.append(f", {report['connection']}, disk {report['disk']}/{report['peer_disk']}")
        if report.get("sync") is not None:
            line.append(f", synced {report['sync']:.1f} %", style="yellow")
        if report.get("waiting") and not report.get("serving"):
            line.append(f" — {report['waiting']}", style="dim")
        if report.get("error"):
            line.append(f" — {report['error']}", style="bold red")
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="herdctl", description="Ask the local herdd about the cluster.")
    p.add_argument("--socket", type=Path, default=SOCKET, help="herdd's socket (%(default)s)")
    p.add_argument("--version", action="version", version=f"herdctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="every node's state as this node sees it")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("drain", "take a node out of service (web: weight 0)"), ("undrain", "put it back")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("node")
    site = sub.add_parser("site", help="point the public DNS names by hand (on the backup site's VIP holder)")
    site.add_argument("action", choices=["failover", "failback"],
                      help="failover: at the backup site, and keep them there; failback: at the main site")
    sub.add_parser("fence-peer", help="DRBD's fence-peer handler on a replicating nfs node: exit 5 if herdd "
                   "serves the docroot by the cluster's quorum (the peer may be counted as outdated), else 1")
    args = p.parse_args(argv)
    try:
        if args.command == "fence-peer":
            return fence.fence_peer(args.socket)
        if args.command == "status":
            reply = request(args.socket, {"cmd": "status"})
            if args.json:
                print(json.dumps(reply["status"], indent=2))
            else:
                console = Console()
                console.print(status_table(reply["status"]))
                if reply["status"].get("services"):
                    console.print(services_table(reply["status"]))
                if reply["status"].get("storage"):
                    for line in storage_lines(reply["status"]["storage"]):
                        console.print(line)
                if reply["status"].get("site"):
                    for line in site_lines(reply["status"]["site"]):
                        console.print(line)
        elif args.command == "site":
            reply = request(args.socket, {"cmd": "site", "action": args.action}, timeout=10)
            site_state = reply.get("site") or {}
            where = "the backup site" if args.action == "failover" else "the main site"
            print(f"site {args.action}: the names are moving to {where} (DNS points at the "
                  f"{site_state.get('dns', 'unknown')} site now; herdctl status shows when it is done)")
        else:
            request(args.socket, {"cmd": args.command, "node": args.node})
            print(f"{args.node}: {args.command}ed")
    except CtlError as exc:
        print(f"herdctl: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
