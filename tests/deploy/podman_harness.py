"""podman for the container test: commands bounded in time, containers and their health, and cleaning up.

Used by ``make container-test`` (``run_containers.py``; the images come from ``podman_images.py``, the compose
stack from ``compose_stack.py``). Everything here is bounded in time and leaves nothing running: every
container, pod, volume and network a test makes carries ``LABEL`` (compose's carry podman-compose's project
label) and ``sweep()`` removes them all.

podman runs with ``CONTAINERS_CONF=docker/podman/containers.conf`` (runc, no default ulimits); nothing in /etc
is changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "docker" / "podman" / "containers.conf"

LABEL = "augserve-container-test"
COMPOSE_PROJECT = "augserve-ct"
COMPOSE_LABEL = f"io.podman.compose.project={COMPOSE_PROJECT}"

# podman 4.3 without systemd says this on stderr at every health-checked start and removal; it changes nothing
# (health checks then run only when asked: `podman healthcheck run`).
NOISE = re.compile(r"unable to get systemd connection|failed to connect to syslog")


class PodmanError(RuntimeError):
    """A podman (or debootstrap, podman-compose) command failed; the message has its command and stderr."""


def quiet(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not NOISE.search(line))


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), **(extra or {})}


def run(
    command: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: IO[bytes] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one command with podman's settings, bounded by ``timeout`` seconds."""
    try:
        result = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=environment(env),
            stdin=stdin,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as error:
        raise PodmanError(f"{' '.join(command)}: no answer after {timeout}s") from error
    if check and result.returncode != 0:
        output = quiet(result.stderr + result.stdout)[-3000:]
        raise PodmanError(f"{' '.join(command)} exited with {result.returncode}:\n{output}")
    return result


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], timeout=timeout, check=check)


def unavailable() -> str | None:
    """Why the container test cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, and podman's bridge networks)"
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (`make container-test` installs them with apt-get)"
    return None


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def inspect(name: str) -> dict[str, object]:
    (found,) = json.loads(podman("inspect", name).stdout)
    return found


def wait_healthy(name: str, timeout: float = 90) -> float:
    """Run the container's own health check until it passes; seconds taken.

    podman 4.3 schedules health checks with systemd timers, and these machines have no systemd: the checks run
    only when asked, so this asks every half second (the result is the same status podman reports).
    """
    started = time.monotonic()
    deadline = started + timeout
    last = ""
    while time.monotonic() < deadline:
        result = podman("healthcheck", "run", name, check=False, timeout=30)
        if result.returncode == 0:
            return time.monotonic() - started
        state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state in ("exited", "stopped"):
            break
        last = quiet(result.stderr + result.stdout)
        time.sleep(0.5)
    logs = quiet(podman("logs", "--tail", "40", name, check=False).stderr)
    raise PodmanError(f"{name} not healthy after {timeout}s ({last}); its log:\n{logs}")


LOG_DIR = Path(tempfile.gettempdir()) / "augserve-container-test"


def save_logs(*names: str) -> None:
    """Each container's output into LOG_DIR/NAME.log (run_containers.py names the folder when a test fails)."""
    LOG_DIR.mkdir(exist_ok=True)
    for name in names:
        result = podman("logs", name, check=False, timeout=60)
        (LOG_DIR / f"{name}.log").write_text(result.stdout + quiet(result.stderr))


def sweep() -> None:
    """Remove every container, pod, volume and network a container test made (by label), running or not."""
    for label in (LABEL, COMPOSE_LABEL):
        ids = podman("ps", "--all", "--quiet", "--filter", f"label={label}", check=False).stdout.split()
        if ids:
            podman("rm", "--force", "--time", "0", *ids, check=False, timeout=120)
    podman("pod", "rm", "--force", f"pod_{COMPOSE_PROJECT}", check=False, timeout=120)
    for label in (LABEL, COMPOSE_LABEL):
        for kind in ("volume", "network"):
            names = podman(kind, "ls", "--quiet", "--filter", f"label={label}", check=False).stdout.split()
            if names:
                podman(kind, "rm", "--force", *names, check=False, timeout=120)


def leftovers() -> list[str]:
    """What ``sweep()`` should have removed and is still there (empty when clean)."""
    found = []
    for label in (LABEL, COMPOSE_LABEL):
        for kind, listing in (
            ("container", ["ps", "--all"]),
            ("volume", ["volume", "ls"]),
            ("network", ["network", "ls"]),
        ):
            names = podman(*listing, "--quiet", "--filter", f"label={label}", check=False).stdout.split()
            found += [f"{kind} {name}" for name in names]
    if podman("pod", "exists", f"pod_{COMPOSE_PROJECT}", check=False).returncode == 0:
        found.append(f"pod pod_{COMPOSE_PROJECT}")
    return found
