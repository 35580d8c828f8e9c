"""Masks, boxes and keypoints on POST /v1/augment, against a real server: they come back moved with their image
(checked by effect on a painted photo), the same as the engine makes them in-process, in the tar layout the
docs promise; and every bad annotation gets a 422 naming the file and the annotation, before any variant."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve.engine import Pipeline, Targets
from augserve_client import Client
from augserve_client.protocol.errors import InvalidImageError, InvalidRequestError
from augserve_client.protocol.seeds import derive_seed
from augserve_client.protocol.spec import Spec
from augserve_client.protocol.targets import ImageTargets
from conftest import encode
from painted_scene import (
    CLASS,
    MARKER_AT,
    Scene,
    inside_some_box,
    marker_within,
    mask_agreement,
    painted,
    painted_core,
)

SPEC: dict[str, Any] = {
    "ops": [
        {"op": "reflect", "p": 0.5},
        {"op": "rotate", "angle": [-30, 30], "p": 0.8},
        {"op": "crop", "mode": "random_resized", "size": [96, 112], "scale": [0.4, 1.0]},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
}
VARIANTS = 8


@pytest.fixture(scope="module")
def scene(photos: list[np.ndarray]) -> Scene:
    return painted(photos[1])


def targets_of(scene: Scene) -> dict[str, Any]:
    return {"boxes": [scene.box], "labels": [CLASS], "keypoints": [list(MARKER_AT)], "keypoint_labels": ["marker"]}


def test_targets_come_back_moved_with_their_image(client: Client, scene: Scene) -> None:
    stream = client.augment(
        [scene.image], SPEC, variants=VARIANTS, seed=11, masks=[scene.mask], targets=[targets_of(scene)]
    )
    variants = list(stream)
    assert len(variants) == VARIANTS
    for variant in variants:
        mask = variant.mask
        assert mask is not None and mask.shape == variant.image.shape[:2]
        assert mask_agreement(variant.image, mask) >= 0.99
        assert inside_some_box(painted_core(variant.image), variant.boxes.tolist())
        for point in variant.keypoints:
            assert marker_within(variant.image, list(point), radius=2.5)
        assert variant.meta["labels"] == [CLASS] * len(variant.boxes)


def test_the_server_makes_what_the_engine_makes(client: Client, scene: Scene) -> None:
    """Writer and reader against each other: the variant the stream carries is the engine's, bit for bit."""
    spec = Spec.model_validate({**SPEC, "output": {"format": "npy"}})
    request = targets_of(scene)
    received = list(client.augment([scene.image], spec, variants=3, seed=5, masks=[scene.mask], targets=[request]))
    pipeline = Pipeline(spec, with_targets=True)
    for index, variant in enumerate(received):
        made = pipeline(scene.image, derive_seed(5, 0, index), Targets.of(ImageTargets(**request), scene.mask))
        assert made.targets is not None
        assert np.array_equal(variant.image, made.image) and np.array_equal(variant.mask, made.targets.mask)
        assert np.allclose(variant.boxes, made.targets.boxes) and np.allclose(variant.keypoints, made.targets.keypoints)


def test_the_tar_holds_a_mask_member_and_the_targets_in_the_json(server: ServerProcess, scene: Scene) -> None:
    """What a curl user or a WebDataset reader sees: {key}.png, {key}.mask.png, {key}.json with the targets."""
    files = [
        ("images", ("scene.png", encode(scene.image, "PNG"))),
        ("masks", ("scene-mask.png", encode(scene.mask, "PNG"))),
    ]
    data = {
        "spec": json.dumps({**SPEC, "output": {"format": "png"}}),
        "variants": "2",
        "seed": "3",
        "targets": json.dumps([targets_of(scene)]),
    }
    response = httpx.post(f"{server.url}/v1/augment", files=files, data=data, timeout=30)
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        members = {member.name: tar.extractfile(member).read() for member in tar.getmembers()}  # type: ignore[union-attr]
    assert sorted(members) == sorted(f"00000_00{v}.{ext}" for v in range(2) for ext in ("png", "mask.png", "json"))
    meta = json.loads(members["00000_000.json"])
    assert meta["mask"] == "00000_000.mask.png" and {"boxes", "labels", "keypoints", "keypoint_labels"} <= set(meta)
    from PIL import Image

    with Image.open(io.BytesIO(members["00000_000.mask.png"])) as mask:
        assert mask.mode == "L" and set(np.unique(np.asarray(mask))) <= {0, CLASS}


