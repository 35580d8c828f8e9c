"""Masks, boxes and keypoints through the engine, checked by their effect on a painted photo: after every op and
combination, and every random draw, the mask still covers the painted object, the box still holds it (tightly),
and the keypoint still sits on its marker. Boxes and keypoints also match albumentations' own pipeline."""

from __future__ import annotations

import random
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pytest
from augserve.engine import Pipeline
from augserve.engine.pipeline import BORDERS, INTERPOLATIONS, deferrable
from augserve.engine.targets import Targets
from augserve_client.protocol.spec import Crop, Reflect, Rotate, Shift, Spec
from augserve_client.protocol.targets import ImageTargets, box_problem, point_problem
from painted_scene import (
    CLASS,
    MARKER_AT,
    OBJECT,
    Scene,
    inside_some_box,
    marker_centre_visible,
    marker_within,
    mask_agreement,
    near,
    painted,
    painted_core,
)

SEEDS = range(12)
RRC = {"op": "crop", "mode": "random_resized", "size": [96, 112], "scale": [0.3, 1.0]}
ROTATE = {"op": "rotate", "angle": [-40, 40], "p": 1}
# name, ops, output size; every row runs for every seed.
TABLE: list[tuple[str, list[dict[str, Any]], list[int] | None]] = [
    ("reflect-horizontal", [{"op": "reflect", "p": 1}], None),
    ("reflect-vertical", [{"op": "reflect", "p": 1, "horizontal": False, "vertical": True}], None),
    ("rotate", [ROTATE], None),
    ("rotate-reflect-border", [{**ROTATE, "border": "reflect"}], None),
    ("rotate-right-angles", [{"op": "rotate", "right_angles": [90, 180, 270], "p": 1}], None),
    ("crop-random", [{"op": "crop", "size": [120, 160]}], None),
    ("crop-center-padded", [{"op": "crop", "mode": "center", "size": [220, 200]}], None),
    ("crop-random-resized", [RRC], None),
    ("shift-fraction", [{"op": "shift", "x": [-0.3, 0.3], "y": [-0.3, 0.3], "p": 1}], None),
    ("shift-pixels", [{"op": "shift", "unit": "pixels", "x": [-40, 40], "y": [-40, 40], "p": 1}], None),
    ("fused-flips", [{"op": "reflect", "p": 0.5, "vertical": True}, RRC], None),
    ("fused-rotation", [{"op": "reflect", "p": 0.5}, ROTATE, RRC], None),
    ("fused-rotation-upscaled", [ROTATE, {**RRC, "size": [300, 300], "scale": [0.2, 0.5]}], None),
    ("everything-resized", [{"op": "reflect"}, {**ROTATE, "p": 0.5}, {"op": "shift"}, RRC], [64, 80]),
    ("right-angles-then-crop", [{"op": "rotate", "right_angles": [90]}, {"op": "crop", "size": [150, 150]}], None),
]
IDS = [row[0] for row in TABLE]


@pytest.fixture(scope="module")
def scene(photos: list[np.ndarray]) -> Scene:
    return painted(photos[0])


def scene_targets(scene: Scene) -> Targets:
    request = ImageTargets(boxes=[scene.box], labels=[CLASS], keypoints=[MARKER_AT], keypoint_labels=["marker"])
    return Targets.of(request, scene.mask)


def spec_of(ops: list[dict[str, Any]], size: list[int] | None) -> Spec:
    return Spec.model_validate({"ops": ops, "output": {"size": size, "format": "npy"}})


def window_scale(spec: Spec) -> float:
    """How much the ops may enlarge the object: a random resized crop's output over its smallest window."""
    scale = 1.0
    for op in spec.ops:
        if isinstance(op, Crop) and op.mode == "random_resized":
            scale = max(scale, (op.size[0] * op.size[1] / (op.scale[0] * 200 * 240)) ** 0.5 * 1.2)
    return scale


@pytest.mark.parametrize(("ops", "size"), [row[1:] for row in TABLE], ids=IDS)
def test_targets_follow_the_pixels(scene: Scene, ops: list[dict[str, Any]], size: list[int] | None) -> None:
    spec = spec_of(ops, size)
    pipeline = Pipeline(spec, with_targets=True)
    scale = window_scale(spec)
    reflected = any(op.get("border") == "reflect" for op in ops)
    seen_object = seen_marker = 0
    for seed in SEEDS:
        variant = pipeline(scene.image, seed, scene_targets(scene))
        image, moved = variant.image, variant.targets
        assert moved is not None and moved.mask is not None and moved.mask.shape == image.shape[:2]
        assert mask_agreement(image, moved.mask) >= 0.99, f"seed {seed}: the mask left the painted object"
        boxes = [list(box) for box in moved.boxes]
        core = painted_core(image)
        assert inside_some_box(core, boxes), f"seed {seed}: painted pixels outside every box {boxes}"
        if len(core) > 20:
            seen_object += 1
            assert moved.labels and set(moved.labels) == {CLASS}
            if not reflected:
                assert_tight(image, boxes[0], tolerance=2.0 + scale)
        seen_marker += check_keypoints(image, moved, radius=1.5 + scale / 2)
    assert seen_object >= len(SEEDS) // 3 and seen_marker >= 1, "the draws never showed the targets: vacuous"


