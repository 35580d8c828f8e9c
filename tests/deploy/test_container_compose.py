"""docker/compose.yaml for real (``compose_stack.Stack``): two augserve replicas behind nginx, run by podman-compose.

nginx finds the replicas through podman's DNS and spreads requests; a dataset uploaded through nginx is on the
one shared volume and streams; a replica killed, and one stopped, mid-epoch: the epoch still arrives exactly
once; a replica added by scaling gets traffic without a reload. Run by ``make container-test``; skipped otherwise.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from augserve_client import Client, InternalServerError
from augserve_client.torch_dataset import AugmentedDataset
from compose_stack import DRAIN_SECONDS, Stack, grace_seconds
from nginx_harness import wait_until
from podman_harness import PodmanError, image_exists, inspect, podman, sweep, unavailable, wait_healthy
from podman_images import IMAGE, NGINX_IMAGE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("AUGSERVE_CONTAINER_TEST") != "1",
        reason="builds and runs containers with podman: `make container-test`",
    ),
]

N = 144  # as in test_load_balancer.py: 3 x the 48 indexed files, 64 MB of 384x384 samples per epoch
SPEC = {"output": {"size": [384, 384], "format": "npy"}}


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


def test_a_replica_killed_mid_epoch_loses_and_repeats_nothing(stack: Stack, dataset: str) -> None:
    data = AugmentedDataset(stack.url, dataset, SPEC, batch_size=4, seed=5, prefetch=0, retries=10, progress=False)
    before = {name: stack.produced(name) for name in stack.replicas}
    seen: list[int] = []
    killed = ""
    for number, (_, labels) in enumerate(data):
        seen += labels.tolist()
        if number == 2:
            killed = stack.serving(before)
            podman("kill", "--signal", "KILL", killed)
    assert sorted(seen) == list(range(N))
    (survivor,) = [name for name in stack.replicas if name != killed]
    assert stack.running(survivor) and stack.produced(survivor) > before[survivor]
    stack.ensure_running(killed)  # restart: unless-stopped may have done it already


def test_a_replica_stopped_mid_epoch_drains_and_the_epoch_resumes_elsewhere(stack: Stack, dataset: str) -> None:
    """``podman stop`` (SIGTERM through the init process) while the replica streams an epoch: it refuses new work,
    gives the stream AUGSERVE_DRAIN_SECONDS, ends it with the typed ``shutting_down`` record and exits; the epoch
    resumes through nginx on the other replica at the next batch, every sample exactly once.

    Each step waits for a condition, not for time: the stream is in flight on the replica (its own
    ``augserve_streams_in_flight`` gauge) before the stop, and the client reads nothing more until the replica
    says the drain deadline passed with the stream still open. Held back by the client, the stream cannot end
    by itself meanwhile (the rest of the epoch is far more than the socket buffers hold), and once the client
    reads again the replica's next batch is the ``shutting_down`` record. ``retries=0`` makes that record
    surface here instead of being retried inside ``EpochBatches``; ``next_batch`` is where the epoch resumes.
    """
    before = {name: stack.produced(name) for name in stack.replicas}
    labels: list[int] = []
    stopped: list[PodmanError] = []
    with Client(stack.url) as client:
        first = client.epoch(dataset, SPEC, batch_size=4, seed=5, retries=0)
        batches = iter(first)
        for _ in range(3):
            labels += next(batches).labels.tolist()
        target = stack.serving(before)
        wait_until(lambda: stack.streams_in_flight(target) >= 1, 30, f"a stream in flight on {target}")
        stopping = threading.Thread(target=stop_replica, args=(target, stopped))
        stopping.start()
        ending = "draining: ending 1 stream(s) with shutting_down"
        wait_until(lambda: ending in stack.log(target), DRAIN_SECONDS + 30, f"{target} logging {ending!r}")
        with pytest.raises(InternalServerError) as ended:
            for batch in batches:
                labels += batch.labels.tolist()
        assert ended.value.code == "shutting_down", ended.value
        resumed_from = len(labels)
        rest = client.epoch(dataset, SPEC, batch_size=4, seed=5, start_batch=first.next_batch)
        labels += [label for batch in rest for label in batch.labels.tolist()]
    stopping.join(grace_seconds() + 60)
    assert not stopping.is_alive() and not stopped, stopped
    assert sorted(labels) == list(range(N)), "every sample exactly once"
    state = inspect(target)["State"]
    assert isinstance(state, dict)
    # Drained and exited by itself: podman's SIGKILL at the end of stop_grace_period would be exit status 137.
    assert state["Running"] is False and state["ExitCode"] in (0, 143), state
    assert f"shutting_down: the server is shutting down and gave this stream {DRAIN_SECONDS} s" in stack.log(target)
    (survivor,) = [name for name in stack.replicas if name != target]
    assert stack.produced(survivor) - before[survivor] >= N - resumed_from, "the rest came from the other replica"
    stack.ensure_running(target)


def test_a_replica_gone_with_its_stream_unsent_is_found_dead_by_keepalive(stack: Stack, dataset: str) -> None:
    """A replica stopped while its client reads nothing exits with bytes still queued for nginx, and its network
    goes with it: neither those bytes nor a FIN ever arrive. nginx finds the dead connection by TCP keepalive
    (compose.yaml's sysctls, nginx.conf's proxy_socket_keepalive) and closes the client's stream, which the
    client resumes on the other replica. Without keepalive, nginx would wait out proxy_read_timeout (1 h) and the
    client its own read timeout; the condition checked is nginx's own log line, not a duration."""
    before = {name: stack.produced(name) for name in stack.replicas}
    errors_before = len(nginx_errors(stack))
    labels: list[int] = []
    with Client(stack.url, timeout=600) as client:  # longer than keepalive could ever need: nginx must end it
        batches = iter(client.epoch(dataset, SPEC, batch_size=4, seed=6))
        for _ in range(3):
            labels += next(batches).labels.tolist()
        target = stack.serving(before)
        wait_until(lambda: stack.streams_in_flight(target) >= 1, 30, f"a stream in flight on {target}")
        errors: list[PodmanError] = []
        stop_replica(target, errors)  # returns once it exited: the drain, the cut grace, then the process ends
        assert not errors, errors
        labels += [label for batch in batches for label in batch.labels.tolist()]
    assert sorted(labels) == list(range(N)), "every sample exactly once"
    found = nginx_errors(stack)[errors_before:]
    assert "(110: Connection timed out) while reading upstream" in found, found[-3000:]
    stack.ensure_running(target)


def nginx_errors(stack: Stack) -> str:
    """nginx's error log (its stderr; the access log is its stdout), which only grows."""
    return podman("logs", stack.nginx).stderr


def stop_replica(name: str, errors: list[PodmanError]) -> None:
    """``podman stop`` as compose does it (SIGTERM, SIGKILL after stop_grace_period); returns once it exited."""
    try:
        podman("stop", "--time", str(grace_seconds()), name, timeout=grace_seconds() + 30)
    except PodmanError as error:
        errors.append(error)


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