def test_a_palette_mask_gives_its_indices(client: Client, scene: Scene) -> None:
    """Pascal VOC stores masks as palette PNGs: the class id is the index, whatever colour the palette shows."""
    from PIL import Image

    palette = Image.fromarray(scene.mask, mode="P")
    palette.putpalette([0, 0, 0] + [200, 10, 10] * 255)
    (variant,) = client.augment([scene.image], {"ops": []}, masks=[encode(palette, "PNG")])
    assert variant.mask is not None and np.array_equal(variant.mask, scene.mask)


def test_images_without_targets_beside_ones_with(client: Client, scene: Scene) -> None:
    """A null entry: that image has no boxes; the other keeps its own."""
    stream = client.augment(
        [scene.image, scene.image], {"ops": [{"op": "reflect", "p": 1}]}, targets=[None, targets_of(scene)]
    )
    first, second = list(stream)
    assert first.boxes.shape == (0, 4) and second.boxes.shape == (1, 4)


BAD = [
    ("mask-wrong-size", {"masks": "small"}, "masks[0]", "is 10x10"),
    (
        "box-off-the-image",
        {"targets": [{"boxes": [[10, 10, 50, 50], [300, 10, 320, 20]], "labels": [1, 2]}]},
        "targets[0].boxes[1]",
        "entirely outside",
    ),
    ("box-without-area", {"targets": [{"boxes": [[10, 10, 10, 50]], "labels": [1]}]}, "targets[0].boxes[0]", "no area"),
    ("keypoint-off-the-image", {"targets": [{"keypoints": [[-1, 10]]}]}, "targets[0].keypoints[0]", "outside"),
    ("label-missing", {"targets": [{"boxes": [[10, 10, 50, 50]]}]}, "targets[0]", "one label per box"),
    ("too-few-entries", {"targets": []}, "targets", "0 entries for 1 images"),
    ("not-a-list", {"targets": {"boxes": []}}, "targets", "valid array"),
    (
        "infinite-coordinate",
        {"targets_text": '[{"boxes": [[1e999, 0, 5, 5]], "labels": [1]}]'},
        "targets[0].boxes[0][0]",
        "",
    ),
]


@pytest.mark.parametrize(("case", "field", "fragment"), [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_annotations_get_a_422_naming_them(
    server: ServerProcess, scene: Scene, case: dict[str, Any], field: str, fragment: str
) -> None:
    files = [("images", ("scene.png", encode(scene.image, "PNG")))]
    if case.get("masks") == "small":
        files.append(("masks", ("small-mask.png", encode(np.zeros((10, 10), np.uint8), "PNG"))))
    data = {"spec": "{}"}
    if "targets" in case:
        data["targets"] = json.dumps(case["targets"])
    if "targets_text" in case:
        data["targets"] = case["targets_text"]
    response = httpx.post(f"{server.url}/v1/augment", files=files, data=data, timeout=30)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_targets" and body["field"] == field, body
    assert fragment in body["message"]


def test_a_colour_mask_is_refused_naming_the_file(client: Client, scene: Scene) -> None:
    with pytest.raises(InvalidImageError) as caught:
        list(client.augment([scene.image], {}, masks=[encode(scene.image, "PNG")]))
    assert caught.value.status == 415 and "single-channel" in caught.value.message


def test_the_client_checks_targets_before_sending(client: Client, scene: Scene) -> None:
    with pytest.raises(ValueError, match="one label per box"):
        client.augment([scene.image], {}, targets=[{"boxes": [[1, 2, 3, 4]]}])
    with pytest.raises(InvalidRequestError):  # the server's count rule: one mask per image
        list(client.augment([scene.image, scene.image], {}, masks=[scene.mask]))
