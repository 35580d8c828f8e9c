"""API keys on a real server: 401 without a key, roles, ownership of datasets, keys reloaded without a
restart, the client's api_key on calls and streams, and a per-key limit on open streams (429)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from augserve.app import _warn_if_open
from augserve.devserver import ServerProcess
from augserve.keys import KeyRing, new_key
from augserve.settings import Settings
from augserve_client import AuthenticationError, Client, PermissionDeniedError

pytestmark = pytest.mark.slow
SPEC = {"output": {"size": [16, 16], "format": "npy"}}
BIG = {"output": {"size": [512, 512], "format": "npy"}}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, indexed_files: list[Path]) -> Iterator[tuple[ServerProcess, dict]]:
    base = tmp_path_factory.mktemp("keyed")
    keys, entries = {}, []
    for name, role in (("reader", "read"), ("alice", "write"), ("bob", "write"), ("root", "admin")):
        keys[name], entry = new_key(name, role)
        entries.append(entry)
    (base / "keys.json").write_text(json.dumps({"keys": entries}))
    server = ServerProcess(base / "data", keys_file=base / "keys.json", max_streams_per_key=1, threads=2).start()
    with Client(server.url, api_key=keys["alice"]) as client:
        client.upload_dataset("alices", indexed_files[:8], labels=list(range(8)), progress=False)
    yield server, keys
    server.stop()


def test_without_a_known_key_work_is_refused_and_health_is_open(keyed: tuple[ServerProcess, dict]) -> None:
    server, _ = keyed
    for headers in ({}, {"Authorization": "Bearer augserve-nonsense"}, {"Authorization": "Basic eDp5"}):
        response = httpx.get(f"{server.url}/v1/datasets", headers=headers)
        assert response.status_code == 401 and response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/livez").status_code == 200
    with Client(server.url) as client, pytest.raises(AuthenticationError):
        client.datasets()


def test_a_read_key_streams_but_does_not_register(keyed: tuple[ServerProcess, dict], indexed_files: list[Path]) -> None:
    server, keys = keyed
    with Client(server.url, api_key=keys["reader"]) as client:
        assert [batch.number for batch in client.epoch("alices", SPEC, batch_size=4)] == [0, 1]
        assert len(list(client.augment([indexed_files[0]], SPEC, variants=2))) == 2
        with pytest.raises(PermissionDeniedError, match="needs 'write'"):
            client.upload_dataset("readers", indexed_files[:2], progress=False)


def test_a_write_key_deletes_only_its_own_datasets(
    keyed: tuple[ServerProcess, dict], indexed_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, keys = keyed
    monkeypatch.setenv("AUGSERVE_API_KEY", keys["bob"])  # the client reads it when no api_key= is given
    with Client(server.url) as bob:
        assert bob.upload_dataset("bobs", indexed_files[8:12], progress=False)["owner"] == "bob"
        with pytest.raises(PermissionDeniedError, match="belongs to 'alice'"):
            bob.delete_dataset("alices")
        bob.delete_dataset("bobs")
    with Client(server.url, api_key=keys["alice"]) as alice:
        alice.upload_dataset("alices-2", indexed_files[12:14], progress=False)
    with Client(server.url, api_key=keys["root"]) as root:
        root.delete_dataset("alices-2")  # an admin deletes anyone's
        assert "alices-2" not in [dataset["name"] for dataset in root.datasets()]


def test_keys_are_reloaded_when_the_file_changes(keyed: tuple[ServerProcess, dict]) -> None:
    server, _ = keyed
    path = Path(server.settings["keys_file"])
    original = path.read_text()
    key, entry = new_key("newcomer", "read")
    try:
        path.write_text(json.dumps({"keys": [*json.loads(original)["keys"], entry]}))
        with Client(server.url, api_key=key) as client:
            assert any(dataset["name"] == "alices" for dataset in client.datasets())
            path.write_text(original)  # revoked
            time.sleep(0.01)
            with pytest.raises(AuthenticationError):
                client.datasets()
    finally:
        path.write_text(original)


def test_a_key_over_its_stream_limit_waits_its_turn(keyed: tuple[ServerProcess, dict]) -> None:
    """max_streams_per_key=1: a second stream gets 429 with Retry-After; EpochBatches waits and then gets it."""
    server, keys = keyed
    headers = {"Authorization": f"Bearer {keys['reader']}"}
    body = {"spec": BIG, "batch_size": 8}
    with httpx.stream("POST", f"{server.url}/v1/datasets/alices/epochs", json=body, headers=headers) as first:
        assert first.status_code == 200  # 6 MB, unread: the stream stays open
        second = httpx.post(f"{server.url}/v1/datasets/alices/epochs", json=body, headers=headers)
        assert second.status_code == 429 and second.json()["code"] == "too_many_requests"
        assert second.headers["retry-after"] == "1" and second.json()["limit"] == "max_streams_per_key"
        waited: list[int] = []

        def waiting() -> None:
            with Client(server.url, api_key=keys["reader"]) as client:
                waited.extend(batch.number for batch in client.epoch("alices", SPEC, batch_size=4))

        thread = threading.Thread(target=waiting)
        thread.start()
        time.sleep(1.5)
    thread.join(30)  # the first stream closed: the waiting one got its turn
    assert waited == [0, 1]


def test_a_server_open_to_the_network_without_keys_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="augserve"):
        _warn_if_open(Settings(host="127.0.0.1"), KeyRing(None))
        assert not caplog.records
        _warn_if_open(Settings(host="0.0.0.0"), KeyRing(None))
    assert "without API keys" in caplog.text
