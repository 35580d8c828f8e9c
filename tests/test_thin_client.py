"""The base install is a thin client: importing it pulls in no server, no torch, no Pillow."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "fastapi", "albumentations", "cv2", "PIL", "augserve"]


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_the_client_loads_nothing_heavy() -> None:
    result = run(f"import sys, augserve_client; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_torch_dataset_without_torch_names_the_extra() -> None:
    result = run("import sys; sys.modules['torch'] = None; import augserve_client.torch_dataset")
    assert result.returncode != 0
    assert "pip install 'augserve[torch]'" in result.stderr
