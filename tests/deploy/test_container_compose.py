"""docker/compose.yaml for real: podman-compose runs two augserve replicas of the built image behind nginx with
docker/nginx.conf, on a podman bridge network whose DNS (aardvark-dns) is what nginx's ``resolve`` re-reads.

What differs from ``docker compose -f docker/compose.yaml up --scale augserve=2``, and why (an override file and
environment variables given to podman-compose; compose.yaml itself is used as shipped):
- nginx's image is a local Debian build with nginx >= 1.27.3 instead of nginx:1.28-alpine (no registry here);
- nginx.conf's ``resolver 127.0.0.11`` (Docker's embedded DNS) becomes the podman network's gateway, where
  aardvark-dns answers; nothing else in it changes;
- AUGSERVE_IMAGE names the image built by the test, the balancer is published on 127.0.0.1 only, one thread
  per replica (2 cores / 2 replicas, as docs/deploy.md says), and a 4 s drain so that stopping a replica
  mid-epoch takes seconds.
podman 4.3 ignores ``condition: service_healthy`` (podman-compose says so and starts nginx at once), which is
harmless here: nginx resolves the replicas as they appear. The test waits for every health check to pass.

Run by ``make container-test``; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from augserve_client import Client
from augserve_client.torch_dataset import AugmentedDataset
from deploy_files import DOCKER_DIR
from nginx_harness import free_port
from podman_harness import (
    COMPOSE_LABEL,
    COMPOSE_PROJECT,
    IMAGE,
    LABEL,
    NGINX_IMAGE,
    PodmanError,
    image_exists,
    inspect,
    podman,
    render_nginx_conf,
    run,
    save_logs,
    sweep,
    unavailable,
    wait_healthy,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("AUGSERVE_CONTAINER_TEST") != "1",
        reason="builds and runs containers with podman: `make container-test`",
    ),
]

COMPOSE = DOCKER_DIR / "compose.yaml"
N = 144  # as in test_load_balancer.py: 3 x the 48 indexed files, 64 MB of 384x384 samples per epoch
SPEC = {"output": {"size": [384, 384], "format": "npy"}}
DRAIN_SECONDS = 4


def grace_seconds() -> int:
    """compose.yaml's stop_grace_period ("30s"), what `podman-compose stop` gives a replica after SIGTERM."""
    period = yaml.safe_load(COMPOSE.read_text())["services"]["augserve"]["stop_grace_period"]
    assert period.endswith("s"), period
    return int(period[:-1])