def assert_tight(image: np.ndarray, box: list[float], tolerance: float) -> None:
    """The box is the painted object's own box, within ``tolerance`` pixels on each side, when the whole object
    shows. (A box cut by the image's border is the box clipped, albumentations' rule, which can be looser than
    the visible part of a rotated object: containment, checked for every box, is what holds then.)"""
    height, width = image.shape[:2]
    x_min, y_min, x_max, y_max = box
    if min(x_min, y_min, width - x_max, height - y_max) <= tolerance:
        return
    ys, xs = np.nonzero(near(image, OBJECT))
    painted_box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert np.allclose(box, painted_box, atol=tolerance), f"box {box} vs painted {painted_box}"


def check_keypoints(image: np.ndarray, moved: Targets, radius: float) -> int:
    """Each keypoint sits on a marker; a dropped one's marker no longer shows. 1 if the marker was kept."""
    if len(moved.keypoints) == 0:
        assert not marker_centre_visible(image), "the keypoint was dropped while its marker still shows"
        return 0
    assert moved.keypoint_labels is not None and set(moved.keypoint_labels) == {"marker"}
    for point in moved.keypoints:
        assert marker_within(image, list(point), radius), f"keypoint {point} is not on its marker"
    return 1


@pytest.mark.parametrize(("ops", "size"), [row[1:] for row in TABLE], ids=IDS)
def test_an_image_is_the_same_bytes_with_or_without_targets(
    scene: Scene, ops: list[dict[str, Any]], size: list[int] | None
) -> None:
    spec = spec_of(ops, size)
    plain, targeted = Pipeline(spec), Pipeline(spec, with_targets=True)
    for seed in SEEDS:
        assert np.array_equal(plain(scene.image, seed).image, targeted(scene.image, seed, scene_targets(scene)).image)


def test_the_fused_run_serves_targets() -> None:
    """The rows that fuse a run into the crop keep fusing when targets come along (the bytes test above then
    shows the image path is the fast one)."""
    for name, ops, size in TABLE:
        if name.startswith("fused"):
            assert deferrable(spec_of(ops, size).ops)


def reference(spec: Spec) -> A.Compose:
    """albumentations' own transforms for ``spec``, as a user would write them (no right angles here: the
    engine's RightAngleRotate chooses among the allowed angles, which RandomRotate90 cannot)."""
    built: list[A.BasicTransform] = []
    for op in spec.ops:
        if isinstance(op, Reflect):
            flips = ((A.HorizontalFlip, op.horizontal), (A.VerticalFlip, op.vertical))
            built += [kind(p=op.p) for kind, on in flips if on]
        elif isinstance(op, Rotate):
            border = {"border_mode": BORDERS[op.border], "fill": op.fill}
            built.append(A.Rotate(limit=op.angle, interpolation=INTERPOLATIONS[op.interpolation], p=op.p, **border))
        elif isinstance(op, Shift):
            translate = (
                {"translate_percent": {"x": op.x, "y": op.y}}
                if op.unit == "fraction"
                else {"translate_px": {"x": tuple(map(round, op.x)), "y": tuple(map(round, op.y))}}
            )
            built.append(A.Affine(**translate, border_mode=BORDERS[op.border], fill=op.fill, p=op.p))
        elif op.mode == "random_resized":
            built.append(A.RandomResizedCrop(size=tuple(op.size), scale=op.scale, ratio=op.ratio, p=op.p))
        else:
            kind = A.RandomCrop if op.mode == "random" else A.CenterCrop
            built.append(kind(*op.size, pad_if_needed=True, border_mode=BORDERS[op.border], fill=op.fill, p=op.p))
    if spec.output.size is not None:
        built.append(A.Resize(*spec.output.size))
    boxes = A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True)
    points = A.KeypointParams(format="xy", label_fields=["keypoint_labels"])
    return A.Compose(built, bbox_params=boxes, keypoint_params=points)


@pytest.mark.parametrize(
    ("ops", "size"), [row[1:] for row in TABLE if "right" not in row[0]], ids=[i for i in IDS if "right" not in i]
)
def test_boxes_and_keypoints_are_albumentations_own(
    scene: Scene, ops: list[dict[str, Any]], size: list[int] | None
) -> None:
    spec = spec_of(ops, size)
    pipeline, theirs = Pipeline(spec, with_targets=True), reference(spec)
    for seed in SEEDS:
        ours = pipeline(scene.image, seed, scene_targets(scene)).targets
        theirs.set_random_state(np.random.default_rng(seed), random.Random(seed))
        expected = theirs(image=scene.image, **scene_targets(scene).inputs())
        assert ours is not None
        assert np.allclose(ours.boxes, np.asarray(expected["bboxes"]).reshape(-1, 4), atol=1e-6), seed
        assert np.allclose(ours.keypoints, np.asarray(expected["keypoints"]).reshape(-1, 2), atol=1e-4), seed
        assert ours.labels == list(expected["labels"])


