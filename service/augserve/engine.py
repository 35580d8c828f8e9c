"""The engine: spec -> albumentations pipeline -> variants. Pure: arrays in, arrays and parameters out.

Determinism: before each variant, the pipeline's random state is replaced by fresh generators seeded with the
variant's own seed (see :mod:`augserve_client.seeds`). Compose's internal RNG is never relied on: in
albumentations 2.0.8 it is copied identically into forked workers and dropped by ``to_dict``. We use
``set_random_state`` (one shared generator for all ops) rather than ``set_random_seed``, which would seed
every op with the *same* seed and make, e.g., horizontal and vertical flips with equal ``p`` always agree.

A pipeline carries random state while it runs, so each thread builds its own (once per spec, then reused).
Flips and a rotation right before a random resized crop are resampled by the crop, in one step: see
:mod:`augserve.fusion`. Affine warps of RGB images run in RGBA, twice as fast in OpenCV: see
:mod:`augserve.warps`.
"""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import albumentations as A
import albumentations.augmentations.crops.functional as fcrops
import cv2
import numpy as np
from augserve_client.errors import ErrorCode
from augserve_client.spec import Crop, Reflect, Rotate, Shift, Spec, op_shapes

from . import warps
from .errors import ServiceError, limit_exceeded
from .fusion import Deferred, DeferredHorizontalFlip, DeferredRotate, DeferredVerticalFlip, deferrable, render

BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
PIPELINES_PER_THREAD = 32


