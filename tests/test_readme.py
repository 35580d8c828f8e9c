"""The README's examples, run as a newcomer would: the exact curl line, the client snippet, the scripts."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from augserve.devserver import ServerProcess
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block_after(marker: str, language: str) -> str:
    match = re.search(rf"{re.escape(marker)}\s*```{language}\n(.*?)```", README, re.S)
    assert match, f"no {language} block after {marker!r} in README.md"
    return match.group(1)


def on(server: ServerProcess, text: str) -> str:
    return text.replace("http://127.0.0.1:8000", server.url)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_returns_a_tar_of_variants_of_a_real_photo(server: ServerProcess, tmp_path: Path) -> None:
    command = on(server, block_after("<!-- readme-curl -->", "bash")).replace("tar xv -C variants", "cat")
    command = command.replace("mkdir -p variants && ", "")
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, check=True, timeout=60)
    with tarfile.open(fileobj=io.BytesIO(result.stdout), mode="r|") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
    assert len(members) == 16 and "00001_003.png" in members and "00001_003.json" in members
    assert Image.open(io.BytesIO(members["00000_000.png"])).size == (224, 224)


def test_the_python_client_example_runs(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    snippet = on(server, block_after("## Python client", "python"))
    exec(compile(snippet.replace("examples/", f"{ROOT}/examples/"), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and all("(224, 224, 3)" in line for line in printed)


def test_the_augment_example_script(server: ServerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, ROOT / "examples" / "augment_photos.py", "--url", server.url, "--out", tmp_path],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "replay this call with seed=" in result.stdout
    saved = sorted(tmp_path.glob("*.png"))
    assert len(saved) == 8 and np.asarray(Image.open(saved[0])).shape == (224, 224, 3)


@pytest.mark.slow
def test_the_training_example_script(dataset_server: ServerProcess, data_root: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            ROOT / "examples" / "train_cnn.py",
            "--url",
            dataset_server.url,
            "--folder",
            data_root / "pets",
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"epoch 0 step 0 loss \d+\.\d+", result.stdout)
