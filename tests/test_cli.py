"""The ``augserve`` command line, run as a person runs it: the installed console script in a subprocess.

Help everywhere, flags over environment over defaults for ``serve``, one-line errors with a non-zero exit, and
``augment`` giving byte for byte what the service gives for the same seed and spec.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import typer
from augserve.cli import app
from augserve.cli.local import LABEL_HEIGHT
from augserve.devserver import ServerProcess, free_port
from augserve.settings import Settings
from augserve_client import Client
from augserve_client.protocol.errors import InvalidRequestError
from PIL import Image

AUGSERVE = Path(sys.executable).with_name("augserve")
SPEC: dict[str, Any] = {
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "rotate", "angle": [-20, 20], "p": 0.8},
        {"op": "crop", "mode": "random_resized", "size": [48, 64], "scale": [0.3, 1.0]},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
}
SPEC_YAML = """\
ops:
  - {op: reflect, horizontal: true, p: 0.5}
  - {op: rotate, angle: [-20, 20], p: 0.8}
  - {op: crop, mode: random_resized, size: [48, 64], scale: [0.3, 1.0]}
  - {op: shift, x: [-0.1, 0.1], y: [-0.1, 0.1], p: 0.5}
"""
BAD_SPEC = {"ops": [{"op": "reflect"}, {"op": "rotate", "angle": [20, -20]}]}


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment without any AUGSERVE_* (ours decide), wide and colourless for help text."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUGSERVE_")}
    return {**env, "COLUMNS": "200", "NO_COLOR": "1", **extra}


def run(*args: object, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    command = [str(AUGSERVE), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env or environment(), timeout=60, **kwargs)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error line of a failed command, checked to be one line with no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def spec_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("specs")
    files = {"json": folder / "spec.json", "yaml": folder / "spec.yaml", "bad": folder / "bad.json"}
    files["json"].write_text(json.dumps(SPEC))
    files["yaml"].write_text(SPEC_YAML)
    files["bad"].write_text(json.dumps(BAD_SPEC))
    return files


# --- help --------------------------------------------------------------------------------------------------


def test_help_lists_every_command_and_a_bare_augserve_prints_it() -> None:
    listed = run("--help")
    assert listed.returncode == 0
    for command in ["serve", "augment", "preview", "validate", "ops", "datasets"]:
        assert re.search(rf"^\W*{command}\b", listed.stdout, re.MULTILINE), command
    bare = run()
    assert bare.returncode in (0, 2) and "Usage: augserve" in bare.stdout + bare.stderr
    assert "serve" in bare.stdout + bare.stderr
    for command in (["augment"], ["datasets", "show"]):  # a command without its arguments: its help
        alone = run(*command)
        assert f"Usage: augserve {' '.join(command)}" in alone.stdout + alone.stderr
    module = subprocess.run(
        [sys.executable, "-m", "augserve", "--help"], capture_output=True, text=True, env=environment(), timeout=60
    )
    assert module.returncode == 0 and module.stdout == listed.stdout


HELP_OPTIONS = {
    "serve": ["--host", "--port", "--workers", "--threads", "--data-dir", "--data-root", "--log-level"],
    "augment": ["--spec", "--variants", "-n", "--seed", "--format", "--out", "--url"],
    "preview": ["--spec", "--grid", "--seed", "--tile", "--out"],
    "validate": [],
    "ops": ["--json"],
    "datasets": ["upload", "ls", "show", "rm"],
    "datasets upload": ["--name", "--layout", "--url"],
    "datasets ls": ["--url", "--json"],
    "datasets show": ["--url"],
    "datasets rm": ["--url"],
}


def test_every_command_has_help_listing_its_options() -> None:
    processes = {
        command: subprocess.Popen(
            [str(AUGSERVE), *command.split(), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        for command in HELP_OPTIONS
    }
    for command, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert f"Usage: augserve {command}" in stdout
        for option in HELP_OPTIONS[command]:
            assert option in stdout, (command, option)


def test_the_command_line_loads_no_engine_client_or_pydantic_until_a_command_needs_it() -> None:
    heavy = ["pydantic", "httpx", "numpy", "augserve_client", "augserve.settings", "augserve.engine", "PIL"]
    code = f"import sys, augserve.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_serve_help_states_the_settings_own_defaults() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    for param in serve.params:
        found = re.search(r"\(env AUGSERVE_(\w+); default (.+)\)$", param.help or "")
        if param.name == "help":
            continue
        assert found, param.name
        default = Settings.model_fields[found[1].lower()].default
        assert found[2] == ("none" if default is None else str(default)), param.name


# --- serve -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_listens_on_the_flag_not_the_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    env = environment(AUGSERVE_PORT=str(other), AUGSERVE_LOG_LEVEL="warning")
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [str(AUGSERVE), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{other}/readyz", timeout=1)
        assert (tmp_path / "data").is_dir()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


def test_serve_on_a_port_in_use_is_one_line_and_a_failure(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", port, "--data-dir", tmp_path / "data")
    assert f"port {port}" in one_line_error(result) and "in use" in result.stderr


def test_serve_names_a_bad_setting_by_its_flag_or_its_variable() -> None:
    assert "--workers" in one_line_error(run("serve", "--workers", "0"))
    assert "AUGSERVE_THREADS" in one_line_error(run("serve", env=environment(AUGSERVE_THREADS="-1")))


# --- augment and preview -----------------------------------------------------------------------------------


def tar_members(tar: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as archive:
        return {info.name: archive.extractfile(info).read() for info in archive}  # type: ignore[union-attr]


def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_augment_here_and_with_url_give_the_services_bytes(
    server: ServerProcess, photo_files: list[Path], spec_files: dict[str, Path], tmp_path: Path
) -> None:
    common = [*photo_files, "-n", 3, "--seed", 11, "--format", "jpeg"]
    here = run("augment", *common, "--spec", spec_files["yaml"], "-o", tmp_path / "here")
    assert here.returncode == 0, here.stderr
    assert "(seed 11)" in here.stderr
    made = files(tmp_path / "here")
    assert sorted(made) == [f"{i:05d}_{v:03d}.{ext}" for i in range(2) for v in range(3) for ext in ("jpg", "json")]
    meta = json.loads(made["00001_002.json"])
    assert (meta["source"], meta["request_seed"], meta["shape"]) == (photo_files[1].name, 11, [48, 64, 3])
    # the service's own tar, asked directly
    uploads = [("images", (path.name, path.read_bytes(), "application/octet-stream")) for path in photo_files]
    form = {"spec": json.dumps({**SPEC, "output": {"format": "jpeg"}}), "variants": "3", "seed": "11"}
    response = httpx.post(f"{server.url}/v1/augment", files=uploads, data=form, timeout=60)
    assert response.status_code == 200, response.text
    assert made == tar_members(response.content)
    # and through the client, with the JSON spec
    there = run("augment", *common, "--spec", spec_files["json"], "--url", server.url, "-o", tmp_path / "there")
    assert there.returncode == 0, there.stderr
    assert files(tmp_path / "there") == made


def test_augment_errors_are_the_services_codes(server: ServerProcess, photo_files: list[Path], tmp_path: Path) -> None:
    tight = json.dumps({"ops": [{"op": "crop", "mode": "center", "size": [900, 900], "if_smaller": "error"}]})
    here = one_line_error(run("augment", photo_files[0], "--spec", tight, "-o", tmp_path))
    there = one_line_error(run("augment", photo_files[0], "--spec", tight, "--url", server.url, "-o", tmp_path))
    assert here == there and here.startswith("error: crop_too_large: ")
    too_many = run("augment", photo_files[0], "-n", 17, "--url", server.url, "-o", tmp_path)
    assert one_line_error(too_many).startswith("error: too_many_variants: ")


def test_augment_without_the_server_extra_names_it(photo_files: list[Path], tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['albumentations'] = sys.modules['cv2'] = None; "
        f"from augserve.cli import main; main(['augment', {str(photo_files[0])!r}, '-o', {str(tmp_path)!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'augserve[server]'" in one_line_error(result)


def test_preview_writes_a_labelled_grid(photo_files: list[Path], spec_files: dict[str, Path], tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    result = run("preview", photo_files[0], "--spec", spec_files["json"], "--grid", "3x2", "--tile", 64, "-o", sheet)
    assert result.returncode == 0, result.stderr
    with Image.open(sheet) as image:
        assert (image.format, image.size) == ("PNG", (3 * 64, 2 * (64 + LABEL_HEIGHT)))
        pixels = np.asarray(image.convert("RGB"))
    tiles = [
        pixels[r * (64 + LABEL_HEIGHT) : r * (64 + LABEL_HEIGHT) + 64, c * 64 : c * 64 + 64]
        for r in (0, 1)
        for c in (0, 1, 2)
    ]
    assert len({tile.tobytes() for tile in tiles}) == 6  # six different variants
    label = pixels[64 : 64 + LABEL_HEIGHT, :64]
    assert label.max() > 200  # the seed is written there
    assert "grid" in one_line_error(run("preview", photo_files[0], "--grid", "3by2", "-o", sheet))


# --- validate and ops --------------------------------------------------------------------------------------


def test_validate_prints_the_normalised_spec(spec_files: dict[str, Path]) -> None:
    result = run("validate", spec_files["yaml"])
    assert result.returncode == 0, result.stderr
    normalised = json.loads(result.stdout)
    assert normalised["ops"][2]["ratio"] == [0.75, 4 / 3] and normalised["output"]["format"] == "png"
    assert json.loads(run("validate", "-", input=spec_files["json"].read_text()).stdout) == normalised


def test_validate_names_the_field_as_the_server_does(client: Client, spec_files: dict[str, Path]) -> None:
    line = one_line_error(run("validate", spec_files["bad"]))
    with pytest.raises(InvalidRequestError) as refused:
        client.validate_spec(BAD_SPEC)
    assert line == f"error: invalid_spec: {refused.value.message}"
    assert "spec.ops[1].angle" in line
    assert "not valid JSON" in one_line_error(run("validate", "{nope"))
    assert "No such file" in one_line_error(run("validate", "missing.json"))


def test_debug_shows_the_traceback_wherever_it_is_given(spec_files: dict[str, Path]) -> None:
    for args in (["--debug", "validate", spec_files["bad"]], ["validate", spec_files["bad"], "--debug"]):
        result = run(*args)
        assert result.returncode != 0 and "Traceback" in result.stderr


def test_yaml_without_pyyaml_says_how_to_get_it(spec_files: dict[str, Path]) -> None:
    spec = str(spec_files["yaml"])
    code = f"import sys; sys.modules['yaml'] = None; from augserve.cli import main; main(['validate', {spec!r}])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install pyyaml" in one_line_error(result)


def test_ops_match_the_servers(client: Client) -> None:
    result = run("ops", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == client.ops()
    table = run("ops").stdout
    for op in ["reflect", "rotate", "crop", "shift", "output"]:
        assert re.search(rf"^{op}\s+p?\w+", table, re.MULTILINE), op


# --- datasets ----------------------------------------------------------------------------------------------


def test_datasets_upload_ls_show_rm(server: ServerProcess, photos: list[np.ndarray], tmp_path: Path) -> None:
    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for index in range(3):
            crop = photos[label][index * 20 : index * 20 + 40, 100:150]
            Image.fromarray(crop).save(tmp_path / "pets" / name / f"{index}.png")
    url = ["--url", server.url]
    uploaded = run("datasets", "upload", tmp_path / "pets", "--name", "cli-pets", *url)
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["count"] == 6
    listed = run("datasets", "ls", env=environment(AUGSERVE_URL=server.url))  # the URL from the environment
    assert re.search(r"^cli-pets\s+\w+\s+6\s+2\s", listed.stdout, re.MULTILINE), listed.stdout
    assert "cli-pets" in [d["name"] for d in json.loads(run("datasets", "ls", "--json", *url).stdout)]
    shown = json.loads(run("datasets", "show", "cli-pets", *url).stdout)
    assert (shown["count"], shown["classes"]) == (6, ["cat", "dog"])
    assert run("datasets", "rm", "cli-pets", *url).returncode == 0
    assert one_line_error(run("datasets", "show", "cli-pets", *url)).startswith("error: not_found: ")
    assert "class subfolders" in one_line_error(run("datasets", "upload", tmp_path / "pets" / "cat", *url))


def test_the_upload_command_offers_the_contract_s_layouts() -> None:
    from augserve.cli.datasets import LayoutChoice
    from augserve_client.protocol.datasets import LAYOUTS

    assert [choice.value for choice in LayoutChoice] == list(LAYOUTS)


def test_datasets_upload_a_segmentation_folder(server: ServerProcess, photos: list[np.ndarray], tmp_path: Path) -> None:
    for side in ("images", "masks"):
        (tmp_path / "seg" / side).mkdir(parents=True)
    for index in range(3):
        Image.fromarray(photos[0][index * 20 : index * 20 + 40, 100:150]).save(tmp_path / "seg/images" / f"{index}.jpg")
        Image.fromarray(np.full((40, 50), index, np.uint8)).save(tmp_path / "seg/masks" / f"{index}.png")
    uploaded = run("datasets", "upload", tmp_path / "seg", "--url", server.url)  # the layout told from the folder
    assert uploaded.returncode == 0, uploaded.stderr
    summary = json.loads(uploaded.stdout)
    assert (summary["count"], summary["layout"], summary["targets"]) == (3, None, ["masks"])
    (tmp_path / "seg/masks/2.png").unlink()
    line = one_line_error(run("datasets", "upload", tmp_path / "seg", "--layout", "segmentation", "--url", server.url))
    assert "images/2.jpg has no mask" in line


def test_an_unreachable_server_is_one_line() -> None:
    line = one_line_error(run("datasets", "ls", "--url", f"http://127.0.0.1:{free_port()}"))
    assert "cannot reach the server" in line and "augserve serve" in line


@pytest.mark.parametrize(
    ("variables", "environment_port", "port"), [({}, "8011", "8011"), ({"PORT": "8012"}, "8011", "8012")]
)
def test_make_serve_takes_the_port_from_make_or_the_environment(
    variables: dict[str, str], environment_port: str, port: str
) -> None:
    """`AUGSERVE_PORT=8011 make serve` used to bind 8000: the Makefile set the variable over the environment's."""
    root = Path(__file__).resolve().parent.parent
    arguments = [f"{name}={value}" for name, value in variables.items()]
    env = {**os.environ, "AUGSERVE_PORT": environment_port}
    dry = subprocess.run(["make", "-n", "serve", *arguments], cwd=root, env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert f"augserve serve --host 127.0.0.1 --port {port} " in dry.stdout
