"""A spec compiled to an albumentations pipeline, seeded per variant, and what each variant had applied.

Determinism: before each variant, the pipeline's random state is replaced by fresh generators seeded with the
variant's own seed (see :mod:`augserve_client.protocol.seeds`). Compose's internal RNG is never relied on: in
albumentations 2.0.8 it is copied identically into forked workers and dropped by ``to_dict``. We use
``set_random_state`` (one shared generator for all ops) rather than ``set_random_seed``, which would seed
every op with the *same* seed and make, e.g., horizontal and vertical flips with equal ``p`` always agree.

A pipeline carries random state while it runs, so each thread builds its own (once per spec, then reused):
:class:`PipelineCache`. Runs of flips and a rotation before a random resized crop are deferred to the crop
(:func:`deferrable`; why and how in :mod:`.transforms`).

Targets (a mask, boxes, keypoints) take a pipeline of their own, built with albumentations' processors for
them (:mod:`.targets`): the same transforms and the same draws, so an image's pixels are the same bytes with
or without targets beside it.
"""

from __future__ import annotations

import math
import random
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
from augserve_client.protocol.spec import Albumentations, Crop, Op, Reflect, Rotate, Shift, Spec

from . import transforms
from .allowed import allowed_transform, plain
from .targets import Targets, processors
from .transforms import (
    Deferred,
    DeferredHorizontalFlip,
    DeferredRotate,
    DeferredVerticalFlip,
    RandomResizedCrop,
    RightAngleRotate,
)

BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
PIPELINES_PER_THREAD = 32


@dataclass(frozen=True)
class Variant:
    """One augmented image, its targets if it had any, and what was done to make it."""

    image: np.ndarray
    seed: int
    applied: list[dict[str, Any]]
    targets: Targets | None = None


