"""When the Debian archives move on (a security fix published), the next build brings its cached base tree up to
date with an apt upgrade rather than starting over from debootstrap, and the image gets the fix.

The test gives a build a cache of its own whose base is the shared build's made older the way the archives make
it old (oldbase.py: the point release's kernel, not the security archive's newer one). The archives' state in
that entry's name is not today's, so the build must upgrade it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from herd.build.cache import Cache
from herd.build.plan import digest, make_plan
from herd.build.recipes import load_base, load_role
from herd.spec import Role

from .cleanbuilds import CACHE, DOWNLOADS, own_cache
from .conftest import PROJECT, Build, run_build
from .diskimage import RootFs
from .oldbase import MARKER, make_older


def test_a_moved_archive_upgrades_the_cached_base_instead_of_rebuilding_it(build: Build, tmp_path: Path) -> None:
    spec, base = build.spec, load_base(PROJECT / "image")
    recipe = make_plan(spec, spec.release, [Role.DIRECTOR], base, {Role.DIRECTOR: load_role(PROJECT / "image",
                       Role.DIRECTOR)}, "-", tmp_path).base_recipe_key
    current = Cache(CACHE).newest("rootfs", f"base-{recipe}.", ".tar.zst")
    assert current is not None, "the shared build left no base tree in the cache"
    own = own_cache(tmp_path / "cache", {**DOWNLOADS, "zipapp": "*.pyz"})  # herdd.pyz as the shared build made it
    old = make_older(current, own, recipe, spec.debian.suite, base.kernel, tmp_path)
    newest, newest_version, older = old.newest, old.newest_version, old.older
    assert old.older_version != newest_version, \
        f"{spec.debian.suite}'s point release has the newest kernel ({newest_version}): nothing to upgrade"

    r = run_build(["--spec", str(build.spec_path), "--key", str(build.key), "--out", str(tmp_path / "out"),
                   "--role", "director", "--cache-dir", str(own)], timeout=1500)
    output = r.stdout + r.stderr
    assert r.returncode == 0, output
    assert "the archives have moved since the cached base tree was made: upgrading it" in output, output
    manifest = json.loads((tmp_path / "out" / spec.release / "manifest.json").read_text())
    director = manifest["images"]["director"]
    assert director["packages"][base.kernel] == newest_version
    assert newest in director["packages"] and older not in director["packages"]
    abi = newest.removeprefix("linux-image-")
    assert director["kernel"] == abi
    fs = RootFs(tmp_path / "out" / spec.release / director["file"])
    assert fs.text(f"/{MARKER}") == "the old base\n"  # upgraded, not built again
    assert fs.listdir("/usr/lib/modules") == [abi]
    assert sorted(n for n in fs.listdir("/boot") if re.match(r"(vmlinuz|initrd\.img)-", n)) == \
        [f"initrd.img-{abi}", f"vmlinuz-{abi}"]
    # Upgraded, it is stored under the archives' state the build saw (its manifest's): the next build against
    # them takes it as it is.
    state = digest(recipe, [a["inrelease_sha256"] for a in manifest["debian"]["archives"]])
    assert (own / "rootfs" / f"base-{recipe}.{state}.tar.zst").is_file()