def podman_compose() -> str:
    found = shutil.which("podman-compose") or str(Path(sysconfig.get_path("scripts")) / "podman-compose")
    if not Path(found).exists():
        pytest.fail("podman-compose is not installed: `make container-test` installs it into the venv")
    return found


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.network = f"{COMPOSE_PROJECT}_default"
        self.override = workdir / "compose.podman.yaml"
        self.env = {
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
        assert len(self.replicas) == 2, self.replicas
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

    def replica_get(self, name: str, path: str) -> dict[str, object]:
        """GET on a replica from inside its container (replicas publish no port)."""
        code = (
            "import json, sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8000{path}', timeout=10).read().decode())"
        )
        return json.loads(podman("exec", name, "python", "-I", "-c", code, timeout=30).stdout)

    def produced(self, name: str) -> int:
        """Samples of dataset ``lb`` a replica has produced: each is one decoded-cache lookup."""
        stats = self.replica_get(name, "/v1/datasets/lb")["cache"]
        assert isinstance(stats, dict)
        return int(stats["hits"]) + int(stats["misses"])

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
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            for _ in range(4):
                httpx.get(f"{self.url}/readyz", timeout=10)
            if address in podman("logs", self.nginx).stdout:
                return time.monotonic() - started
            time.sleep(0.5)
        pytest.fail(f"nginx sent nothing to {name} ({address}) in {timeout} s")


def inspect_network(name: str) -> dict[str, list[dict[str, str]]]:
    (found,) = json.loads(podman("network", "inspect", name).stdout)
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    for image in (IMAGE, NGINX_IMAGE):
        if not image_exists(image):
            pytest.fail(f"{image} is missing: run `make container-test`, which builds it before the tests")
    sweep()
    started = Stack(tmp_path_factory.mktemp("compose"))
    try:
        yield started.up()
    finally:
        started.down()


@pytest.fixture(scope="module")
def dataset(stack: Stack, indexed_files: list[Path]) -> str:
    """Dataset ``lb`` uploaded once through nginx (upload streams through: proxy_request_buffering off)."""
    with Client(stack.url) as client:
        created = client.upload_dataset("lb", indexed_files * 3, labels=list(range(N)), progress=False)
    assert created["count"] == N
    return "lb"


def test_nginx_finds_both_replicas_through_podman_dns(stack: Stack) -> None:
    version = podman("exec", stack.nginx, "nginx", "-v").stderr.strip()
    numbers = tuple(int(part) for part in version.rsplit("/", 1)[1].split("."))
    assert numbers >= (1, 27, 3), f"{version}: `resolve` in an upstream needs 1.27.3"
    replica_ips = {stack.ip(name) for name in stack.replicas}
    resolved = podman("exec", stack.nginx, "getent", "ahostsv4", "augserve").stdout.split()
    assert replica_ips <= set(resolved), (replica_ips, resolved)
    for _ in range(8):
        assert httpx.get(f"{stack.url}/readyz", timeout=10).status_code == 200
    log = podman("logs", stack.nginx).stdout
    used = {line.split("upstream=")[1].split(":")[0] for line in log.splitlines() if "/readyz" in line}
    assert used == replica_ips, f"nginx used {used}, the replicas are {replica_ips}"


def test_upload_through_nginx_then_stream_from_either_replica(stack: Stack, dataset: str) -> None:
    for name in stack.replicas:  # one named volume: both replicas have what one of them stored
        assert stack.replica_get(name, f"/v1/datasets/{dataset}")["count"] == N
    with Client(stack.url) as client:
        labels = [label for batch in client.epoch(dataset, SPEC, batch_size=16, seed=2) for label in batch.labels]
    assert sorted(labels) == list(range(N))


@dataclass
class Outage:
    """One epoch streamed through nginx while the replica serving it was killed or stopped."""

    replica: str  # the one acted on
    labels: list[int]  # received, in order
    before: dict[str, int]  # samples each replica had produced before the epoch
    action_seconds: float  # how long `podman kill` / `podman stop` took
    epoch_seconds: float


def epoch_with_outage(stack: Stack, dataset: str, action: str, read_delay: float) -> Outage:
    """Stream one epoch through nginx; after the third batch, ``action`` (kill/stop) the replica serving it."""
    data = AugmentedDataset(stack.url, dataset, SPEC, batch_size=4, seed=5, prefetch=0, retries=10, progress=False)
    before = {name: stack.produced(name) for name in stack.replicas}
    seen: list[int] = []
    target, errors, took = "", [], [0.0]
    acting: threading.Thread | None = None

    def act() -> None:
        started = time.monotonic()
        try:
            if action == "kill":
                podman("kill", "--signal", "KILL", target)
            else:
                podman("stop", "--time", str(grace_seconds()), target, timeout=grace_seconds() + 30)
        except PodmanError as error:
            errors.append(error)
        took[0] = time.monotonic() - started

    started = time.monotonic()
    for number, (_, labels) in enumerate(data):
        seen += labels.tolist()
        if number == 2:
            target = max(stack.replicas, key=lambda name: stack.produced(name) - before[name])
            assert stack.produced(target) > before[target]
            acting = threading.Thread(target=act)
            acting.start()
        time.sleep(read_delay)
    elapsed = time.monotonic() - started
    assert acting is not None
    acting.join(grace_seconds() + 60)
    assert not errors, errors
    return Outage(target, seen, before, took[0], elapsed)


def test_a_replica_killed_mid_epoch_loses_and_repeats_nothing(stack: Stack, dataset: str) -> None:
    outage = epoch_with_outage(stack, dataset, "kill", read_delay=0.0)
    assert sorted(outage.labels) == list(range(N))
    (survivor,) = [name for name in stack.replicas if name != outage.replica]
    assert stack.running(survivor) and stack.produced(survivor) > outage.before[survivor]
    stack.ensure_running(outage.replica)  # restart: unless-stopped may have done it already


def test_a_replica_stopped_mid_epoch_drains_and_the_epoch_resumes_elsewhere(stack: Stack, dataset: str) -> None:
    """``podman stop`` (SIGTERM through the init process): the replica refuses new work and gives its stream
    AUGSERVE_DRAIN_SECONDS, then exits; the client resumes through nginx on the other replica.

    The client reads slowly, so the stream outlives the drain (36 batches x 0.25 s = 9 s > 4 s) and the replica
    exits with bytes still queued for nginx. Its network goes with it, so those bytes and the FIN never arrive:
    nginx learns of it from TCP keepalive (compose.yaml's sysctls, nginx.conf's proxy_socket_keepalive), about
    25 s after the last byte. Without that, the epoch would wait for the client's 120 s read timeout.
    """
    outage = epoch_with_outage(stack, dataset, "stop", read_delay=0.25)
    assert sorted(outage.labels) == list(range(N))
    state = inspect(outage.replica)["State"]
    assert isinstance(state, dict)
    assert state["Running"] is False and state["ExitCode"] in (0, 143), state
    # Stopped by the drain, not by podman's SIGKILL at the end of stop_grace_period.
    assert DRAIN_SECONDS <= outage.action_seconds < grace_seconds(), outage.action_seconds
    (survivor,) = [name for name in stack.replicas if name != outage.replica]
    assert stack.produced(survivor) > outage.before[survivor], "the rest of the epoch came from the other replica"
    assert outage.epoch_seconds < 60, f"{outage.epoch_seconds:.0f} s: the dead stream was not noticed in time"
    stack.ensure_running(outage.replica)


def test_a_replica_added_by_scaling_gets_traffic_without_a_reload(stack: Stack) -> None:
    """docs/deploy.md: `up --scale augserve=N` again, and nginx (`resolve`, valid=10s) finds the new replica."""
    running = {name: inspect(name)["Id"] for name in [*stack.replicas, stack.nginx]}
    stack.compose("up", "--detach", "--no-build", "--scale", "augserve=3")
    assert {name: inspect(name)["Id"] for name in running} == running, "scaling up recreated running containers"
    added = [name for name in stack.names("augserve") if name not in stack.replicas]
    assert len(added) == 1, added
    stack.replicas.append(added[0])
    wait_healthy(added[0])
    assert stack.wait_for_traffic(added[0]) < 20, "nginx re-resolves every 10 s"