def test_a_mask_fill_fills_what_comes_from_outside(scene: Scene) -> None:
    """255, the usual "ignore" index, where a rotation brings in pixels from beyond the image; nearest
    interpolation keeps every mask value one of the values given."""
    spec = Spec.model_validate({"ops": [{**ROTATE, "angle": [30, 30]}, RRC], "targets": {"mask_fill": 255}})
    variant = Pipeline(spec, with_targets=True)(scene.image, 3, Targets(mask=scene.mask))
    assert variant.targets is not None and variant.targets.mask is not None
    assert set(np.unique(variant.targets.mask)) <= {0, CLASS, 255}
    corner_black = variant.image[:3, :3].max() == 0 or variant.image[-3:, -3:].max() == 0
    assert not corner_black or 255 in variant.targets.mask


def test_boxes_below_the_visibility_rule_are_dropped(scene: Scene) -> None:
    """A crop that keeps a sliver of the object drops its box under min_visibility, and keeps it without."""
    ops = [{"op": "shift", "unit": "pixels", "x": [-140, -140], "y": [0, 0], "p": 1}]  # 10 of 80 columns stay
    for rule, kept in ((0.5, 0), (0.0, 1)):
        spec = Spec.model_validate({"ops": ops, "targets": {"min_visibility": rule}})
        moved = Pipeline(spec, with_targets=True)(scene.image, 0, scene_targets(scene)).targets
        assert moved is not None and len(moved.boxes) == kept


@pytest.mark.parametrize("box_format", ["pascal_voc", "coco", "yolo", "albumentations"])
def test_every_box_format_comes_back_in_its_own_format(scene: Scene, box_format: str) -> None:
    """A horizontal flip of the object's box, written in each format, comes back mirrored in that format."""
    x_min, y_min, x_max, y_max = scene.box
    height, width = scene.image.shape[:2]
    written = {
        "pascal_voc": lambda a, b, c, d: [a, b, c, d],
        "coco": lambda a, b, c, d: [a, b, c - a, d - b],
        "yolo": lambda a, b, c, d: [(a + c) / 2 / width, (b + d) / 2 / height, (c - a) / width, (d - b) / height],
        "albumentations": lambda a, b, c, d: [a / width, b / height, c / width, d / height],
    }[box_format]
    spec = Spec.model_validate({"ops": [{"op": "reflect", "p": 1}], "targets": {"box_format": box_format}})
    targets = Targets.of(ImageTargets(boxes=[written(x_min, y_min, x_max, y_max)], labels=[1]))
    moved = Pipeline(spec, with_targets=True)(scene.image, 0, targets).targets
    assert moved is not None
    assert np.allclose(moved.boxes[0], written(width - x_max, y_min, width - x_min, y_max))


@pytest.mark.parametrize(
    ("box", "box_format", "clip", "problem"),
    [
        ([10, 10, 10, 20], "pascal_voc", True, "no area"),
        ([10, 10, 300, 20], "pascal_voc", False, "reaches past"),
        ([250, 10, 300, 20], "pascal_voc", True, "entirely outside"),
        ([10, 10, -5, 5], "coco", True, "no area"),
        ([0.5, 0.5, 0.2, 0.2], "yolo", True, None),
        ([0.9, 0.5, 0.4, 0.2], "yolo", False, "reaches past"),
        ([0.1, 0.1, 0.5, 0.5], "albumentations", False, None),
        ([-10, 0, 20, 20], "pascal_voc", True, None),
    ],
)
def test_box_problems_are_named_before_any_work(
    box: list[float], box_format: str, clip: bool, problem: str | None
) -> None:
    found = box_problem(tuple(box), box_format, 200, 240, clip)  # type: ignore[arg-type]
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_keypoint_off_the_image_is_named() -> None:
    assert point_problem((240.0, 10.0), 200, 240) is not None
    assert point_problem((239.5, 199.5), 200, 240) is None


def test_a_pipeline_without_targets_refuses_them(scene: Scene) -> None:
    with pytest.raises(ValueError, match="with_targets"):
        Pipeline(Spec())(scene.image, 0, Targets(mask=scene.mask))


def test_a_mask_is_not_blurred(scene: Scene) -> None:
    """Class ids stay class ids: a cubic rotation of the image still moves the mask by nearest neighbour."""
    spec = Spec.model_validate({"ops": [{**ROTATE, "interpolation": "cubic"}]})
    mask = cv2.resize(scene.mask, None, fx=1, fy=1)
    moved = Pipeline(spec, with_targets=True)(scene.image, 5, Targets(mask=mask)).targets
    assert moved is not None and moved.mask is not None and set(np.unique(moved.mask)) <= {0, CLASS}
