"""`python build.py`: one bootable USB image per role from a cluster spec."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from herd import __version__
from herd.build import host, scratch
from herd.build.archive import ArchiveError, fetch_state, state_summary
from herd.build.cache import Cache
from herd.build.checkout import CheckoutError
from herd.build.context import BuildContext, ImageResult
from herd.build.epoch import EpochError, source_date_epoch
from herd.build.intree import TreeError
from herd.build.plan import make_plan
from herd.build.private import cache_problem, key_problem
from herd.build.progress import Reporter, plain_console
from herd.build.project import find as find_project
from herd.build.recipes import RecipeError, load_base, load_role
from herd.build.release_key import ReleaseKeyError, release_key
from herd.build.run import CommandError
from herd.build.runner import execute, steps_for
from herd.build.steps import BuildError
from herd.build.steps.zipapp import zipapp_key
from herd.release import build_date, version_of
from herd.spec import Role, Spec, SpecError, load, valid_release

PROJECT = find_project()  # the checkout, or the data packed into herd.pyz
EXIT_BAD_INPUT = 2
EXIT_HOST = 3
EXIT_FAILED = 1
BUILD_UMASK = 0o022

EPILOG = """\
examples:
  python3 build.py                          build every role of examples/cluster.toml into out/
  python3 build.py --spec site.toml --role web --release 2026.12.1
  python3 build.py --no-cache               rebuild the root trees from scratch (a cached tree is also
                                            upgraded by itself once the Debian archives have moved)

  python3 build.py flash IMAGE /dev/sdX     write an image to a stick, then verify it
                                            (see python3 build.py flash --help)
  python3 build.py diff out/2026.11.0/manifest.json out/2026.12.0/manifest.json [--json]
                                            what changed between two releases: packages (security
                                            fixes marked), kernel, herdd, config files, sizes
  python3 build.py make-pyz out/herd.pyz    the builder as one file: python3 herd.pyz --spec FILE
                                            on any Debian 12 host (root, host tools from apt)
"""
PYZ_EPILOG = """\
examples:
  python3 herd.pyz --spec site.toml         build every role of site.toml into ./out/
  python3 herd.pyz --spec site.toml --role web --release 2026.12.1
  python3 herd.pyz flash IMAGE /dev/sdX     write an image to a stick, then verify it
  python3 herd.pyz diff OLD/manifest.json NEW/manifest.json [--json]
  unzip -p herd.pyz site-packages/herd_project/examples/cluster.toml > site.toml
                                            the example spec, to start from

Run as root on Debian 12; missing host tools are named with the apt-get line that installs them.
"""
OUTPUTS = """
Images land in OUT/<release>/<cluster>-<role>-<release>.img, each with a .bmap (bmaptool's block map), a
zstd copy (.img.zst) and the role's update bundle (.bundle) signed by the release key (.bundle.sig), with
SHA256SUMS and manifest.json.
The cluster key is made once beside the spec (<spec>.key, mode 0600) and reused by later releases,
so new images join the running cluster; so is the release key (<spec>.release.key, an ed25519 key that
never leaves this host; every image trusts its public half). Exit codes: 0 built, 1 build failed, 2 bad
input, 3 host not ready.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    prog = "build.py" if PROJECT.checkout else "herd.pyz"
    epilog = (EPILOG if PROJECT.checkout else PYZ_EPILOG) + OUTPUTS
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog,
        description="Build one bootable USB disk image (BIOS and UEFI) per node role of a herd cluster. "
                    f"`{prog} flash IMAGE DEVICE` writes one to a stick; `{prog} diff OLD NEW` compares "
                    "two releases' manifests.")
    if PROJECT.checkout:
        p.add_argument("--spec", type=Path, default=PROJECT.root / "examples/cluster.toml",
                       help="cluster spec (TOML); default: examples/cluster.toml")
        p.add_argument("--out", type=Path, default=PROJECT.root / "out", help="output directory; default: out/")
    else:  # herd.pyz: no checkout to take an example spec from, nor to write into
        p.add_argument("--spec", type=Path, required=True, help="cluster spec (TOML)")
        p.add_argument("--out", type=Path, default=Path("out"), help="output directory; default: ./out/")
    p.add_argument("--role", action="append", choices=[r.value for r in Role], dest="roles",
                   help="build only this role (repeatable); default: every role in the spec")
    p.add_argument("--release", help="image version; default: the spec's cluster.release")
    p.add_argument("--key", type=Path, help="cluster key file; default: the spec's path with .key")
    p.add_argument("--release-key", type=Path,
                   help="the ed25519 key (OpenSSH's format, no passphrase) that signs the update bundles; made "
                        "once if missing; default: the spec's path with .release.key")
    p.add_argument("--site-key", type=Path,
                   help="with [site] in the spec: the TSIG secret the directors sign DNS updates with "
                        "(tsig-keygen output); default: the spec's path with .tsig")
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("HERD_CACHE", "/var/cache/herd")),
                   help="cache for root trees, .debs and wheels; default: /var/cache/herd")
    p.add_argument("--no-cache", action="store_true", help="do not reuse cached trees (still refreshes them)")
    p.add_argument("--scratch", choices=scratch.MODES, default="auto",
                   help="where root trees are put together: ram (a tmpfs of the build's own; much faster, as a "
                        "tree is tens of thousands of small files; up to about 1 GiB per role), disk (a folder "
                        "in the cache dir), auto (default): ram if the memory is available")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command and its output")
    p.add_argument("--version", action="version", version=f"herd {__version__}")
    return p.parse_args(argv)