class RightAngleRotate(A.RandomRotate90):
    """Lossless rotation by one of the allowed right angles (RandomRotate90 would also pick 0)."""

    def __init__(self, angles: list[int], p: float) -> None:
        super().__init__(p=p)
        self.factors = sorted({angle // 90 for angle in angles})

    def get_params(self) -> dict[str, int]:
        return {"factor": self.py_random.choice(self.factors)}


class RandomResizedCrop(A.RandomResizedCrop):
    """RandomResizedCrop whose window is never empty, and which renders the ops deferred to it, if any.

    When ten draws miss, albumentations 2.0.8 falls back to a centred window whose short side is
    ``round(side / ratio)``: a ratio beyond twice the image's width (or below half over its height) rounds it to
    0 pixels, and the crop raises in the middle of a stream. Such windows are widened to one pixel.
    """

    def __init__(self, deferred: Deferred | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferred = deferred

    def apply(self, img: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        if self.deferred is None:
            return super().apply(img, crop_coords, **params)
        return render(self.deferred, img, crop_coords, self.size, self.interpolation)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        drawn = super().get_params_dependent_on_data(params, data)
        x_min, y_min, x_max, y_max = drawn["crop_coords"]
        if x_max > x_min and y_max > y_min:
            return drawn
        window = (max(1, y_max - y_min), max(1, x_max - x_min))
        return {"crop_coords": fcrops.get_center_crop_coords(params["shape"][:2], window)}


@dataclass(frozen=True)
class Variant:
    """One augmented image and what was done to make it."""

    image: np.ndarray
    seed: int
    applied: list[dict[str, Any]]


class Pipeline:
    """A spec compiled to albumentations transforms, each remembered with the spec op it came from."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.deferred = Deferred()
        deferring = deferrable(spec.ops)
        self.steps: list[tuple[int, str, A.BasicTransform]] = []
        for index, op in enumerate(spec.ops):
            deferred = self.deferred if index in deferring else None
            self.steps += [(index, op.op, transform) for transform in _transforms(op, deferred)]
        if spec.output.size is not None:
            height, width = spec.output.size
            interpolation = INTERPOLATIONS[spec.output.interpolation]
            self.steps.append((-1, "output", A.Resize(height, width, interpolation=interpolation, p=1.0)))
        self.compose = A.Compose([transform for _, _, transform in self.steps], strict=True)

    def __call__(self, image: np.ndarray, seed: int) -> Variant:
        out = self.image(image, seed)
        # Each transform keeps the params it drew for this call (empty when skipped): the same values that
        # Compose(save_applied_params=True) copies out, but tied to the spec op that made the transform.
        applied = [_describe(index, name, t) for index, name, t in self.steps if t.params]
        return Variant(out, seed, applied)

    def image(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The variant's pixels alone: epoch batches carry seeds, not descriptions, so they skip describing."""
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        self.deferred.clear()  # after a variant that failed half-way
        return np.ascontiguousarray(self.compose(image=image)["image"])


def _transforms(op: Reflect | Rotate | Crop | Shift, deferred: Deferred | None) -> list[A.BasicTransform]:
    """The transforms for one op; given ``deferred``, the kind that leaves its resampling to the crop after it."""
    defer = {} if deferred is None else {"deferred": deferred}
    if isinstance(op, Reflect):
        kinds = (DeferredHorizontalFlip, DeferredVerticalFlip) if defer else (A.HorizontalFlip, A.VerticalFlip)
        return [kind(p=op.p, **defer) for kind, on in zip(kinds, (op.horizontal, op.vertical), strict=True) if on]
    if isinstance(op, Rotate):
        if op.right_angles is not None:
            return [RightAngleRotate(op.right_angles, p=op.p)]
        return [(DeferredRotate if defer else warps.Rotate)(limit=op.angle, p=op.p, **_resampled(op), **defer)]
    if isinstance(op, Shift):
        axes = {"x": op.x, "y": op.y}
        translate = {"translate_px": {k: (round(lo), round(hi)) for k, (lo, hi) in axes.items()}}
        if op.unit == "fraction":
            translate = {"translate_percent": axes}
        return [warps.Affine(**translate, p=op.p, **_resampled(op))]
    return [_crop(op, deferred)]


def _resampled(op: Rotate | Shift) -> dict[str, Any]:
    return {"border_mode": BORDERS[op.border], "fill": op.fill, "interpolation": INTERPOLATIONS[op.interpolation]}


def _crop(op: Crop, deferred: Deferred | None) -> A.BasicTransform:
    height, width = op.size
    if op.mode == "random_resized":
        interpolation = INTERPOLATIONS[op.interpolation]
        return RandomResizedCrop(
            deferred, size=(height, width), scale=op.scale, ratio=op.ratio, interpolation=interpolation, p=op.p
        )
    crop = A.RandomCrop if op.mode == "random" else A.CenterCrop
    return crop(height, width, pad_if_needed=True, border_mode=BORDERS[op.border], fill=op.fill, p=op.p)


def _describe(index: int, name: str, transform: A.BasicTransform) -> dict[str, Any]:
    """The parameters a transform applied, as plain JSON values a person can read."""
    params = transform.params
    kind = type(transform).__name__.removeprefix("Deferred")  # deferring changes when, not what
    described: dict[str, Any] = {"op": name, "op_index": index, "transform": kind}
    if isinstance(transform, A.HorizontalFlip | A.VerticalFlip):
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


def check_fits(spec: Spec, height: int, width: int, name: str) -> None:
    """Refuse, before any work, an image smaller than a crop whose spec says ``if_smaller: error``."""
    shapes: set[tuple[int, int]] = {(height, width)}
    for index, op in enumerate(spec.ops):
        if isinstance(op, Crop) and op.mode != "random_resized" and op.if_smaller == "error":
            small = [(h, w) for h, w in shapes if h < op.size[0] or w < op.size[1]]
            if small:
                raise ServiceError(
                    ErrorCode.CROP_TOO_LARGE,
                    f"{name} reaches ops[{index}] as {small[0][0]}x{small[0][1]} (HxW), smaller than the crop "
                    f"{op.size[0]}x{op.size[1]}; ops[{index}].if_smaller is 'error' (use 'pad' to pad instead)",
                    field=f"spec.ops[{index}].size",
                    file=name,
                )
        shapes = {after for shape in shapes for after in op_shapes(op, shape)}


def check_sizes(spec: Spec, max_pixels: int) -> None:
    """Refuse a spec whose crops or output size would make variants larger than the pixel limit on inputs.

    The limit guards memory on the way in; without this a 1x1 upload with an output size of 16384x16384 asks
    for 805 MB per variant.
    """
    sizes = [(f"spec.ops[{index}].size", op.size) for index, op in enumerate(spec.ops) if isinstance(op, Crop)]
    if spec.output.size is not None:
        sizes.append(("spec.output.size", spec.output.size))
    for field, (height, width) in sizes:
        if height * width > max_pixels:
            message = f"{field} asks for {height}x{width} (HxW) variants"
            raise limit_exceeded(ErrorCode.IMAGE_TOO_LARGE, "max_pixels", max_pixels, message, field=field)


class PipelineCache:
    """Per-thread pipelines keyed by the spec's canonical JSON; bounded so odd specs cannot pile up."""

    def __init__(self, per_thread: int = PIPELINES_PER_THREAD) -> None:
        self._local = threading.local()
        self._per_thread = per_thread

    def get(self, spec: Spec) -> Pipeline:
        pipelines: OrderedDict[str, Pipeline] = self._local.__dict__.setdefault("pipelines", OrderedDict())
        key = spec.model_dump_json()
        pipeline = pipelines.get(key)
        if pipeline is None:
            pipeline = pipelines[key] = Pipeline(spec)
            if len(pipelines) > self._per_thread:
                pipelines.popitem(last=False)
        pipelines.move_to_end(key)
        return pipeline