class Pipeline:
    """A spec compiled to albumentations transforms, each remembered with the spec op it came from.

    ``with_targets``: the pipeline also takes a mask, boxes and keypoints (:meth:`__call__`'s ``targets``)."""

    def __init__(self, spec: Spec, with_targets: bool = False) -> None:
        self.spec = spec
        self.with_targets = with_targets
        self.deferred = Deferred()
        deferring = deferrable(spec.ops)
        self.steps: list[tuple[int, str, A.BasicTransform]] = []
        mask_fill = spec.targets.mask_fill
        for index, op in enumerate(spec.ops):
            deferred = self.deferred if index in deferring else None
            self.steps += [(index, op.op, transform) for transform in _transforms(op, deferred, mask_fill)]
        if spec.output.size is not None:
            height, width = spec.output.size
            interpolation = INTERPOLATIONS[spec.output.interpolation]
            self.steps.append((-1, "output", A.Resize(height, width, interpolation=interpolation, p=1.0)))
        extra = processors(spec.targets) if with_targets else {}
        with warnings.catch_warnings():  # "no transform to process" boxes: true of pixel-only specs, and harmless
            warnings.filterwarnings("ignore", message="Got processor for", category=UserWarning)
            self.compose = A.Compose([transform for _, _, transform in self.steps], strict=True, **extra)

    def __call__(self, image: np.ndarray, seed: int, targets: Targets | None = None) -> Variant:
        if targets is None:
            out, moved = self.image(image, seed), None
        else:
            out, moved = self.with_moved(image, seed, targets)
        # Each transform keeps the params it drew for this call (empty when skipped): the same values that
        # Compose(save_applied_params=True) copies out, but tied to the spec op that made the transform.
        applied = [_describe(index, name, t) for index, name, t in self.steps if t.params]
        return Variant(out, seed, applied, moved)

    def image(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The variant's pixels alone: epoch batches carry seeds, not descriptions, so they skip describing."""
        return np.ascontiguousarray(self._run(seed, image=image)["image"])

    def with_moved(self, image: np.ndarray, seed: int, targets: Targets) -> tuple[np.ndarray, Targets]:
        """The variant's pixels and its targets, moved by the same draw."""
        if not self.with_targets:
            raise ValueError("this pipeline was built without targets (Pipeline(spec, with_targets=True))")
        out = self._run(seed, image=image, **targets.inputs())
        return np.ascontiguousarray(out["image"]), targets.replaced(out)

    def _run(self, seed: int, **data: Any) -> dict[str, Any]:
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        self.deferred.clear()  # after a variant that failed half-way
        return self.compose(**data)


def deferrable(ops: Sequence[Op]) -> set[int]:
    """Indices of the ops that defer to a crop after them, and of those crops.

    A run qualifies when it is reflects and at most one range rotation, directly before a random resized crop
    that always applies (a skipped crop would leave the run undone). Two rotations are not one: the second
    turns the first one's filled corners. The rotation must resample the way the crop does, and not by area,
    which ``warpAffine`` cannot do. A ``nearest`` crop never qualifies: cv2.resize's nearest neighbour picks
    ``floor(dst * scale)``, not the pixel-centre mapping, so it neither commutes with a flip nor matches a warp.
    """
    chosen: set[int] = set()
    for index, crop in enumerate(ops):
        if not (isinstance(crop, Crop) and crop.mode == "random_resized" and crop.p == 1.0):
            continue
        if crop.interpolation == "nearest":
            continue
        run, rotated = [], False
        for before in range(index - 1, -1, -1):
            op = ops[before]
            rotation = isinstance(op, Rotate) and op.right_angles is None and not rotated
            if rotation and (op.interpolation != crop.interpolation or op.interpolation == "area"):
                break
            if not (rotation or isinstance(op, Reflect)):
                break
            rotated |= rotation
            run.append(before)
        chosen.update([*run, index] if run else [])
    return chosen


def _transforms(op: Op, deferred: Deferred | None, mask_fill: int) -> list[A.BasicTransform]:
    """The transforms for one op; given ``deferred``, the kind that leaves its resampling to the crop after it.
    ``mask_fill`` is what a mask gets where pixels come from outside the image."""
    defer = {} if deferred is None else {"deferred": deferred}
    if isinstance(op, Albumentations):
        return [allowed_transform(op)]
    if isinstance(op, Reflect):
        kinds = (DeferredHorizontalFlip, DeferredVerticalFlip) if defer else (A.HorizontalFlip, A.VerticalFlip)
        return [kind(p=op.p, **defer) for kind, on in zip(kinds, (op.horizontal, op.vertical), strict=True) if on]
    if isinstance(op, Rotate):
        if op.right_angles is not None:
            return [RightAngleRotate(op.right_angles, p=op.p)]
        rotate = DeferredRotate if defer else transforms.Rotate
        return [rotate(limit=op.angle, p=op.p, **_resampled(op, mask_fill), **defer)]
    if isinstance(op, Shift):
        axes = {"x": op.x, "y": op.y}
        translate = {"translate_px": {k: (round(lo), round(hi)) for k, (lo, hi) in axes.items()}}
        if op.unit == "fraction":
            translate = {"translate_percent": axes}
        return [transforms.Affine(**translate, p=op.p, **_resampled(op, mask_fill))]
    return [_crop(op, deferred, mask_fill)]


def _resampled(op: Rotate | Shift, mask_fill: int) -> dict[str, Any]:
    interpolation = INTERPOLATIONS[op.interpolation]
    return {"border_mode": BORDERS[op.border], "fill": op.fill, "fill_mask": mask_fill, "interpolation": interpolation}


def _crop(op: Crop, deferred: Deferred | None, mask_fill: int) -> A.BasicTransform:
    height, width = op.size
    if op.mode == "random_resized":
        interpolation = INTERPOLATIONS[op.interpolation]
        return RandomResizedCrop(
            deferred, size=(height, width), scale=op.scale, ratio=op.ratio, interpolation=interpolation, p=op.p
        )
    crop = A.RandomCrop if op.mode == "random" else A.CenterCrop
    border = BORDERS[op.border]
    return crop(height, width, pad_if_needed=True, border_mode=border, fill=op.fill, fill_mask=mask_fill, p=op.p)


def _describe(index: int, name: str, transform: A.BasicTransform) -> dict[str, Any]:
    """The parameters a transform applied, as plain JSON values a person can read."""
    params = transform.params
    kind = getattr(transform, "described_as", type(transform).__name__)
    described: dict[str, Any] = {"op": name, "op_index": index, "transform": kind}
    if name == "albumentations":
        described["params"] = plain(params)
    elif isinstance(transform, A.HorizontalFlip | A.VerticalFlip):
        described["axis"] = "horizontal" if isinstance(transform, A.HorizontalFlip) else "vertical"
    elif isinstance(transform, RightAngleRotate):
        described["angle"] = 90 * params["factor"]
    elif isinstance(transform, A.Rotate):
        matrix = params["matrix"]
        described["angle"] = round(math.degrees(math.atan2(matrix[0][1], matrix[0][0])), 4)
    elif isinstance(transform, A.Affine):
        described["translate_px"] = [round(float(params["matrix"][0][2]), 3), round(float(params["matrix"][1][2]), 3)]
    elif "crop_coords" in params:
        described["box"] = [int(v) for v in params["crop_coords"]]  # x_min, y_min, x_max, y_max
        pad = params.get("pad_params")
        if pad:
            described["pad"] = {key.removeprefix("pad_"): int(value) for key, value in pad.items()}
    else:
        described["size"] = [transform.height, transform.width]
    return described


class PipelineCache:
    """Per-thread pipelines keyed by the spec's canonical JSON; bounded so odd specs cannot pile up."""

    def __init__(self, per_thread: int = PIPELINES_PER_THREAD) -> None:
        self._local = threading.local()
        self._per_thread = per_thread

    def get(self, spec: Spec, with_targets: bool = False) -> Pipeline:
        pipelines: OrderedDict[tuple[str, bool], Pipeline] = self._local.__dict__.setdefault("pipelines", OrderedDict())
        key = (spec.model_dump_json(), with_targets)
        pipeline = pipelines.get(key)
        if pipeline is None:
            pipeline = pipelines[key] = Pipeline(spec, with_targets)
            if len(pipelines) > self._per_thread:
                pipelines.popitem(last=False)
        pipelines.move_to_end(key)
        return pipeline
