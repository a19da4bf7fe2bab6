#!/usr/bin/env python3
"""Role benchmarks (figures, not asserts), on the lab of the QEMU tests (every node a VM under TCG, so the
absolute request rates are an emulated machine's, far below a real thin client's):

- requests/s of the static page and of the PHP page that writes to the database, through one web node
  (ab, from a client namespace on the lab's bridge);
- memory in use on each role's node once all its services are up (target: a 512 MB thin client keeps more
  than 150 MB free).

    python3 bench/roles.py        (as root; builds the example's images first, cached trees make it quick)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "src"))

from herd.spec import load  # noqa: E402
from tests.image.conftest import Build, run_build  # noqa: E402
from tests.image.lab import start_lab  # noqa: E402


def build(work: Path) -> Build:
    ssh_key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_key)], check=True)
    spec_path = work / "cluster.toml"
    public = ssh_key.with_suffix(".pub").read_text().strip()
    spec_path.write_text((PROJECT / "examples/cluster.toml").read_text().replace(
        "ssh_keys = [\n", f'ssh_keys = [\n    "{public}",\n', 1))
    key = work / "cluster.key"
    key.write_text(secrets.token_hex(32))
    r = run_build(["--spec", str(spec_path), "--out", str(work / "out"), "--key", str(key)])
    if r.returncode != 0:
        sys.exit(r.stderr)
    spec = load(spec_path)
    out = work / "out" / spec.release
    images = {role: out / f"{spec.name}-{role.value}-{spec.release}.img" for role in spec.roles}
    manifest = json.loads((out / "manifest.json").read_text())
    return Build(spec, out, key, images, manifest, "", spec_path, ssh_key)


def ab(client: str, url: str, requests: int) -> float:
    out = subprocess.run(["ip", "netns", "exec", client, "ab", "-q", "-n", str(requests), "-c", "4", url],
                         capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"Requests per second:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/roles.py needs root")
    if shutil.which("ab") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "apache2-utils"], check=True)
    work = Path(tempfile.mkdtemp(prefix="herd-bench-roles-"))
    lab_iter = None
    try:
        b = build(work)
        lab_iter = start_lab(b, work / "lab")
        lab = next(lab_iter)
        lab.vms["db1"].wait_for(r"herd: databases ready", 300)
        for name in ("web1", "web2"):
            lab.vms[name].wait_for(r"herd: docroot mounted", 300)
        lab.fetch_text("/counter.php", "192.168.50.21")
        static = ab(lab.client, "http://192.168.50.21/index.html", 500)
        php = ab(lab.client, "http://192.168.50.21/counter.php", 200)
        print("through one web node (a TCG-emulated VM, 1 vCPU):")
        print(f"  static page       {static:7.1f} requests/s")
        print(f"  PHP + DB page     {php:7.1f} requests/s")
        print("memory on each node with its services up (512 MB VMs):")
        for name in ("dir1", "web1", "nfs1", "db1"):
            used, available = lab.ssh(name, "free -m | awk '/^Mem:/ {print $3, $7}'").split()
            role = b.spec.node_named(name).role  # type: ignore[union-attr]
            print(f"  {role.value:9} ({name})  used {used:>4} MB   available {available:>4} MB")
    finally:
        if lab_iter is not None:
            lab_iter.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
