"""The container's start command, run here: the Dockerfile's CMD/ENTRYPOINT with the Dockerfile's ENV starts a
service whose /healthz answers, and the image's HEALTHCHECK command passes against it.

No Docker engine runs here, so this is the closest check of "the image starts": the same argv and the same
environment, with only what names a place in the container swapped for this machine:
- PATH: /opt/venv/bin is this interpreter's scripts directory (where the package is installed here).
- AUGSERVE_PORT: a free port, so parallel runs and other services do not collide.
- AUGSERVE_DATA_DIR: a temporary directory instead of the /data volume.
- AUGSERVE_HOST: 127.0.0.1 instead of 0.0.0.0. Inside a container 0.0.0.0 is the container's own network;
  here it would listen on every interface of a developer's or CI's machine. The address is the only change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sysconfig
import time
from pathlib import Path

import httpx
from deploy_files import env, final_stage, healthcheck_command, start_command
from nginx_harness import free_port

SWAPPED = {"PATH", "AUGSERVE_PORT", "AUGSERVE_DATA_DIR", "AUGSERVE_HOST"}


def container_env(port: int, data_dir: Path) -> dict[str, str]:
    image_env = env(final_stage())
    assert set(image_env) >= SWAPPED, "the Dockerfile sets each of these; the test swaps only those"
    scripts = sysconfig.get_path("scripts")
    swapped = {
        "PATH": image_env["PATH"].replace("/opt/venv/bin", scripts).replace("$PATH", os.environ["PATH"]),
        "AUGSERVE_PORT": str(port),
        "AUGSERVE_DATA_DIR": str(data_dir),
        "AUGSERVE_HOST": "127.0.0.1",
    }
    # Start from a bare environment, as a container does: nothing from this shell's AUGSERVE_* leaks in.
    return {"HOME": os.environ.get("HOME", "/"), **image_env, **swapped}


def test_start_command_serves_healthz(tmp_path: Path) -> None:
    port, data_dir = free_port(), tmp_path / "data"
    environment = container_env(port, data_dir)
    log_path = tmp_path / "service.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(start_command(final_stage()), env=environment, stdout=log, stderr=log)
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, f"exit={process.poll()} log:\n{log_path.read_text(errors='replace')[-3000:]}"
        assert data_dir.is_dir(), "the service creates its data directory"
        check = subprocess.run(healthcheck_command(final_stage()), env=environment, timeout=30, check=False)
        assert check.returncode == 0, "the image's HEALTHCHECK command fails against a healthy service"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: Docker reports that as exit 143.
    stopped = (0, -signal.SIGTERM)
    assert process.returncode in stopped, f"not a clean stop: {log_path.read_text(errors='replace')[-3000:]}"
