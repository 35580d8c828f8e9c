"""API keys through docker/nginx.conf: nginx hands the client's ``Authorization`` header to the replica and the
replica's 401 and 403 back to the client, on plain calls and on epoch streams.

A keyed server behind a proxy is only as safe as the proxy is faithful: a proxy that dropped the header would
lock every trainer out, and one that answered for the replica would hide who refused. A real augserve process
with a keys file made by ``python -m augserve.keys`` (the operator's command) sits behind Debian's nginx running
the shipped config; the client reaches it only through nginx.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from augserve.devserver import ServerProcess
from augserve_client import AuthenticationError, Client, PermissionDeniedError
from nginx_harness import NginxProcess

pytestmark = pytest.mark.slow

SPEC = {"output": {"size": [16, 16], "format": "npy"}}
N = 12
KEY_LINE = re.compile(r"^key \(shown once\): (\S+)$", re.MULTILINE)
ENTRY_LINE = re.compile(r"^entry for the keys file: (\{.*\})$", re.MULTILINE)


@dataclass(frozen=True)
class Keyed:
    """nginx in front of one replica that has a keys file; ``keys`` maps a role to its key."""

    nginx: NginxProcess
    replica: ServerProcess
    keys: dict[str, str]


def make_key(name: str, role: str) -> tuple[str, dict[str, str]]:
    """A key and its keys-file entry, from ``python -m augserve.keys`` as an operator runs it."""
    printed = subprocess.run(
        [sys.executable, "-m", "augserve.keys", name, role], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    key, entry = KEY_LINE.search(printed), ENTRY_LINE.search(printed)
    assert key and entry, f"python -m augserve.keys printed: {printed!r}"
    return key[1], json.loads(entry[1])


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, indexed_files: list[Path]) -> Iterator[Keyed]:
    base = tmp_path_factory.mktemp("nginx-keys")
    made = {role: make_key(name, role) for role, name in (("read", "ci"), ("write", "alice"))}
    (base / "keys.json").write_text(json.dumps({"keys": [entry for _, entry in made.values()]}))
    replica = ServerProcess(base / "data", keys_file=base / "keys.json", threads=1).start()
    try:
        with NginxProcess(base / "nginx", upstream_ports=[replica.port]) as nginx:
            keys = {role: key for role, (key, _) in made.items()}
            with Client(nginx.url, api_key=keys["write"]) as writer:  # registering is itself a keyed call
                writer.upload_dataset("keyed", indexed_files[:N], labels=list(range(N)), progress=False)
            yield Keyed(nginx, replica, keys)
    finally:
        replica.stop()


def test_without_a_key_nginx_passes_on_the_replicas_401(keyed: Keyed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUGSERVE_API_KEY", raising=False)
    calls = (("GET", "/v1/datasets", None), ("POST", "/v1/datasets/keyed/epochs", {"spec": SPEC, "batch_size": 4}))
    for method, path, body in calls:
        response = httpx.request(method, f"{keyed.nginx.url}{path}", json=body, timeout=30)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["code"] == "unauthorized"  # augserve's JSON error, not a page of nginx's
        assert response.headers["www-authenticate"] == "Bearer"
    with Client(keyed.nginx.url) as anonymous, pytest.raises(AuthenticationError):
        list(anonymous.epoch("keyed", SPEC, batch_size=4))


def test_with_a_key_a_dataset_call_and_an_epoch_stream_pass_through_nginx(keyed: Keyed) -> None:
    with Client(keyed.nginx.url, api_key=keyed.keys["read"]) as reader:
        described = reader.describe("keyed")
        labels = [int(label) for batch in reader.epoch("keyed", SPEC, batch_size=4, seed=3) for label in batch.labels]
    assert described["count"] == N and described["owner"] == "alice"
    assert sorted(labels) == list(range(N))  # the whole epoch, streamed through nginx under the read key
    log = keyed.nginx.log()
    assert re.search(r'"POST /v1/datasets/keyed/epochs HTTP/1\.1" 200 ', log), log
    assert all(key not in log for key in keyed.keys.values())  # nginx's access log never holds a key


def test_a_read_key_cannot_delete_through_nginx(keyed: Keyed) -> None:
    url = f"{keyed.nginx.url}/v1/datasets/keyed"
    response = httpx.delete(url, headers={"Authorization": f"Bearer {keyed.keys['read']}"}, timeout=30)
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    with Client(keyed.nginx.url, api_key=keyed.keys["read"]) as reader:
        with pytest.raises(PermissionDeniedError, match="needs 'write'"):
            reader.delete_dataset("keyed")
        assert "keyed" in [dataset["name"] for dataset in reader.datasets()]  # still there
