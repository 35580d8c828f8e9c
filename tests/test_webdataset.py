"""WebDataset as a consumer of ``/v1/augment``: the README's recipe, run with webdataset's own reader through a
real ``pipe:curl`` against a real server, what gets in the way of the plain curl line, and what a loop sees when a
request is refused or a stream is cut midway."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from augserve.devserver import ServerProcess

wds = pytest.importorskip("webdataset")
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
RECIPE = re.search(r"<!-- readme-webdataset -->\s*```bash\n(.*?)```\s*```python\n(.*?)```", README, re.S)
assert RECIPE, "README.md has no bash and python blocks after <!-- readme-webdataset -->"
SETUP, SNIPPET = RECIPE.groups()
SPEC = '{"ops": [{"op": "crop", "mode": "random_resized", "size": [64, 64]}], "output": {"format": "png"}}'


def pipe(server: ServerProcess, images: list[Path], spec: str, variants: int) -> str:
    """A pipe:curl URL in the README's form."""
    files = " ".join(f"-F images=@{path}" for path in images)
    return f"pipe:curl -sS --fail {files} -F variants={variants} -F 'spec=<{spec}' {server.url}/v1/augment"


def test_the_readme_recipe_reads_the_variants(
    server: ServerProcess, photo_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    setup = SETUP.replace("pip install webdataset\n", "")  # installed here already
    subprocess.run(["bash", "-c", setup], cwd=tmp_path, check=True, timeout=30)
    snippet = SNIPPET.replace("http://127.0.0.1:8000", server.url)
    snippet = snippet.replace("examples/photos/flower.jpg", str(photo_files[1]))
    snippet = snippet.replace("examples/photos/china.jpg", str(photo_files[0]))
    monkeypatch.chdir(tmp_path)  # where spec.json is
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    keys = [f"{image:05d}_{variant:03d}" for image in (0, 1) for variant in range(4)]
    assert [line.split()[0] for line in printed] == keys
    assert all("(224, 224, 3)" in line and "'crop'" in line for line in printed)


def test_each_pass_streams_fresh_variants_and_a_seed_repeats_them(
    server: ServerProcess, photo_files: list[Path], tmp_path: Path
) -> None:
    (tmp_path / "spec.json").write_text(SPEC)
    url = pipe(server, photo_files[:1], str(tmp_path / "spec.json"), 3)

    def epoch(source: str) -> list[bytes]:
        return [sample["png"] for sample in wds.WebDataset([source], shardshuffle=False)]

    first, second = epoch(url), epoch(url)
    assert len(first) == len(second) == 3 and first != second
    seeded = url.replace("-F variants=3", "-F variants=3 -F seed=7")
    assert epoch(seeded) == epoch(seeded)


def test_what_gets_in_the_way_of_the_plain_curl_line(server: ServerProcess, tmp_path: Path) -> None:
    """Why the recipe has a spec file and a list: WebDataset's rules for a URL given as a string."""
    curl = re.search(r"<!-- readme-curl -->\s*```bash\n(.*?)```", README, re.S).group(1)
    command = "pipe:" + curl.replace("\\\n", " ").split("|")[0].replace("mkdir -p variants && ", "")
    assert len(wds.WebDataset(command, shardshuffle=False).pipeline[0].urls) == 20  # brace-expanded
    spec_last = f"pipe:curl -sS --fail -F images=@x.jpg {server.url}/v1/augment -F spec=<{tmp_path}/spec.json"
    with pytest.raises(ValueError, match="unimplemented"):  # taken for a wids index file
        wds.WebDataset(spec_last, shardshuffle=False)
    assert len(wds.WebDataset([command], shardshuffle=False).pipeline[0].urls) == 1


def test_a_refused_request_raises_in_the_loop(server: ServerProcess, photo_files: list[Path], tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"ops": [{"op": "rotate", "angle": [10, 5]}]}')
    dataset = wds.WebDataset([pipe(server, photo_files[:1], str(tmp_path / "bad.json"), 2)], shardshuffle=False)
    with pytest.raises(OSError, match=r"exit 22 \(read\)"):
        list(dataset)


@pytest.mark.slow
def test_a_stream_cut_midway_raises_after_the_whole_samples(photo_files: list[Path], tmp_path: Path) -> None:
    """A server told to stop with no time to drain ends the stream with ``__error__.json`` and no end marker: curl
    exits 18, and the loop raises after the samples that had arrived whole, instead of ending the epoch short."""
    server = ServerProcess(tmp_path / "data", drain_seconds=0, threads=1).start()
    try:
        (tmp_path / "spec.json").write_text(SPEC.replace("[64, 64]", "[224, 224]"))
        url = pipe(server, photo_files * 4, str(tmp_path / "spec.json"), 64)  # 512 variants: long enough
        received = []
        with pytest.raises(OSError, match=r"exit 18 \(read\)"):
            for sample in wds.WebDataset([url], shardshuffle=False).decode("rgb8"):
                received.append(sample)
                if len(received) == 1:
                    assert server.process is not None
                    server.process.send_signal(signal.SIGTERM)
        # WebDataset stops at curl's status, usually before it has parsed the error member; if it got that far,
        # the record is a sample of its own, last, with the server's reason.
        if received[-1]["__key__"] == "__error__":
            assert received.pop()["json"]["code"] == "shutting_down"
        assert 1 <= len(received) < 512
        assert all(sample["png"].shape == (224, 224, 3) and "applied" in sample["json"] for sample in received)
        assert "shutting_down" in server.log()
    finally:
        server.stop()
