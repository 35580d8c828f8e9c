"""A newcomer's first steps: the slips people make with a dataset, and the message each one gets.

A folder passed as a string is taken for a dataset name; a folder holding a stray file registers fewer images
than it seems to. Each used to pass silently or end in a bare ``404 not_found: Not Found``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve.store import DatasetStore
from augserve_client import Client, NotFoundError
from augserve_client.torch_dataset import AugmentedDataset
from augserve_client.uploads import image_folder
from PIL import Image

SPEC = {"output": {"size": 16, "format": "npy"}}


def image_folder_with_strays(root: Path, photo: np.ndarray) -> Path:
    """cat/ and dog/ with two images each, plus what real folders collect: notes, a subfolder, hidden files, and
    hidden things that look like images or classes (macOS's ``._0.png``, Jupyter's ``.ipynb_checkpoints/``)."""
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(photo[index * 20 : index * 20 + 32, :32]).save(root / label / f"{index}.png")
    (root / "cat" / "notes.txt").write_text("taken in 2019")
    (root / "dog" / "more").mkdir()
    (root / "README.md").write_text("two classes")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "cat" / ".notes.txt.swp").write_bytes(b"\0")
    (root / "cat" / "._0.png").write_bytes(b"\0\5\26\7")  # an AppleDouble resource fork, not a PNG
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(photo[:32, :32]).save(root / ".ipynb_checkpoints" / "0.png")
    return root


def test_a_name_the_server_does_not_know_names_itself(server: ServerProcess) -> None:
    with pytest.raises(NotFoundError) as error:
        AugmentedDataset(server.url, "no-such-dataset", SPEC, batch_size=4)
    message = str(error.value)
    assert "no dataset named 'no-such-dataset'" in message and "a Path a local ImageFolder" in message


def test_a_local_folder_given_as_a_string_is_pointed_at_path(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my-folder" / "cat").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFoundError) as error:
        AugmentedDataset(server.url, "my-folder", SPEC, batch_size=4)
    assert "'my-folder'" in str(error.value) and "pass Path('my-folder') to upload it" in str(error.value)


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("data/pets", "pass Path('data/pets') to upload it"),  # was Starlette's bare "404 not_found: Not Found"
        ("pets/", "pass Path('pets/') to upload it"),  # was a 307 redirect, read as JSON: JSONDecodeError
        ("~/pets", "pass Path('~/pets').expanduser() to upload it"),
        ("./elsewhere", "a Path a local ImageFolder to upload"),  # httpx would have asked for "elsewhere"
        ("~no-such-user-here/pets", "a Path a local ImageFolder to upload"),  # expanduser raises: no folder
        ("x" * 300, "a Path a local ImageFolder to upload"),  # too long for a file name: no folder either
    ],
)
def test_a_path_given_as_a_string_is_refused_before_it_reaches_the_server(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, hint: str
) -> None:
    for folder in ("data/pets/cat", "pets/cat", "home/pets/cat"):
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="is not a dataset name") as error:
        AugmentedDataset(server.url, given, SPEC, batch_size=4)
    assert repr(given) in str(error.value) and hint in str(error.value)


@pytest.mark.parametrize("name", ["pets/", "a/b", "two words", ""])
def test_every_dataset_call_refuses_what_is_not_a_dataset_name(client: Client, name: str) -> None:
    """A "/" would reach another route (or a redirect, read as JSON); the name is refused here instead."""
    for call in (client.describe, client.delete_dataset, lambda name: next(iter(client.epoch(name, SPEC)))):
        with pytest.raises(ValueError, match="is not a dataset name"):
            call(name)


def test_image_folder_names_what_it_leaves_out(tmp_path: Path, photos: list[np.ndarray]) -> None:
    folder = image_folder_with_strays(tmp_path / "pets", photos[0])
    with pytest.warns(UserWarning, match="left out 3 entries") as caught:
        files, labels = image_folder(folder)
    assert [path.name for path in files] == ["0.png", "1.png"] * 2 and labels == ["cat", "cat", "dog", "dog"]
    message = str(caught[0].message)
    assert "README.md, cat/notes.txt, dog/more/" in message
    assert ".DS_Store" not in message and ".swp" not in message


def test_a_clean_image_folder_warns_about_nothing(tmp_path: Path, photos: list[np.ndarray]) -> None:
    folder = image_folder_with_strays(tmp_path / "pets", photos[0])
    for stray in ("cat/notes.txt", "README.md"):
        (folder / stray).unlink()
    (folder / "dog" / "more").rmdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(image_folder(folder)[0]) == 4


def test_a_dataset_uploaded_with_strays_warns_and_holds_the_images(
    server: ServerProcess, tmp_path: Path, photos: list[np.ndarray]
) -> None:
    folder = image_folder_with_strays(tmp_path / "pets", photos[1])
    with pytest.warns(UserWarning, match=r"cat/notes\.txt"):
        data = AugmentedDataset(server.url, folder, SPEC, batch_size=4, progress=False)
    assert data.size == 4


def test_a_server_folder_with_strays_is_logged(
    tmp_path: Path, photos: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    image_folder_with_strays(root / "pets", photos[0])
    store = DatasetStore(tmp_path / "data", root)
    with caplog.at_level(logging.WARNING, logger="augserve.store"):
        paths, labels, classes = store.folder_files("pets")
    assert len(paths) == 4 and labels == [0, 0, 1, 1] and classes == ["cat", "dog"]
    assert [record.getMessage() for record in caplog.records] == [
        "folder 'pets': left out 3 entries that are not images in class folders: README.md, cat/notes.txt, dog/more/"
    ]


def test_a_server_folder_registration_shows_in_the_server_log(
    dataset_server: ServerProcess, data_root: Path, photos: list[np.ndarray]
) -> None:
    image_folder_with_strays(data_root / "strays", photos[1])
    with Client(dataset_server.url) as client:
        assert client.register_folder("strays", "strays")["count"] == 4
    assert "folder 'strays': left out 3 entries" in dataset_server.log()
