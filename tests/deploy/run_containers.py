"""``make container-test``: build the images (cached between runs), run the container tests, leave nothing behind.

    python tests/deploy/run_containers.py [pytest arguments]

Prints how long each step took. Skips, with the reason and exit status 0, where podman cannot be installed
(not root, no apt); everywhere else a failure is a failure (CI runs it: docs/deploy.md). Containers,
pods, volumes and networks of the tests are removed at the end however it ends (also on SIGTERM or Ctrl-C);
images stay, to be reused by the next run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from podman_harness import LOG_DIR, leftovers, sweep, unavailable  # noqa: E402
from podman_images import build_all  # noqa: E402

TESTS = [HERE / "test_container_image.py", HERE / "test_container_compose.py"]
PYTEST_TIMEOUT = 1200  # the tests themselves take about a minute or two; this only bounds a hang


def stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally below, which removes the containers


def main(args: list[str]) -> int:
    reason = unavailable()
    if reason:
        print(f"container-test: SKIPPED: {reason}")
        return 0
    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    status = 1
    try:
        sweep()  # anything an interrupted run left
        shutil.rmtree(LOG_DIR, ignore_errors=True)
        build_all(sys.executable)
        tests_started = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, TESTS), *args]
        env = {**os.environ, "AUGSERVE_CONTAINER_TEST": "1"}
        status = subprocess.run(command, env=env, timeout=PYTEST_TIMEOUT, check=False).returncode
        print(f"container-test: tests: {time.monotonic() - tests_started:.1f} s")
        if status != 0:
            print(f"container-test: the containers' logs are in {LOG_DIR}")
    finally:
        sweep()
        left = leftovers()
        if left:
            print(f"container-test: NOT REMOVED: {', '.join(left)}")
            status = status or 1
        print(f"container-test: total {time.monotonic() - started:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
