"""The ``albumentations`` op: any allow-listed transform in its own serialized form, seeded like every op (same
seed, same bytes as albumentations' own Compose), refused with the class or parameter named when it is not
allowed; and ``spec_from_albumentations``, which turns an ``A.to_dict(Compose)`` into the equivalent spec."""

from __future__ import annotations

import json
import random
from typing import Any

import albumentations as A
import cv2
import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve.engine import Pipeline, Targets
from augserve_client import Client, InvalidRequestError
from augserve_client.convert import spec_from_albumentations
from augserve_client.protocol.allowlist import ALLOWED
from augserve_client.protocol.spec import Spec
from pydantic import ValidationError


@pytest.fixture(scope="module")
def photo(photos: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(photos[0], (160, 120), interpolation=cv2.INTER_AREA))


def serialized(transform: A.BasicTransform) -> dict[str, Any]:
    return json.loads(json.dumps(A.to_dict(transform)))  # as it arrives over the wire: tuples become lists


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_every_allowed_transform_renders_deterministically(photo: np.ndarray, name: str) -> None:
    """Its defaults, at p=1: the image keeps its shape, and a seed gives its bytes whatever else ran before."""
    spec = Spec.model_validate({"ops": [{"op": "albumentations", "transform": serialized(getattr(A, name)(p=1.0))}]})
    first, again = Pipeline(spec), Pipeline(spec)
    out = first(photo, 7)
    first(photo, 8)
    assert out.image.shape == photo.shape and out.image.dtype == np.uint8
    assert np.array_equal(out.image, again(photo, 7).image)
    assert out.applied and out.applied[0]["transform"] == name and "params" in out.applied[0]


COMPOSES = [
    A.Compose([A.HorizontalFlip(p=0.5), A.ColorJitter(p=0.8), A.RandomCrop(96, 128)]),
    A.Compose([A.Rotate(limit=(-20, 20), p=0.7), A.GaussianBlur(blur_limit=(3, 7), p=0.5), A.Resize(64, 64)]),
    A.Compose([A.CoarseDropout(num_holes_range=(1, 4), p=1.0), A.GaussNoise(p=0.5), A.CenterCrop(100, 100)]),
    A.Compose([A.RandomResizedCrop(size=(80, 80), scale=(0.5, 1.0)), A.HueSaturationValue(p=1.0), A.ToGray(p=0.3)]),
]


@pytest.mark.parametrize("compose", COMPOSES, ids=range(len(COMPOSES)))
def test_a_pasted_compose_gives_albumentations_own_bytes(photo: np.ndarray, compose: A.Compose) -> None:
    """spec_from_albumentations(A.to_dict(c)), rendered by augserve, equals c itself seeded the same way."""
    pipeline = Pipeline(spec_from_albumentations(serialized(compose)))
    for seed in range(8):
        compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        assert np.array_equal(pipeline(photo, seed).image, compose(image=photo)["image"]), seed


def test_the_converter_keeps_the_targets_rules() -> None:
    compose = A.Compose(
        [A.HorizontalFlip()],
        bbox_params=A.BboxParams(format="coco", min_visibility=0.3, label_fields=["labels"]),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )
    rules = spec_from_albumentations(json.dumps(A.to_dict(compose))).targets
    assert (rules.box_format, rules.min_visibility, rules.drop_outside_keypoints) == ("coco", 0.3, False)


@pytest.mark.parametrize(
    ("compose", "fragment"),
    [
        (A.Compose([A.ElasticTransform()]), "ElasticTransform has no augserve op"),
        (A.Compose([A.Rotate(crop_border=True)]), "crop_border"),
        (A.Compose([A.Affine(scale=(0.5, 2.0))]), "scale"),
        (A.Compose([A.Rotate(border_mode=cv2.BORDER_WRAP)]), "border_mode"),
    ],
    ids=["not-allowed", "crop-border", "affine-scale", "wrap-border"],
)
def test_the_converter_names_what_it_cannot_convert(compose: A.Compose, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        spec_from_albumentations(serialized(compose))


def test_the_op_takes_the_whole_to_dict_and_its_p() -> None:
    op = Spec.model_validate({"ops": [{"op": "albumentations", "transform": serialized(A.GaussianBlur(p=0.25))}]}).ops[
        0
    ]
    assert op.p == 0.25 and "p" not in op.transform  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="p is given twice"):
        Spec.model_validate({"ops": [{"op": "albumentations", "p": 0.5, "transform": serialized(A.Blur(p=0.25))}]})


