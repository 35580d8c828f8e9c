"""The container test's images, built with podman on machines that can pull none.

- ``BASE_IMAGE``: ``debootstrap --variant=minbase`` of Debian bookworm with python3, venv and CA certificates,
  imported with ``podman import``. The Dockerfile builds on it through ``--build-arg PYTHON_IMAGE=...``.
- ``NGINX_IMAGE``: the same from Debian unstable with nginx and wget: its nginx (>= 1.27.3) understands
  ``server augserve:8000 resolve``, which bookworm's 1.22 does not, so docker/nginx.conf runs with only its
  resolver address changed (``compose_stack.render_nginx_conf``).
- ``IMAGE``: the Dockerfile itself, on ``BASE_IMAGE``.
The bases are built once per machine and reused (``podman rmi`` one to rebuild it); the image's layers are cached.

The Debian mirror and pip's settings are the machine's own, read at run time (``apt-get indextargets``,
``pip config list``); no host name is written down here. pip's settings reach only the builder stage of the
Dockerfile, as read-only bind mounts (``podman build -v``): the final stage is built in a second ``podman build``
of the same snapshot of the tree, without any mount and without network, so the image holds no trace of this
machine.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from podman_harness import REPO, PodmanError, image_exists, podman, run

BASE_SUITE = "bookworm"
BASE_IMAGE = f"localhost/augserve-base:{BASE_SUITE}"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
NGINX_SUITE = "sid"
NGINX_IMAGE = f"localhost/augserve-nginx:{NGINX_SUITE}"
NGINX_PACKAGES = ("nginx", "wget", "ca-certificates")
IMAGE = "localhost/augserve:container-test"
BUILDER_IMAGE = "localhost/augserve-builder:container-test"

# pip settings that say where packages come from and how to reach them; the rest (target, user, cache...) stays
# with the machine.
PIP_SOURCE_KEYS = frozenset(
    {
        "index-url",
        "extra-index-url",
        "find-links",
        "no-index",
        "trusted-host",
        "cert",
        "client-cert",
        "proxy",
        "timeout",
        "default-timeout",
        "retries",
        "constraint",
    }
)
PIP_PATH_KEYS = frozenset({"cert", "client-cert", "constraint", "find-links", "index-url", "extra-index-url"})
PIP_INDEX_KEYS = frozenset({"index-url", "extra-index-url"})

# --- what this machine uses to reach the package registries --------------------------------------------------


def pick_mirror(indextargets: str, suite: str = BASE_SUITE) -> str:
    """The archive apt uses for ``suite``'s main component, from ``apt-get indextargets`` output (see below)."""
    for line in indextargets.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1] == suite and fields[2] == "main":
            return fields[0].rstrip("/")
    raise PodmanError(f"apt has no source for {suite} main (apt-get indextargets):\n{indextargets}")


def debian_mirror(suite: str = BASE_SUITE) -> str:
    listing = run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)", "Identifier: Packages"],
        timeout=60,
    ).stdout
    return pick_mirror(listing, suite)


def parse_pip_config(listing: str) -> dict[str, dict[str, str]]:
    """``pip config list`` as ``{section: {key: value}}`` for the settings in ``PIP_SOURCE_KEYS``.

    Environment variables (``:env:``) win over files, as they do for pip: they go to ``global`` and replace the
    key in every section.
    """
    files: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for line in listing.splitlines():
        match = re.fullmatch(r"(?P<section>[^.=]+)\.(?P<key>[^=]+)=(?P<value>.*)", line.strip())
        if not match or match["key"] not in PIP_SOURCE_KEYS:
            continue
        value = str(ast.literal_eval(match["value"]))
        if match["section"] == ":env:":
            env[match["key"]] = value
        else:
            files.setdefault(match["section"], {})[match["key"]] = value
    for key, value in env.items():
        for section in files.values():
            section.pop(key, None)
        files.setdefault("global", {})[key] = value
    return {section: values for section, values in files.items() if values}


def pip_conf_text(settings: Mapping[str, Mapping[str, str]]) -> str:
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def pip_local_paths(settings: Mapping[str, Mapping[str, str]]) -> list[Path]:
    """Local files and directories the settings name (CA bundle, constraints, wheel dirs, file:// indexes).

    A file:// index named ``.../simple`` links to files beside it (``../../files/...``): its parent is taken.
    """
    found: list[Path] = []
    for values in settings.values():
        for key, value in values.items():
            if key not in PIP_PATH_KEYS:
                continue
            for token in value.split():
                url = urlparse(token)
                if url.scheme not in ("", "file"):
                    continue
                path = Path(url.path)
                if not path.is_absolute():
                    continue
                if key in PIP_INDEX_KEYS and path.name == "simple":
                    path = path.parent
                if path.exists() and path not in found:
                    found.append(path)
    return found


