"""docker/compose.yaml run for real by podman-compose: two augserve replicas of the built image behind nginx
with docker/nginx.conf, on a podman bridge network whose DNS (aardvark-dns) is what nginx's ``resolve`` re-reads.

What differs from ``docker compose -f docker/compose.yaml up --scale augserve=2``, and why (an override file and
environment variables given to podman-compose; compose.yaml itself is used as shipped):
- nginx's image is a local Debian build with nginx >= 1.27.3 instead of nginx:1.28-alpine (no registry here);
- nginx.conf's ``resolver 127.0.0.11`` (Docker's embedded DNS) becomes the podman network's gateway, where
  aardvark-dns answers; nothing else in it changes (``render_nginx_conf``);
- AUGSERVE_IMAGE names the image built by the test, the balancer is published on 127.0.0.1 only, one thread
  per replica (2 cores / 2 replicas, as docs/deploy.md says), and a 4 s drain so that stopping a replica
  mid-epoch takes seconds.
podman 4.3 ignores ``condition: service_healthy`` (podman-compose says so and starts nginx at once), which is
harmless here: nginx resolves the replicas as they appear. ``up()`` waits for every health check to pass.
"""

from __future__ import annotations

import json
import re
import shutil
import sysconfig
from collections.abc import Mapping
from pathlib import Path

import httpx
import yaml
from deploy_files import DOCKER_DIR
from nginx_harness import free_port, wait_until
from podman_harness import (
    COMPOSE_LABEL,
    COMPOSE_PROJECT,
    LABEL,
    PodmanError,
    inspect,
    podman,
    run,
    save_logs,
    sweep,
    wait_healthy,
)
from podman_images import IMAGE, NGINX_IMAGE

COMPOSE = DOCKER_DIR / "compose.yaml"
DRAIN_SECONDS = 4


def render_nginx_conf(text: str, resolver: str) -> str:
    """docker/nginx.conf for a podman network: Docker's embedded DNS (127.0.0.11) is podman's aardvark-dns at the
    network's gateway. That address is the only change; `server augserve:8000 resolve` stays as shipped."""
    shipped = "resolver 127.0.0.11 "
    if text.count(shipped) != 1:
        raise ValueError(f"nginx.conf: expected one {shipped.strip()!r}, found {text.count(shipped)}")
    return text.replace(shipped, f"resolver {resolver} ")


def grace_seconds() -> int:
    """compose.yaml's stop_grace_period ("30s"), what `podman-compose stop` gives a replica after SIGTERM."""
    period = yaml.safe_load(COMPOSE.read_text())["services"]["augserve"]["stop_grace_period"]
    if not period.endswith("s"):
        raise ValueError(f"compose.yaml: stop_grace_period {period!r} is not in seconds")
    return int(period[:-1])


def podman_compose() -> str:
    found = shutil.which("podman-compose") or str(Path(sysconfig.get_path("scripts")) / "podman-compose")
    if not Path(found).exists():
        raise PodmanError("podman-compose is not installed: `make container-test` installs it into the venv")
    return found