def test_masks_stay_put_under_pixel_transforms(photo: np.ndarray) -> None:
    spec = Spec.model_validate({"ops": [{"op": "albumentations", "transform": serialized(A.ColorJitter(p=1.0))}]})
    mask = (photo[..., 0] > 128).astype(np.uint8)
    moved = Pipeline(spec, with_targets=True)(photo, 3, Targets(mask=mask)).targets
    assert moved is not None and np.array_equal(moved.mask, mask)


REFUSED = [
    ("code", {"__class_fullname__": "Lambda"}, "spec.ops[0].transform", "not on the allow-list"),
    ("unknown-class", {"__class_fullname__": "NoSuchTransform"}, "spec.ops[0].transform", "Lambda"[:0]),
    ("unknown-parameter", {"__class_fullname__": "Blur", "bogus": 1}, "spec.ops[0].transform", "bogus"),
    ("bad-value", {"__class_fullname__": "ColorJitter", "brightness": -5}, "spec.ops[0].transform.brightness", ""),
    ("over-a-cap", {"__class_fullname__": "GaussianBlur", "blur_limit": [3, 999]}, "spec.ops[0].transform", "63"),
    ("grey-output", {"__class_fullname__": "ToGray", "num_output_channels": 1}, "spec.ops[0].transform", "[3, 3]"),
    (
        "nested-transform",
        {"__class_fullname__": "Blur", "blur_limit": {"__class_fullname__": "Lambda"}},
        "spec.ops[0].transform",
        "no transforms",
    ),
    ("infinite", {"__class_fullname__": "RandomGamma", "gamma_limit": [80, 1e999]}, "spec.ops[0].transform", ""),
]


@pytest.mark.parametrize(("transform", "field", "fragment"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_transforms_get_a_422_naming_them(
    server: ServerProcess, transform: dict[str, Any], field: str, fragment: str
) -> None:
    spec = (
        '{"ops": [{"op": "albumentations", "transform": ' + json.dumps(transform).replace("Infinity", "1e999") + "}]}"
    )
    response = httpx.post(
        f"{server.url}/v1/specs/validate", content=spec, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_spec" and body["field"].startswith(field), body
    assert fragment in body["message"]


def test_the_service_streams_it_and_lists_the_allow_list(client: Client, photo: np.ndarray) -> None:
    spec = {"ops": [{"op": "albumentations", "transform": serialized(A.Posterize(num_bits=(2, 2), p=1.0))}]}
    (variant,) = client.augment([photo], spec, seed=1)
    assert len(np.unique(variant.image)) <= 4 * 3  # 2 bits per channel
    listed = client.ops()["albumentations"]
    assert set(listed) == set(ALLOWED)
    assert "blur_limit" in listed["GaussianBlur"]["parameters"] and listed["GaussianBlur"]["bounds"]["blur_limit"]


@pytest.mark.parametrize(
    ("transform", "small", "fits", "fragment"),
    [
        (A.HueSaturationValue(p=1.0), (1, 1), (1, 2), "at least 2 pixels"),  # albumentations: IndexError
        (A.Downscale(scale_range=(0.1, 0.5), p=1.0), (5, 40), (6, 6), "at least 6x6"),  # OpenCV: an empty size
    ],
)
def test_an_image_too_small_for_a_transform_is_a_422_before_the_stream(
    client: Client, transform: A.BasicTransform, small: tuple[int, int], fits: tuple[int, int], fragment: str
) -> None:
    """Found by schemathesis: these failed in the middle of the stream, as an internal error after a 200."""
    spec = {"ops": [{"op": "albumentations", "transform": serialized(transform)}]}
    with pytest.raises(InvalidRequestError) as caught:
        list(client.augment([np.full((*small, 3), 90, np.uint8)], spec, seed=1))
    assert caught.value.status == 422 and caught.value.field == "spec.ops[0]" and fragment in caught.value.message
    (variant,) = client.augment([np.full((*fits, 3), 90, np.uint8)], spec, seed=1)
    assert variant.image.shape == (*fits, 3)