def pip_build_mounts(workdir: Path, python: str) -> list[str]:
    """``podman build -v`` arguments that give the builder stage this machine's pip settings, read-only.

    The settings are written to ``workdir/pip.conf`` and mounted at /etc/pip.conf (pip's site-wide file); the
    local paths they name are mounted at the same paths.
    """
    listing = run([python, "-m", "pip", "config", "list"], timeout=60).stdout
    settings = parse_pip_config(listing)
    conf = workdir / "pip.conf"
    conf.write_text(pip_conf_text(settings))
    mounts = [f"{conf}:/etc/pip.conf:ro"] + [f"{path}:{path}:ro" for path in pip_local_paths(settings)]
    return [argument for mount in mounts for argument in ("-v", mount)]


# --- images ----------------------------------------------------------------------------------------------------


def debootstrap_image(
    name: str, suite: str, packages: Sequence[str], changes: Sequence[str] = (), mkdirs: Sequence[str] = ()
) -> None:
    """A minimal Debian ``suite`` with ``packages``, imported as image ``name``; apt's caches left out."""
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="augserve-rootfs-", dir="/var/tmp") as scratch:
        root = Path(scratch) / "root"
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(root), mirror],
            timeout=900,
        )
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        for directory in mkdirs:
            (root / directory).mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            flags = [argument for change in changes for argument in ("--change", change)]
            run(["podman", "import", "--quiet", *flags, "-", name], timeout=600, stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(60)


# The official images set these; an imported root file system has no environment at all.
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
)


def ensure_base() -> bool:
    """Build BASE_IMAGE unless it exists; True when it was built now."""
    if image_exists(BASE_IMAGE):
        return False
    debootstrap_image(BASE_IMAGE, BASE_SUITE, BASE_PACKAGES, [*BASE_CHANGES, 'CMD ["python3"]'])
    return True


def ensure_nginx() -> bool:
    """Build NGINX_IMAGE unless it exists. /var/cache/nginx exists and is empty, as in the official image."""
    if image_exists(NGINX_IMAGE):
        return False
    debootstrap_image(
        NGINX_IMAGE,
        NGINX_SUITE,
        NGINX_PACKAGES,
        [*BASE_CHANGES, 'CMD ["nginx", "-g", "daemon off;"]'],
        mkdirs=["var/cache/nginx"],
    )
    return True


def snapshot_context(dest: Path) -> Path:
    """The working tree as it is now (git's tracked and untracked, not ignored, files) copied to ``dest``.

    Both builds below read this copy, so an edit made meanwhile (by you or a colleague) cannot give them two
    different contexts; .dockerignore then filters the copy exactly as it would the tree.
    """
    listing = run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], timeout=60
    ).stdout
    for name in filter(None, listing.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted since the listing is simply not there
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def build_image(python: str) -> None:
    """The Dockerfile on BASE_IMAGE, as IMAGE: the builder stage with pip's settings, then the rest without.

    Layers are cached between runs: an edit to the code alone rebuilds only the last builder step (no download)
    and the final stage. ``--pull=never``: the base is local, and no registry is tried.
    """
    common = ["--format", "docker", "--pull=never", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}"]
    with tempfile.TemporaryDirectory(prefix="augserve-build-", dir="/var/tmp") as scratch:
        context = snapshot_context(Path(scratch) / "context")
        mounts = pip_build_mounts(Path(scratch), python)
        builder = ["--network=host", *mounts, "--target", "builder", "-t", BUILDER_IMAGE, str(context)]
        run(["podman", "build", *common, *builder], timeout=1200)
        # The same context: the builder stage now comes from the cache (build mounts are not part of a layer's
        # cache key). Were it rebuilt here, pip would find no network and fail loudly, not build something else.
        run(["podman", "build", *common, "--network=none", "-t", IMAGE, str(context)], timeout=600)
    # Intermediate layers of earlier builds; the current ones belong to the two tagged images and stay cached.
    podman("image", "prune", "--force", timeout=300)


def build_all(python: str, log: Callable[[str], object] = print) -> dict[str, float]:
    """Every image the container tests use; seconds per step (a cached base takes none)."""
    timings: dict[str, float] = {}
    for step, action in (("base", ensure_base), ("nginx", ensure_nginx), ("image", lambda: build_image(python))):
        started = time.monotonic()
        built = action()
        timings[step] = time.monotonic() - started
        state = "cached" if built is False else "built"
        log(f"container-test: {step}: {state} in {timings[step]:.1f} s")
    return timings
