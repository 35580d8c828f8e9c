"""One base URL, the balancer's, while its replica is gone: nginx (docker/nginx.conf) answers 502 itself, and
the client waits that out instead of failing: plain calls are sent again with backoff (only idempotent ones,
never a probe, a bounded number of times) and an epoch stream resumes at its next undelivered batch.

A real augserve process behind Debian's nginx with the shipped config. The replica is killed (SIGKILL), and
started again on the same port only once nginx has answered the client with a 502, so every test sees the
balancer's own error first, whatever the machine's speed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client, InternalServerError
from augserve_client.connections import ProxyRetries, ProxyRetryingClient
from nginx_harness import NginxProcess, free_port, wait_until

pytestmark = pytest.mark.slow
# More patience than the defaults (23.5 s for a call, 8 tries for an epoch): the replica is started again only
# after the first 502, and on a loaded machine starting it can take longer than the default windows.
PATIENT = ProxyRetries(tries=12)
EPOCH_TRIES = 12

N = 144  # 3 x the 48 indexed files; 384x384 samples: 64 MB an epoch, far more than the buffers on the way
BIG = {"output": {"size": [384, 384], "format": "npy"}}


@dataclass
class Balanced:
    """One augserve replica behind nginx; the replica can be killed and started again on its port."""

    nginx: NginxProcess
    replica: ServerProcess

    def statuses(self, request: str) -> list[int]:
        """The statuses nginx answered ``request`` ("GET /v1/datasets") with, in order, from its access log."""
        return answered(self.nginx, request)

    def restart_after_a_502(self, request: str) -> threading.Thread:
        """In the background: once nginx has answered ``request`` with 502, start the replica again."""

        def restart() -> None:
            wait_until(lambda: 502 in self.statuses(request), 60, f"nginx answering {request} with 502")
            self.replica = ServerProcess(self.replica.data_dir, port=self.replica.port, threads=1).start()

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        return thread


def answered(nginx: NginxProcess, request: str) -> list[int]:
    access = re.compile(rf'^\S+ "{re.escape(request)} HTTP/1\.1" (\d{{3}}) ', re.MULTILINE)  # log_format upstream
    return [int(status) for status in access.findall(nginx.log_path.read_text(errors="replace"))]


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory, indexed_files: list[Path]) -> Iterator[Balanced]:
    """Each test kills the replica and leaves the one it started again in ``replica``."""
    tmp_path = tmp_path_factory.mktemp("proxy-retries")
    replica = ServerProcess(tmp_path / "data", threads=1).start()
    with NginxProcess(tmp_path / "nginx", upstream_ports=[replica.port]) as nginx:
        setup = Balanced(nginx, replica)
        try:
            with Client(nginx.url) as client:
                client.upload_dataset("px", indexed_files * 3, labels=list(range(N)), progress=False)
            yield setup
        finally:
            setup.replica.stop()


def in_background(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``call`` in a thread; the list gets its result or the exception it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as error:  # handed to the test, which asserts on it
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_call_through_the_balancer_waits_out_its_502s_until_the_replica_is_back(balanced: Balanced) -> None:
    balanced.replica.kill()
    restarting = balanced.restart_after_a_502("GET /v1/datasets/px")
    with Client(balanced.nginx.url) as client:
        assert isinstance(client.http, ProxyRetryingClient), "one base URL: calls wait out a proxy's errors"
        client.http.proxy_retries = PATIENT
        calling, outcome = in_background(lambda: client.describe("px"))
        calling.join(180)
    restarting.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], dict), outcome
    assert outcome[0]["count"] == N
    # nginx writes the 200's access-log line after its answer: wait for it (found missing once, on a loaded run)
    wait_until(lambda: 200 in balanced.statuses("GET /v1/datasets/px"), 10, "the 200 in nginx's access log")
    answered = balanced.statuses("GET /v1/datasets/px")
    assert answered[0] == 502 and answered[-1] == 200, answered
    assert set(answered) == {502, 200}, answered


def test_retries_are_bounded_and_only_for_idempotent_calls_that_are_not_probes(tmp_path: Path) -> None:
    with NginxProcess(tmp_path / "nginx", upstream_ports=[free_port()]) as nginx:  # nothing there: nginx says 502
        with ProxyRetryingClient(base_url=nginx.url, proxy_retries=ProxyRetries(tries=2, backoff=0.05)) as http:
            assert http.get("/v1/datasets").status_code == 502
            assert http.post("/v1/not-a-route", json={}).status_code == 502  # not a POST augserve calls idempotent
            assert http.get("/readyz").status_code == 502
        with Client(nginx.url) as client, pytest.raises(InternalServerError) as failed:
            client.request("POST", "/v1/not-a-route", json={})
        assert failed.value.status == 502
        expected = {
            "GET /v1/datasets": [502] * 3,  # the first try and two more
            "POST /v1/not-a-route": [502, 502],  # once from each client
            "GET /readyz": [502],
        }
        # nginx writes a request's access-log line after its answer: wait until every line is there, then
        # compare (a retry too many would show as an extra line).
        wait_until(
            lambda: sum(map(len, expected.values())) <= sum(len(answered(nginx, r)) for r in expected), 10, "log"
        )
        assert {request: answered(nginx, request) for request in expected} == expected


def test_an_epoch_through_the_balancer_resumes_after_its_replica_died_mid_stream(balanced: Balanced) -> None:
    epochs = "POST /v1/datasets/px/epochs"
    labels: list[int] = []
    restarting: threading.Thread | None = None
    with Client(balanced.nginx.url) as client:
        for number, batch in enumerate(client.epoch("px", BIG, batch_size=4, seed=3, retries=EPOCH_TRIES)):
            labels += batch.labels.tolist()
            if number == 2:
                balanced.replica.kill()
                restarting = balanced.restart_after_a_502(epochs)
    assert restarting is not None
    restarting.join(10)
    assert sorted(labels) == list(range(N)), "every sample exactly once"
    # nginx logs a request when it ends: the cut stream's 200 may come after the first 502s, the resumed one's last
    # (written just after the client has read the stream's end: wait for it).
    wait_until(lambda: balanced.statuses(epochs).count(200) >= 2, 10, "the resumed stream's 200 in the access log")
    answered = balanced.statuses(epochs)
    assert answered.count(200) == 2 and set(answered) == {200, 502} and answered[-1] == 200, answered
