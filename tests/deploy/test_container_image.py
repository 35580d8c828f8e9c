"""The image, built from the Dockerfile and run for real with podman: healthy by its own HEALTHCHECK, serves the
README's curl example, runs as its non-root user, keeps /data in a volume across a restart and a new container.

Run by ``make container-test`` (tests/deploy/run_containers.py builds the image first); skipped otherwise. The
container is on podman's default bridge network with its port published on 127.0.0.1 only.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from augserve_client import Client
from deploy_files import REPO, env, final_stage
from nginx_harness import free_port
from PIL import Image
from podman_harness import LABEL, image_exists, inspect, podman, save_logs, unavailable, wait_healthy
from podman_images import IMAGE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("AUGSERVE_CONTAINER_TEST") != "1",
        reason="builds and runs containers with podman: `make container-test`",
    ),
]

UID = "10001"


@pytest.fixture(scope="module")
def image() -> str:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    if not image_exists(IMAGE):
        pytest.fail(f"{IMAGE} is missing: run `make container-test`, which builds it before the tests")
    return IMAGE


class Service:
    """One container of the image: port 8000 published on 127.0.0.1, /data on a named volume."""

    def __init__(self, image: str, volume: str, name: str) -> None:
        self.image, self.volume, self.name = image, volume, name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        podman(
            "run", "--detach", "--name", self.name, "--label", LABEL,
            "--publish", f"127.0.0.1:{self.port}:8000", "--volume", f"{self.volume}:/data", self.image,
        )  # fmt: skip
        wait_healthy(self.name)
        return self

    def remove(self) -> None:
        save_logs(self.name)
        podman("rm", "--force", "--time", "0", self.name, check=False)

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=False)


@pytest.fixture(scope="module")
def volume(image: str) -> Iterator[str]:
    name = "augserve-ct-image-data"
    podman("volume", "rm", "--force", name, check=False)
    podman("volume", "create", "--label", LABEL, name)
    yield name
    podman("volume", "rm", "--force", name, check=False)


@pytest.fixture(scope="module")
def service(image: str, volume: str) -> Iterator[Service]:
    running = Service(image, volume, "augserve-ct-image")
    running.remove()
    try:
        yield running.start()
    finally:
        running.remove()


def test_image_config_is_what_operators_rely_on(image: str) -> None:
    config = inspect(image)["Config"]
    assert isinstance(config, dict)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Cmd"] == ["augserve", "serve"]
    assert set(config["ExposedPorts"]) == {f"{env(final_stage())['AUGSERVE_PORT']}/tcp"}
    assert set(config["Volumes"]) == {"/data"}
    assert "NO_ALBUMENTATIONS_UPDATE=1" in config["Env"]
    # Docker's image format keeps the HEALTHCHECK (podman's default OCI format drops it, with a warning).
    check = inspect(image)["Healthcheck"]
    assert isinstance(check, dict)
    test = check["Test"]
    assert test[:4] == ["CMD", "python", "-I", "-c"] and "/healthz" in test[4]


def test_image_holds_the_venv_and_nothing_of_the_build(image: str) -> None:
    """The final stage gets only /opt/venv: no source tree, no trace of the build machine's pip settings."""
    script = "ls -A /opt; ls -d /src /etc/pip.conf /etc/xdg/pip 2>/dev/null; python -c 'import augserve, cv2'"
    result = podman("run", "--rm", "--network=none", "--label", LABEL, "--entrypoint", "sh", image, "-c", script)
    assert result.stdout.split() == ["venv"], result.stdout


def test_healthy_and_serves_the_readme_curl_example(service: Service, tmp_path: Path) -> None:
    health = inspect(service.name)["State"]
    assert isinstance(health, dict)
    assert health["Health"]["Status"] == "healthy"
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- readme-curl -->\s*```bash\n(.*?)```", readme, re.S)
    assert match, "README.md has no curl example after <!-- readme-curl -->"
    command = match[1].replace("http://127.0.0.1:8000", service.url)
    (tmp_path / "examples").symlink_to(REPO / "examples")  # the example's paths are relative to the repo root
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    files = sorted(path.name for path in (tmp_path / "variants").iterdir())
    assert len(files) == 16 and "00001_003.png" in files and "00001_003.json" in files, files
    with Image.open(tmp_path / "variants" / "00000_000.png") as variant:
        assert variant.size == (224, 224)
    meta = json.loads((tmp_path / "variants" / "00000_000.json").read_text())
    assert "applied" in meta, meta


def test_runs_as_the_non_root_user(service: Service) -> None:
    users = podman("top", service.name, "huser").stdout.split()[1:]
    assert users and set(users) == {UID}, users
    assert service.exec("id", "-u").stdout.strip() == UID
    assert service.exec("touch", "/data/probe").returncode == 0, "the volume is writable by the service"
    assert service.exec("touch", "/opt/venv/probe").returncode != 0, "the service can modify its own code"


def test_data_survives_a_restart_and_a_new_container(service: Service, indexed_files: list[Path]) -> None:
    with Client(service.url) as client:
        created = client.upload_dataset("kept", indexed_files[:8], labels=list(range(8)), progress=False)
    assert created["count"] == 8

    started = time.monotonic()
    podman("stop", "--time", "30", service.name, timeout=60)
    stopped_in = time.monotonic() - started
    state = inspect(service.name)["State"]
    assert isinstance(state, dict)
    # SIGTERM reaches the service (it is PID 1); idle, it stops at once: 0, or 143 when it re-raises SIGTERM.
    assert state["ExitCode"] in (0, 143) and stopped_in < 15, (state["ExitCode"], stopped_in)

    podman("start", service.name)
    wait_healthy(service.name)
    assert httpx.get(f"{service.url}/v1/datasets/kept", timeout=10).json()["count"] == 8

    service.remove()  # a new container on the same volume: the data is in the volume, not the container
    service.start()
    assert httpx.get(f"{service.url}/v1/datasets/kept", timeout=10).json()["count"] == 8
    owner = service.exec("stat", "-c", "%u:%g", "/data").stdout.strip()
    assert owner == f"{UID}:{UID}", owner


def test_the_same_seed_gives_the_same_bytes(service: Service, photo_files: list[Path]) -> None:
    spec = json.dumps({"ops": [{"op": "rotate", "angle": [-15, 15]}], "output": {"format": "png"}})
    files = [("images", (path.name, path.read_bytes(), "image/jpeg")) for path in photo_files]
    data = {"variants": "2", "seed": "11", "spec": spec}
    first = httpx.post(f"{service.url}/v1/augment", files=files, data=data, timeout=60)
    second = httpx.post(f"{service.url}/v1/augment", files=files, data=data, timeout=60)
    assert first.status_code == 200 and first.content == second.content
    with tarfile.open(fileobj=io.BytesIO(first.content), mode="r|") as archive:
        assert len([member for member in archive if member.isfile()]) == 8