class BadPath(Exception):
    """A command-line option that cannot be used (a path, a release name, a role)."""


KEY_MIN = 32  # bytes of a cluster key


def check_writable(option: str, path: Path, directory: bool, what: str = "the cluster key",
                   min_size: int = KEY_MIN) -> None:
    """Before a build of minutes: that PATH can be made (or used) as what it is for, or a message saying why.
    An existing key file (`what`, at least `min_size` bytes) is read, not written; an existing directory is
    written into."""
    if path.exists():
        if directory and not path.is_dir():
            raise BadPath(f"{option}: {path} exists and is not a directory")
        if not directory and not path.is_file():
            raise BadPath(f"{option}: {path} is not a file ({what} is one file)")
        if not os.access(path, os.W_OK if directory else os.R_OK):
            raise BadPath(f"{option}: {path} is not {'writable' if directory else 'readable'} by this user")
        if not directory and path.stat().st_size < min_size:
            raise BadPath(f"{option}: {path} is too short for a cluster key (at least {min_size} bytes); delete "
                          "it to make a new one (nodes built with the old key will not join)")
        if not directory and (problem := key_problem(option, path)):
            raise BadPath(problem)
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadPath(f"{option}: cannot make {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadPath(f"{option}: cannot make {path}: {parent} is not writable by this user")


def cluster_key(path: Path) -> Path:
    """The cluster secret: made once, kept (0600) beside the spec, reused by every later build."""
    if path.exists():
        if path.stat().st_size < KEY_MIN:
            raise BuildError(f"{path}: cluster key is too short; delete it to make a new one "
                             "(nodes built with the old key will not join)")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # the whole content is the key: no newline
    try:
        # Two first builds at once: the one that links first makes the key, and the other uses it, so the
        # images of both share one key (a rename would let the later one replace the key the first built in).
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path


def release_key_path(args: argparse.Namespace) -> Path:
    path: Path = args.release_key or args.spec.with_suffix(".release.key")
    return path


def site_key_file(spec: Spec, roles: list[Role], path: Path) -> Path | None:
    """The TSIG secret the directors need for [site]; None when the build has no use for it."""
    if spec.site is None or Role.DIRECTOR not in roles:
        return None
    if not path.is_file():
        raise SpecError([f"[site] needs its TSIG secret for the directors, and {path} is missing; "
                         f"make it with `tsig-keygen -a {spec.site.key_algorithm} {spec.site.key_name} > {path}` "
                         f"(chmod 600), give the same key to the DNS server, or name another file with --site-key"])
    if problem := key_problem("--site-key", path):
        raise BadPath(problem)
    return path


def summary(ctx: BuildContext) -> Table:
    # The directory goes in the title, which wraps, so a long --out never cuts the image names short.
    table = Table(title=f"{ctx.plan.spec.name} release {ctx.plan.release} in {os.path.relpath(ctx.plan.out_dir)}/",
                  title_justify="left")
    for col in ("role", "image", "size", "on disk", "sha256"):
        table.add_column(col, no_wrap=True)
    for role, r in ctx.images.items():
        table.add_row(role.value, r.final_path.name, f"{r.size / 2**20:.0f} MiB",
                      f"{r.allocated / 2**20:.0f} MiB", r.sha256[:16] + "…")
    return table


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["flash"]:
        from herd.build import flash

        return flash.main(argv[1:])
    if argv[:1] == ["diff"]:
        from herd.build import diff_cli

        return diff_cli.main(argv[1:])
    if argv[:1] == ["make-pyz"]:
        from herd.build import make_pyz

        return make_pyz.main(argv[1:])
    args = parse_args(argv)
    # Whatever the caller's umask: debootstrap, dpkg's maintainer scripts and the cache's tarballs make files with
    # it, and they go into every image (herd's own files get explicit modes).
    os.umask(BUILD_UMASK)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(message)s", stream=sys.stderr)
    reporter = Reporter(quiet=args.quiet)
    err = reporter.console
    # Ctrl-C and SIGTERM both unwind through the steps' undo.
    signal.signal(signal.SIGTERM, _interrupt)

    try:
        spec = load(args.spec)
        release = spec.release if args.release is None else args.release
        if not valid_release(release):
            raise BadPath(f"--release: {release!r} must be letters, digits and . _ + - (it names files)")
        try:
            version_of(release)
        except ValueError:
            raise BadPath(f"--release: {release!r} must start with its version, numbers and dots like 2026.11.0: "
                          "nodes take an update bundle only if its version is not older than the one they "
                          "run") from None
        wanted = list(dict.fromkeys(Role(r) for r in args.roles)) if args.roles else list(spec.roles)
        missing = [r.value for r in wanted if r not in spec.roles]
        if missing:
            raise BadPath(f"--role: the spec has no {', '.join(missing)} node; "
                          f"its roles are {', '.join(r.value for r in spec.roles)}")
        base = load_base(PROJECT.root / "image")
        recipes = {r: load_role(PROJECT.root / "image", r) for r in wanted}
        epoch, epoch_from = source_date_epoch(args.spec, os.environ)
        site_key = site_key_file(spec, wanted, args.site_key or args.spec.with_suffix(".tsig"))
        check_writable("--out", args.out / release, directory=True)
        check_writable("--key", args.key or args.spec.with_suffix(".key"), directory=False)
        check_writable("--release-key", release_key_path(args), directory=False, what="the release key",
                       min_size=0)
        check_writable("--cache-dir", args.cache_dir, directory=True)
        if args.cache_dir.is_dir() and (problem := cache_problem("--cache-dir", args.cache_dir)):
            raise BadPath(problem)
    except SpecError as exc:
        err.print("[red]error:[/] the spec is not valid:", highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False)
        return EXIT_BAD_INPUT
    except (RecipeError, EpochError, BadPath) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_BAD_INPUT

    problems = host.problems()
    if problems:
        err.print("[red]error:[/] this machine cannot build images yet:")
        for line in problems:
            err.print(f"  {line}", markup=False)
        return EXIT_HOST
    try:
        release_public = release_key(release_key_path(args), spec.name)
    except ReleaseKeyError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_BAD_INPUT

    if spec.debian.security is None:
        reporter.warn(f"{args.spec}: [debian] security = false: these images get no security updates (every fix "
                      f"published for {spec.debian.suite} since its point release is missing)")
    try:
        archives = fetch_state(spec.debian)
    except ArchiveError as exc:
        err.print(f"[red]error:[/] {args.spec}: {escape(str(exc))}", highlight=False)
        return EXIT_BAD_INPUT
    reporter.info(f"[dim]archives: {escape(state_summary(archives))}[/]")
    plan = make_plan(spec, release, wanted, base, recipes, zipapp_key(PROJECT.root), args.out, epoch, archives)
    cache = Cache(args.cache_dir, enabled=not args.no_cache)
    if not args.cache_dir.exists():  # made writable by its owner only, whatever the umask (see cache_problem)
        args.cache_dir.mkdir(parents=True)
        os.chmod(args.cache_dir, 0o755)
    for stale in scratch.clear_stale(args.cache_dir):
        reporter.info(f"[dim]removed {escape(str(stale))}, the scratch space of a build that was killed[/]")
    try:
        work, where = scratch.make(args.cache_dir, scratch.choose(args.scratch, len(wanted), scratch.mem_available()))
    except BuildError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_HOST
    try:
        key = cluster_key(args.key or args.spec.with_suffix(".key"))
        ctx = BuildContext(plan=plan, project=PROJECT.root, cache=cache, work=work, key_file=key, reporter=reporter,
                           site_key_file=site_key, release_key=release_key_path(args), release_public=release_public)
        for rp in plan.roles:
            final = plan.out_dir / rp.image_name
            ctx.images[rp.role] = ImageResult(rp.role, final.with_name(f".{final.name}.{os.getpid()}.tmp"), final)
        reporter.info(f"herd {__version__}: building {', '.join(r.value for r in wanted)} for cluster "
                      f"[bold]{spec.name}[/] release [bold]{release}[/] from {args.spec}, dated "
                      f"{build_date(epoch)} ({epoch_from}); working {where}")
        execute(ctx, steps_for(ctx))
        removed, freed = cache.prune()
        if removed:
            reporter.info(f"[dim]cache: removed {removed} entries no recent build used ({freed / 2**20:.0f} MiB)[/]")
    except (BuildError, TreeError, CheckoutError) as exc:  # TreeError: OverlayError too
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_FAILED if isinstance(exc, BuildError) else EXIT_BAD_INPUT
    except CommandError as exc:
        err.print(f"[red]error:[/] build failed: {escape(str(exc))}", highlight=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: nothing was written to the release directory; the cache is intact")
        return 130
    finally:
        try:
            scratch.release(work)
        except (OSError, RuntimeError, CommandError) as exc:
            err.print(f"[yellow]warning:[/] could not remove scratch space {work}: {escape(str(exc))}")
    plain_console().print(summary(ctx))
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
