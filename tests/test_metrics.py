"""What operators see, scraped from real servers: Prometheus metrics (one process and two workers added up),
request ids echoed and in error bodies, and JSON access lines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow
SPEC = {"output": {"size": [16, 16], "format": "npy"}}


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, indexed_files: list[Path]) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("observed") / "data", log_level="info", log_format="json").start()
    with Client(server.url) as client:
        client.upload_dataset("seen", indexed_files[:8], labels=list(range(8)), progress=False)
        assert len(list(client.epoch("seen", SPEC, batch_size=4))) == 2
        assert len(list(client.augment([np.zeros((8, 8, 3), np.uint8)], SPEC, variants=3))) == 3
    httpx.get(f"{server.url}/v1/nothing-here")
    yield server
    server.stop()


def test_requests_variants_bytes_and_timings_are_counted(observed: ServerProcess) -> None:
    time.sleep(1.5)  # the state gauges are sampled once a second
    samples = scrape(observed)
    augment = {"route": "/v1/augment", "method": "POST", "status": "200"}
    assert value(samples, "augserve_requests_total", **augment) == 1
    assert value(samples, "augserve_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value(samples, "augserve_variants_total", kind="augment") == 3
    assert value(samples, "augserve_variants_total", kind="epoch") == 8
    assert value(samples, "augserve_sent_bytes_total", route="/v1/datasets/{name}/epochs") > 8 * 16 * 16 * 3
    assert value(samples, "augserve_time_to_first_batch_seconds_count") == 1
    assert value(samples, "augserve_decode_seconds_count") >= 8
    assert value(samples, "augserve_key_requests_total", key="anonymous") >= 4
    assert value(samples, "augserve_cache_misses") + value(samples, "augserve_cache_hits") >= 8
    assert value(samples, "augserve_streams_in_flight") == 0
    assert value(samples, "augserve_request_duration_seconds_count", route="/v1/augment") == 1


def test_a_request_id_is_echoed_made_up_and_in_error_bodies(observed: ServerProcess) -> None:
    given = httpx.get(f"{observed.url}/v1/datasets/nope", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42" and given.json()["request_id"] == "trace-42"
    made = httpx.get(f"{observed.url}/v1/ops")
    assert len(made.headers["x-request-id"]) == 32
    too_long = httpx.get(f"{observed.url}/v1/ops", headers={"X-Request-ID": "x" * 500})
    assert len(too_long.headers["x-request-id"]) == 32  # replaced, not echoed


def test_access_lines_are_json_with_the_request_fields(observed: ServerProcess) -> None:
    lines = [json.loads(line) for line in observed.log().splitlines() if line.startswith("{")]
    epoch = next(line for line in lines if line.get("route") == "/v1/datasets/{name}/epochs")
    assert epoch["logger"] == "augserve.access" and epoch["status"] == 200 and epoch["dataset"] == "seen"
    assert epoch["key"] == "anonymous" and epoch["bytes"] > 0 and epoch["duration_s"] >= 0
    assert len(epoch["request_id"]) == 32


def test_two_workers_are_added_up(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", workers=2, threads=1).start()
    try:
        for _ in range(6):
            httpx.get(f"{server.url}/v1/ops", headers={"Connection": "close"})
        labels = {"route": "/v1/ops", "method": "GET", "status": "200"}
        assert [value(scrape(server), "augserve_requests_total", **labels) for _ in range(4)] == [6.0] * 4
    finally:
        server.stop()