def metric(exposition: str, name: str) -> float:
    """One unlabelled sample of a Prometheus text exposition (0 when it is not there yet)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", exposition, re.MULTILINE)
    return float(match[1]) if match else 0.0


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.network = f"{COMPOSE_PROJECT}_default"
        self.override = workdir / "compose.podman.yaml"
        self.env: Mapping[str, str] = {
            "AUGSERVE_IMAGE": IMAGE,
            "AUGSERVE_LB_PORT": f"127.0.0.1:{self.port}",
            "AUGSERVE_FOLDERS": str(workdir / "folders"),
            "AUGSERVE_THREADS": "1",
            "AUGSERVE_DRAIN_SECONDS": str(DRAIN_SECONDS),
        }
        self.replicas: list[str] = []
        self.nginx = f"{COMPOSE_PROJECT}_nginx_1"

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        command = [podman_compose(), "-p", COMPOSE_PROJECT, "-f", str(COMPOSE), "-f", str(self.override), *args]
        result = run(command, timeout=timeout, check=check, env=self.env, cwd=DOCKER_DIR)
        return result.stdout + result.stderr

    def up(self) -> Stack:
        (self.workdir / "folders").mkdir()
        # The network first, so that nginx.conf can name its DNS server (aardvark-dns, on the gateway) before
        # nginx starts; podman-compose then uses it as the project's default network.
        podman("network", "create", "--label", LABEL, "--label", COMPOSE_LABEL, self.network)
        (subnet,) = inspect_network(self.network)["subnets"]
        conf = self.workdir / "nginx.conf"
        conf.write_text(render_nginx_conf((DOCKER_DIR / "nginx.conf").read_text(), subnet["gateway"]))
        override = {"services": {"nginx": {"image": NGINX_IMAGE, "volumes": [f"{conf}:/etc/nginx/nginx.conf:ro"]}}}
        self.override.write_text(yaml.safe_dump(override))
        self.compose("up", "--detach", "--no-build", "--scale", "augserve=2")
        self.replicas = self.names("augserve")
        if len(self.replicas) != 2:
            raise PodmanError(f"expected 2 augserve replicas, podman has {self.replicas}")
        for name in [*self.replicas, self.nginx]:
            wait_healthy(name)
        return self

    def names(self, service: str) -> list[str]:
        listing = podman(
            "ps", "--filter", f"label={COMPOSE_LABEL}", "--filter", f"label=io.podman.compose.service={service}",
            "--format", "{{.Names}}",
        )  # fmt: skip
        return sorted(listing.stdout.split())

    def down(self) -> None:
        try:
            save_logs(*self.replicas, self.nginx)
            self.compose("down", "--volumes", timeout=180, check=False)
        finally:
            sweep()  # `down` knows one replica only: the second came from --scale

    def ip(self, name: str) -> str:
        networks = inspect(name)["NetworkSettings"]["Networks"]  # type: ignore[index]
        return str(networks[self.network]["IPAddress"])

    def replica_text(self, name: str, path: str) -> str:
        """GET on a replica from inside its container (replicas publish no port): the body as text."""
        code = (
            "import sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8000{path}', timeout=10).read().decode())"
        )
        return podman("exec", name, "python", "-I", "-c", code, timeout=30).stdout

    def replica_get(self, name: str, path: str) -> dict[str, object]:
        return json.loads(self.replica_text(name, path))

    def produced(self, name: str) -> int:
        """Samples of dataset ``lb`` a replica has produced: each is one decoded-cache lookup."""
        stats = self.replica_get(name, "/v1/datasets/lb")["cache"]
        assert isinstance(stats, dict)
        return int(stats["hits"]) + int(stats["misses"])

    def serving(self, before: Mapping[str, int]) -> str:
        """The replica that has produced samples since ``before`` (the one streaming the current epoch)."""
        grown = [name for name in self.replicas if self.produced(name) > before[name]]
        if len(grown) != 1:
            raise AssertionError(f"expected one replica streaming, these produced samples: {grown}")
        return grown[0]

    def streams_in_flight(self, name: str) -> float:
        """The replica's own gauge of open response streams (sampled by the server once a second)."""
        return metric(self.replica_text(name, "/metrics"), "augserve_streams_in_flight")

    def log(self, name: str) -> str:
        result = podman("logs", name, check=False, timeout=60)
        return result.stdout + result.stderr

    def running(self, name: str) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"

    def ensure_running(self, name: str) -> None:
        """Start a replica again if it is down, and wait until nginx sends it requests (it may have a new IP)."""
        if not self.running(name):
            podman("start", name)
        wait_healthy(name)
        self.wait_for_traffic(name)

    def wait_for_traffic(self, name: str, timeout: float = 30) -> float:
        """Send requests through nginx until one reaches replica ``name``; seconds taken.

        Until nginx re-resolves (valid=10s), it may still try a dead replica's address: that request waits out
        proxy_connect_timeout (5 s) and, if the replica set changes meanwhile, gets a 502 ("no live upstreams":
        nginx does not retry across a change of the resolved set). Waiting here keeps one test's outage out of
        the next test.
        """
        address = f"upstream={self.ip(name)}:8000 us=200"

        def reached() -> bool:
            for _ in range(4):
                httpx.get(f"{self.url}/readyz", timeout=10)
            return address in podman("logs", self.nginx).stdout

        return wait_until(reached, timeout, f"nginx sending requests to {name} ({address})")


def inspect_network(name: str) -> dict[str, list[dict[str, str]]]:
    (found,) = json.loads(podman("network", "inspect", name).stdout)
    return found
