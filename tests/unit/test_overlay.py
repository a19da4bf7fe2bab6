"""Overlay rendering of every role of the example, and installing into a root tree without ever leaving it."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from herd import __version__
from herd.build.checkout import CheckoutError
from herd.build.intree import TreeError
from herd.build.overlay import (
    OverlayError,
    OverlayFile,
    disable_unit,
    enable_unit,
    install,
    keepalive_timeout,
    mask_unit,
    render,
    template_context,
)
from herd.build.plan import DEFAULT_EPOCH, BuildPlan, RolePlan, make_plan
from herd.build.recipes import load_base, load_role
from herd.release import parse as parse_release
from herd.secrets import derive
from herd.spec import Role, Spec, parse

from ..specs import with_second_db, with_second_nfs
from .umask import umask

PROJECT = Path(__file__).resolve().parents[2]
OVERLAY = PROJECT / "overlay"
TEXT = (PROJECT / "examples" / "cluster.toml").read_text(encoding="utf-8")
KERNEL = "6.1.0-test-amd64"

# A second ssh key, by editing the example (a second db or nfs node: tests/specs.py).
SECOND_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDherdSecondKey second@example"


def with_second_key(text: str) -> str:
    old = 'admin@example",\n'
    assert text.count(old) == 1
    return text.replace(old, f'{old}    "{SECOND_KEY}",\n')


def plan_of(spec: Spec) -> BuildPlan:
    roles = list(spec.roles)
    return make_plan(spec, "2026.11.0", roles, load_base(PROJECT / "image"),
                     {r: load_role(PROJECT / "image", r) for r in roles}, "zipapp", Path("out"))


def role_plan(plan: BuildPlan, role: Role) -> RolePlan:
    return next(rp for rp in plan.roles if rp.role == role)


def rendered(spec: Spec, role: Role, overlay: Path = OVERLAY, key: bytes = b"") -> dict[str, OverlayFile]:
    plan = plan_of(spec)
    files = render(overlay, role.value, template_context(plan, role_plan(plan, role), KERNEL, key))
    return {str(f.path): f for f in files}


def text_of(files: dict[str, OverlayFile], path: str) -> str:
    return files[path].data.decode()


SPEC = parse(with_second_key(TEXT), "cluster.toml")
PLAN = plan_of(SPEC)
ALL = {role: rendered(SPEC, role) for role in Role}


def test_example_has_every_role() -> None:
    assert set(SPEC.roles) == set(Role)


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_grub_cfg(role: Role) -> None:
    ids = role_plan(PLAN, role).ids
    cfg = text_of(ALL[role], "boot/grub/grub.cfg")
    linux = [line.split() for line in cfg.splitlines() if line.strip().startswith("linux ")]
    assert len(linux) == 1
    args = linux[0]
    assert args[1] == f"/boot/vmlinuz-{KERNEL}"
    assert f"root=PARTUUID={ids.root_partuuid}" in args
    assert "console=tty0" in args
    assert any(a == "console=ttyS0" or a.startswith("console=ttyS0,") for a in args)
    # the kernel's last console= is /dev/console, so the serial one must come after tty0
    assert [a.split(",")[0] for a in args if a.startswith("console=")][-1] == "console=ttyS0"
    assert f"initrd /boot/initrd.img-{KERNEL}" in cfg
    assert re.search(rf"^search\b.*--fs-uuid\b.*\b{re.escape(ids.root_fs_uuid)}$", cfg, re.MULTILINE)
    assert "{{" not in cfg and "{%" not in cfg


def test_grub_cfgs_differ_per_role() -> None:
    cfgs = {text_of(ALL[role], "boot/grub/grub.cfg") for role in Role}
    assert len(cfgs) == len(Role)


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_common_files(role: Role) -> None:
    files = ALL[role]
    ids = role_plan(PLAN, role).ids

    fstab = [line.split() for line in text_of(files, "etc/fstab").splitlines() if line and not line.startswith("#")]
    assert [f[:3] for f in fstab] == [[f"PARTUUID={ids.root_partuuid}", "/", "ext4"],
                                      [f"PARTUUID={ids.usr_partuuid}", "/usr", "squashfs"]]
    assert "ro" in fstab[1][3].split(",") and fstab[1][5] == "0"  # read-only, never fsck'd

    hosts = [line.split() for line in text_of(files, "etc/hosts").splitlines() if line and not line.startswith("#")]
    by_address = {fields[0]: fields[1:] for fields in hosts}
    for node in SPEC.nodes:
        assert node.name in by_address[str(node.address)], node
    assert str(SPEC.network.vip) in by_address
    assert by_address["127.0.0.1"] == ["localhost"]

    keys = text_of(files, "root/.ssh/authorized_keys").splitlines()
    assert keys == list(SPEC.ssh_keys)
    assert len(keys) == 2 and keys[1] == SECOND_KEY

    assert text_of(files, "etc/herd/role").strip() == role.value
    assert parse_release(text_of(files, "etc/herd/release")) == {
        "RELEASE": "2026.11.0", "CLUSTER": "demo", "ROLE": role.value, "HERD_VERSION": __version__,
        "BUILD_DATE": "2023-11-14T22:13:20Z", "SOURCE_DATE_EPOCH": str(DEFAULT_EPOCH)}
    assert text_of(files, "etc/resolv.conf").split() == ["search", "herd.lan", "nameserver", "192.168.50.1"]
    assert "PasswordAuthentication no" in text_of(files, "etc/ssh/sshd_config.d/herd.conf")
    assert files["usr/lib/herd/growroot"].mode & 0o111  # a script stays executable
    assert not any(path.endswith(".j2") for path in files)


ROLE_FILES = {
    "etc/exports": Role.NFS,
    "etc/sysctl.d/60-herd-lvs-dr.conf": Role.WEB,
    "var/www/html/index.html": Role.WEB,
    "etc/modules-load.d/herd-ipvs.conf": Role.DIRECTOR,
    "etc/sysctl.d/60-herd-director.conf": Role.DIRECTOR,
    "etc/mysql/mariadb.conf.d/60-herd.cnf": Role.DB,
    "etc/default/garb": Role.DIRECTOR,
    "etc/drbd.d/herd.res": Role.NFS,
    "etc/nfs.conf.d/herd.conf": Role.NFS,
    "etc/herd/growroot.conf": Role.NFS,
    "etc/systemd/system/nfs-server.service.d/herd.conf": Role.NFS,
    "etc/apache2/conf-enabled/herd-keepalive.conf": Role.WEB,
}


@pytest.mark.parametrize(("path", "owner"), ROLE_FILES.items(), ids=ROLE_FILES.keys())
def test_role_files_only_in_their_role(path: str, owner: Role) -> None:
    assert [role for role in Role if path in ALL[role]] == [owner]


def test_role_file_contents() -> None:
    exports = text_of(ALL[Role.NFS], "etc/exports")
    assert re.search(rf"^/srv/herd/www\s+{re.escape(str(SPEC.network.subnet))}\(", exports, re.MULTILINE)

    sysctl = dict(
        tuple(part.strip() for part in line.split("=", 1))
        for line in text_of(ALL[Role.WEB], "etc/sysctl.d/60-herd-lvs-dr.conf").splitlines()
        if "=" in line and not line.startswith("#"))
    assert sysctl["net.ipv4.conf.all.arp_ignore"] == "1"
    assert sysctl["net.ipv4.conf.all.arp_announce"] == "2"

    modules = {line.strip() for line in text_of(ALL[Role.DIRECTOR], "etc/modules-load.d/herd-ipvs.conf").splitlines()
               if line.strip() and not line.startswith("#")}
    assert "ip_vs" in modules
    scheduler = SPEC.services[0].scheduler.value
    assert f"ip_vs_{scheduler}" in modules  # the module of the scheduler the spec uses is loaded


def keepalive_of(spec: Spec) -> int:
    conf = text_of(rendered(spec, Role.WEB), "etc/apache2/conf-enabled/herd-keepalive.conf")
    lines = [line.split() for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 1 and lines[0][0] == "KeepAliveTimeout", conf
    return int(lines[0][1])


def test_apache_keeps_an_idle_connection_through_a_failover() -> None:
    # The example's takeover (1 s deadtime, 2 x 200 ms grace) doubled by TCP's backoff fits Apache's own 5 s.
    assert keepalive_of(SPEC) == 5
    # The image tests' lab (500 ms heartbeats, 3 s deadtime): a takeover of about 4 s, doubled, plus a margin.
    slow = parse(TEXT.replace("interval_ms = 200\ndeadtime_ms = 1000", "interval_ms = 500\ndeadtime_ms = 3000"),
                 "cluster.toml")
    assert keepalive_of(slow) == 10 == keepalive_timeout(slow.membership)
    assert keepalive_timeout(slow.membership) > 2 * (3 + 2 * 0.5) + 1


def test_one_db_node_has_no_galera() -> None:
    cnf = text_of(ALL[Role.DB], "etc/mysql/mariadb.conf.d/60-herd.cnf")
    assert len(SPEC.nodes_of(Role.DB)) == 1
    assert "[mysqld]" in cnf
    assert "wsrep_on" not in cnf and "gcomm://" not in cnf


def test_two_db_nodes_get_galera() -> None:
    spec = parse(with_second_db(TEXT), "cluster.toml")
    assert [n.name for n in spec.nodes_of(Role.DB)] == ["db1", "db2"]
    cnf = text_of(rendered(spec, Role.DB), "etc/mysql/mariadb.conf.d/60-herd.cnf")
    assert re.search(r"^wsrep_on\s*=\s*ON$", cnf, re.MULTILINE)
    address = re.search(r"^wsrep_cluster_address\s*=\s*gcomm://(\S+)$", cnf, re.MULTILINE)
    assert address is not None and address.group(1).split(",") == ["192.168.50.41", "192.168.50.42"]
    assert re.search(r"^wsrep_cluster_name\s*=\s*demo$", cnf, re.MULTILINE)
    # the other roles do not care how many db nodes there are, apart from /etc/hosts
    web = rendered(spec, Role.WEB)
    assert "db2" in text_of(web, "etc/hosts")
    assert "etc/mysql/mariadb.conf.d/60-herd.cnf" not in web
    assert re.search(r"^wsrep_sst_method\s*=\s*rsync$", cnf, re.MULTILINE)  # rsync is in the db recipe
    # the arbitrator's configuration on the directors names every db node and the cluster
    garb = dict(line.split("=", 1) for line in text_of(rendered(spec, Role.DIRECTOR), "etc/default/garb").splitlines()
                if "=" in line and not line.startswith("#"))
    assert garb["GALERA_NODES"] == '"192.168.50.41:4567,192.168.50.42:4567"'
    assert garb["GALERA_GROUP"] == '"demo"'


def test_herdd_starts_mariadb_only_with_galera_and_garbd_always() -> None:
    from herd.build.plan import units_herdd_starts

    assert units_herdd_starts(SPEC, Role.DB) == ()  # one db node: plain MariaDB, started by systemd
    two = parse(with_second_db(TEXT), "cluster.toml")
    assert units_herdd_starts(two, Role.DB) == ("mariadb.service", "mariadb.socket")
    assert units_herdd_starts(two, Role.DIRECTOR) == units_herdd_starts(SPEC, Role.DIRECTOR) == ("garb.service",)
    assert units_herdd_starts(two, Role.WEB) == ()


def drbd_sections(res: str) -> dict[str, str]:
    """`name { body }` blocks one level inside `resource herd { … }`, by name (`on nfs1` for host sections)."""
    body = re.search(r"^resource herd \{\n(.*)^\}", res, re.MULTILINE | re.DOTALL)
    assert body is not None, res
    return {m.group(1): m.group(2) for m in re.finditer(r"^  ([a-z][\w -]*?) \{\n(.*?)^  \}", body.group(1),
                                                          re.MULTILINE | re.DOTALL)}


def test_the_nfsv4_id_mapping_domain_is_named_not_looked_up() -> None:
    for role in (Role.NFS, Role.WEB):
        text = text_of(ALL[role], "etc/idmapd.conf")
        assert re.search(r"^Domain = herd\.lan$", text, re.MULTILINE), text


def test_one_nfs_node_replicates_nothing() -> None:
    nfs = ALL[Role.NFS]
    assert "resource" not in text_of(nfs, "etc/drbd.d/herd.res")
    assert "[nfsd]" not in text_of(nfs, "etc/nfs.conf.d/herd.conf")
    assert "ExecStart" not in text_of(nfs, "etc/systemd/system/nfs-server.service.d/herd.conf")
    assert "fsid" not in text_of(nfs, "etc/exports")
    assert "DATA=none" in text_of(nfs, "etc/herd/growroot.conf").splitlines()  # the root fills the stick
    from herd.build.plan import units_herdd_starts

    assert units_herdd_starts(SPEC, Role.NFS) == ()


def test_two_nfs_nodes_get_a_drbd_resource() -> None:
    spec = parse(with_second_nfs(TEXT), "cluster.toml")
    key = b"k" * 32
    nfs = rendered(spec, Role.NFS, key=key)
    res = text_of(nfs, "etc/drbd.d/herd.res")
    assert nfs["etc/drbd.d/herd.res"].mode == 0o600  # it holds the peers' shared secret
    sections = drbd_sections(res)
    assert re.search(r"^  protocol C;", res, re.MULTILINE)
    assert re.search(r"^  disk /dev/herd-data;", res, re.MULTILINE)  # herdd links it to nfs.disk at boot
    assert re.search(r"^\s+address 192\.168\.50\.31:7789;", sections["on nfs1"], re.MULTILINE)
    assert re.search(r"^\s+address 192\.168\.50\.32:7789;", sections["on nfs2"], re.MULTILINE)
    assert "fencing resource-only;" in sections["disk"]
    assert 'fence-peer "/usr/local/sbin/herd-fence-peer";' in sections["handlers"]
    for policy in ("after-sb-0pri", "after-sb-1pri", "after-sb-2pri", "rr-conflict"):
        # never resolved by DRBD throwing data away
        assert re.search(rf"^\s+{policy} disconnect;", sections["net"], re.MULTILINE), policy
    secret = re.search(r'shared-secret "([0-9a-f]+)";', sections["net"])
    assert secret is not None and secret.group(1) == derive(key, "drbd-shared-secret", 32)
    assert secret.group(1) != derive(b"x" * 32, "drbd-shared-secret", 32)  # another cluster, another secret
    # A timeout below ping-int and connect-int (DRBD refuses anything else); in tenths and seconds.
    number = {k: int(v) for k, v in re.findall(r"^\s+(ping-int|timeout|connect-int) (\d+);", sections["net"],
                                                re.MULTILINE)}
    assert number["timeout"] < 10 * number["ping-int"] and number["timeout"] < 10 * number["connect-int"]
    assert number == {"ping-int": 2, "timeout": 15, "connect-int": 2}  # deadtime 1 s
    slow = parse(with_second_nfs(TEXT).replace("deadtime_ms = 1000", "deadtime_ms = 3000"), "cluster.toml")
    timers = dict(re.findall(r"^\s+(ping-int|ping-timeout|timeout|connect-int) (\d+);",
                             text_of(rendered(slow, Role.NFS, key=key), "etc/drbd.d/herd.res"), re.MULTILINE))
    assert timers == {"ping-int": "4", "ping-timeout": "30", "timeout": "35", "connect-int": "4"}
    exports = text_of(nfs, "etc/exports")
    assert re.search(r"^/srv/herd/www\s+192\.168\.50\.0/24\(rw,\S*fsid=1\)$", exports, re.MULTILINE)
    nfsd = text_of(nfs, "etc/nfs.conf.d/herd.conf")
    assert re.search(r"^\[nfsd\]\nlease-time = 10\ngrace-time = 10\n", nfsd, re.MULTILINE)
    from herd.daemon.drbdctl import MOUNT

    # nfsdcld keeps the clients' records where herdd mounts the replicated disk
    assert re.search(rf"^\[nfsdcld\]\nstoragedir = {MOUNT}/nfsdcld$", nfsd, re.MULTILINE)
    scope = text_of(nfs, "etc/systemd/system/nfs-server.service.d/herd.conf")
    assert re.search(r"^ExecStart=/usr/bin/unshare --uts .* herd-demo-nfs$", scope, re.MULTILINE)
    from herd.build.plan import units_herdd_starts

    assert units_herdd_starts(spec, Role.NFS) == ("drbd.service", "nfs-server.service")
    assert units_herdd_starts(spec, Role.WEB) == ()
    # nfs.disk "/dev/vdb" is given: the root fills the stick; with "auto" a box without a disk of its own keeps
    # the rest of its stick for DRBD.
    assert "DATA=none" in text_of(nfs, "etc/herd/growroot.conf").splitlines()
    auto = parse(with_second_nfs(TEXT).replace('disk = "/dev/vdb"', 'disk = "auto"'), "cluster.toml")
    conf = text_of(rendered(auto, Role.NFS, key=key), "etc/herd/growroot.conf").splitlines()
    assert "DATA=stick" in conf and "ROOT_EXTRA_MIB=1024" in conf


# ---------------------------------------------------------------------------------------------------------
# Rendering a made-up overlay


def make_overlay(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@pytest.mark.parametrize("template", ["{{ no_such_variable }}", "{{ network.no_such_field }}",
                                      "{% for x in nothing %}{{ x }}{% endfor %}"])
def test_unknown_variable_is_an_error_naming_the_file(tmp_path: Path, template: str) -> None:
    overlay = make_overlay(tmp_path / "overlay", {"common/etc/fine.conf.j2": "{{ cluster }}\n",
                                                  "web/etc/broken.conf.j2": f"a = 1\nb = {template}\n"})
    with pytest.raises(OverlayError) as info:
        rendered(SPEC, Role.WEB, overlay)
    assert str(overlay / "web/etc/broken.conf.j2") in str(info.value)
    # the other roles do not have the file, so they render
    assert text_of(rendered(SPEC, Role.DB, overlay), "etc/fine.conf") == "demo\n"


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay", {"common/etc/x.j2": "one\ntwo\n{% if %}\n"})
    with pytest.raises(OverlayError, match=re.escape(f"{overlay / 'common/etc/x.j2'}:3:")):
        rendered(SPEC, Role.WEB, overlay)


def test_role_file_overrides_common_file(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay", {
        "common/etc/motd.j2": "common {{ role }}\n",
        "web/etc/motd": "web's own\n",
        "common/etc/plain": "{{ not rendered }}\n",
    })
    (overlay / "common/etc/plain").chmod(0o600)
    web, db = rendered(SPEC, Role.WEB, overlay), rendered(SPEC, Role.DB, overlay)
    assert text_of(web, "etc/motd") == "web's own\n"
    assert text_of(db, "etc/motd") == "common db\n"
    assert text_of(db, "etc/plain") == "{{ not rendered }}\n"
    assert db["etc/plain"].mode == 0o644  # not the checkout's: MODES names the files that are private
    assert sorted(web) == ["etc/motd", "etc/plain"]


@pytest.mark.parametrize("link", ["common/etc/motd", "web/etc/motd.j2", "common/root/.ssh"])
def test_a_symlink_out_of_the_checkout_is_refused(tmp_path: Path, link: str) -> None:
    """A link to a host secret (a file, a template, a folder) would put it in every image: refused, naming it."""
    secret = tmp_path / "host/.ssh/id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    overlay = make_overlay(tmp_path / "project/overlay", {"common/etc/hostname.j2": "{{ cluster }}\n"})
    (overlay / link).parent.mkdir(parents=True, exist_ok=True)
    (overlay / link).symlink_to(secret.parent if link.endswith(".ssh") else secret)
    with pytest.raises(CheckoutError, match=re.escape(f"{overlay / link} is a symlink to ")):
        rendered(SPEC, Role.WEB, overlay)


def test_a_template_cannot_include_a_file_through_a_link_out_of_the_checkout(tmp_path: Path) -> None:
    secret = tmp_path / "host/shadow"
    secret.parent.mkdir()
    secret.write_text("root:hash:::\n")
    overlay = make_overlay(tmp_path / "project/overlay", {
        "common/etc/motd.j2": '{% include "parts/secret" %}\n', "parts/fine": "fine\n"})
    (overlay / "parts/secret").symlink_to(secret)
    with pytest.raises(CheckoutError, match="outside"):
        rendered(SPEC, Role.WEB, overlay)
    for name in (str(secret), "../../host/shadow"):  # FileSystemLoader's own check would refuse `..`; this one too
        (overlay / "common/etc/motd.j2").write_text('{% include "' + name + '" %}\n')
        with pytest.raises(CheckoutError, match="outside"):
            rendered(SPEC, Role.WEB, overlay)
    (overlay / "common/etc/motd.j2").write_text('{% include "parts/fine" %}')
    assert text_of(rendered(SPEC, Role.WEB, overlay), "etc/motd") == "fine\n"


def test_symlinks_inside_the_checkout_are_followed(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "project/overlay", {"common/etc/motd.j2": "{{ role }}\n",
                                                          "shared/issue": "welcome\n"})
    (overlay / "web/etc").mkdir(parents=True)
    (overlay / "web/etc/issue").symlink_to("../../shared/issue")
    (overlay / "web/etc/motd.j2").symlink_to("../../common/etc/motd.j2")
    web = rendered(SPEC, Role.WEB, overlay)
    assert text_of(web, "etc/issue") == "welcome\n"
    assert text_of(web, "etc/motd") == "web\n"


# ---------------------------------------------------------------------------------------------------------
# Installing into a tree

def test_install_writes_files_with_their_modes(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    files = list(ALL[Role.WEB].values())
    install(tree, files)
    for f in files:
        path = tree / str(f.path)
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode), f.path
        assert path.read_bytes() == f.data
        assert stat.S_IMODE(st.st_mode) == f.mode, f.path
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE((tree / "usr/lib/herd/growroot").stat().st_mode) == 0o755
    assert not list(tree.rglob("*.herd-tmp"))


def loose_copy(src: Path, dest: Path) -> dict[str, bool]:
    """A copy of src as a checkout made with umask 002 has it: files 0664 (0775 if executable), folders 0775.
    Returns which files are executable."""
    shutil.copytree(src, dest)
    executable = {}
    for path in dest.rglob("*"):
        if path.is_dir():
            path.chmod(0o775)
        else:
            executable[str(path.relative_to(dest))] = bool(path.stat().st_mode & stat.S_IXUSR)
            path.chmod(0o775 if executable[str(path.relative_to(dest))] else 0o664)
    return executable


PRIVATE = {"etc/drbd.d/herd.res": 0o600, "root/.ssh/authorized_keys": 0o600}


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_modes_in_the_image_are_not_the_checkouts(tmp_path: Path, role: Role) -> None:
    """With umask 002 a checkout's files are group-writable: the image's are 0644 or 0755 all the same, its
    folders 0755, root's authorized_keys 0600 in a 0700 .ssh (sshd's StrictModes refuses group-writable ones)."""
    executable = loose_copy(OVERLAY, tmp_path / "project/overlay")
    with umask(0o002):
        files = rendered(SPEC, role, tmp_path / "project/overlay", key=b"k" * 32)
        tree = tmp_path / "tree"
        tree.mkdir()
        install(tree, list(files.values()))
    for path, f in files.items():
        source = next(s for s in (f"{role.value}/{path}", f"{role.value}/{path}.j2", f"common/{path}",
                                  f"common/{path}.j2") if s in executable)
        expected = PRIVATE.get(path, 0o755 if executable[source] else 0o644)
        assert f.mode == expected, path
        assert stat.S_IMODE((tree / path).stat().st_mode) == expected, path
    assert files["usr/lib/herd/growroot"].mode == 0o755
    folders = {str(p.relative_to(tree)): stat.S_IMODE(p.stat().st_mode) for p in tree.rglob("*") if p.is_dir()}
    assert folders.pop("root/.ssh") == 0o700
    assert set(folders.values()) == {0o755}, folders


# ---------------------------------------------------------------------------------------------------------
# enable_unit


def unit_tree(tmp_path: Path, units: dict[str, str]) -> Path:
    tree = tmp_path / "tree"
    for rel, content in units.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return tree


def test_enable_unit_makes_the_wantedby_links(tmp_path: Path) -> None:
    tree = unit_tree(tmp_path, {
        "etc/systemd/system/herdd.service": text_of(ALL[Role.WEB], "etc/systemd/system/herdd.service"),
        "etc/systemd/system/herd-growroot.service":
            text_of(ALL[Role.WEB], "etc/systemd/system/herd-growroot.service"),
        "usr/lib/systemd/system/two.service": "[Unit]\n[Service]\nExecStart=/bin/true\n"
                                              "[Install]\nWantedBy=multi-user.target graphical.target\n",
    })
    enable_unit(tree, "herdd.service")
    enable_unit(tree, "herdd.service")  # twice is fine
    enable_unit(tree, "herd-growroot.service")
    enable_unit(tree, "two.service")
    wants = tree / "etc/systemd/system"
    links = {str(p.relative_to(wants)): os.readlink(p) for p in wants.rglob("*") if p.is_symlink()}
    assert links == {
        "multi-user.target.wants/herdd.service": "/etc/systemd/system/herdd.service",
        "local-fs.target.wants/herd-growroot.service": "/etc/systemd/system/herd-growroot.service",
        "multi-user.target.wants/two.service": "/usr/lib/systemd/system/two.service",
        "graphical.target.wants/two.service": "/usr/lib/systemd/system/two.service",
    }


def test_disable_unit_removes_its_links_even_dangling_ones(tmp_path: Path) -> None:
    """In a tree the links point at /lib/... of the image: from the build host they dangle."""
    wants = tmp_path / "etc/systemd/system"
    for rel, target in {"multi-user.target.wants/mariadb.service": "/lib/systemd/system/mariadb.service",
                        "sockets.target.wants/mariadb.socket": "/lib/systemd/system/mariadb.socket",
                        "multi-user.target.wants/ssh.service": "/lib/systemd/system/ssh.service"}.items():
        (wants / rel).parent.mkdir(parents=True, exist_ok=True)
        (wants / rel).symlink_to(target)
    disable_unit(tmp_path, "mariadb.service")
    disable_unit(tmp_path, "mariadb.socket")
    disable_unit(tmp_path, "nothing.service")  # not enabled: nothing to do
    assert sorted(str(p.relative_to(wants)) for p in wants.rglob("*") if p.is_symlink()) == [
        "multi-user.target.wants/ssh.service"]


@pytest.mark.parametrize("link", ["etc/systemd/system", "etc/systemd/system/multi-user.target.wants"])
def test_disable_unit_never_removes_a_hosts_link(tmp_path: Path, link: str) -> None:
    """From the host, a tree's absolute link to /etc/systemd/system is the host's own: its units stay enabled."""
    host = tmp_path / "host"
    host_wants = host / "multi-user.target.wants" if link.endswith("system") else host
    host_wants.mkdir(parents=True)
    (host_wants / "mariadb.service").symlink_to("/lib/systemd/system/mariadb.service")
    tree = tmp_path / "tree"
    (tree / link).parent.mkdir(parents=True)
    (tree / link).symlink_to(host)
    with pytest.raises(TreeError, match="outside the image tree"):
        disable_unit(tree, "mariadb.service")
    assert (host_wants / "mariadb.service").is_symlink()


def test_enable_unit_without_install_section_fails_clearly(tmp_path: Path) -> None:
    tree = unit_tree(tmp_path, {"etc/systemd/system/static.service": "[Unit]\n[Service]\nExecStart=/bin/true\n"})
    with pytest.raises(OverlayError, match=r"static\.service.*WantedBy"):
        enable_unit(tree, "static.service")
    assert not [p for p in tree.rglob("*.wants")]


def test_enable_missing_unit_fails_clearly(tmp_path: Path) -> None:
    tree = unit_tree(tmp_path, {"etc/systemd/system/other.service": "[Install]\nWantedBy=multi-user.target\n"})
    with pytest.raises(OverlayError, match=r"nosuch\.service: no such unit"):
        enable_unit(tree, "nosuch.service")


def test_enable_unit_refuses_a_wants_dir_outside_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = unit_tree(tmp_path, {"etc/systemd/system/herdd.service": "[Install]\nWantedBy=multi-user.target\n"})
    (tree / "etc/systemd/system/multi-user.target.wants").symlink_to(outside)
    with pytest.raises(TreeError, match="outside the image tree"):
        enable_unit(tree, "herdd.service")
    assert list(outside.iterdir()) == []


def test_mask_unit_links_it_to_dev_null_in_place_of_what_was_there(tmp_path: Path) -> None:
    tree = unit_tree(tmp_path, {"etc/systemd/system/e2scrub_reap.service": "[Unit]\n"})
    mask_unit(tree, "e2scrub_reap.service")
    mask_unit(tree, "e2scrub_reap.service")  # twice is fine
    mask_unit(tree, "modprobe@drm.service")
    for unit in ("e2scrub_reap.service", "modprobe@drm.service"):
        assert os.readlink(tree / "etc/systemd/system" / unit) == "/dev/null"


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_every_image_trusts_the_release_keys_public_half(role: Role, tmp_path: Path) -> None:
    """/etc/herd/release-signers: the release key as an allowed_signers line, for herd releases only, which
    `ssh-keygen -Y verify` (what herdd runs) takes as it is, and which refuses another key's signature."""
    import subprocess

    from herd.bundle import NAMESPACE, PRINCIPAL

    keys = {}
    for name in ("release", "other"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
        keys[name] = tmp_path / name
    public = (tmp_path / "release.pub").read_text()
    files = {str(f.path): f for f in render(OVERLAY, role.value, template_context(
        PLAN, role_plan(PLAN, role), KERNEL, b"k" * 32, public))}
    signers = files["etc/herd/release-signers"]
    assert signers.mode == 0o644
    lines = [line for line in signers.data.decode().splitlines() if not line.startswith("#")]
    assert lines == [f'herd-release namespaces="herd-release" {" ".join(public.split()[:2])}']
    (tmp_path / "signers").write_bytes(signers.data)
    message = b"a manifest\n"
    for name, good in (("release", True), ("other", False)):
        sig = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(keys[name]), "-n", NAMESPACE, "-"],
                             input=message, capture_output=True, check=True).stdout
        (tmp_path / "sig").write_bytes(sig)
        r = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "signers"), "-I", PRINCIPAL,
                            "-n", NAMESPACE, "-s", str(tmp_path / "sig")], input=message, capture_output=True)
        assert (r.returncode == 0) == good, (name, r)
    # Checking the templates (before any key is at hand) renders no key at all.
    checked = {str(f.path): f for f in render(OVERLAY, role.value, template_context(PLAN, role_plan(PLAN, role),
                                                                                    KERNEL))}
    assert b"ssh-ed25519" not in checked["etc/herd/release-signers"].data
