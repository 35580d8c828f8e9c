"""A variant's crop window, from its seed's draws alone: no pixel is touched.

The ``fast`` decode mode (:mod:`augserve.scaled_decode`) must know how large a variant's random resized crop
window is before the image is decoded. The pipeline's transforms draw their parameters apart from their pixel
work (``get_params``, then ``apply``), so replaying Compose's draws in its order, on an array that has the
image's shape and no pixels behind it, gives the same window the real call will draw on that shape.
"""

from __future__ import annotations

import random

import albumentations as A
import numpy as np

from .pipeline import Pipeline
from .transforms import RandomResizedCrop, RightAngleRotate

_NOTHING = np.zeros((1, 1, 3), np.uint8)
Window = tuple[tuple[int, int], tuple[int, int]]  # ((window height, width), (crop output height, width))


def crop_window(pipeline: Pipeline, seed: int, shape: tuple[int, int]) -> Window | None:
    """The window and output size of the first random resized crop the variant of ``seed`` reaches on an image
    of ``shape``; None when it reaches none, or first meets a transform that changes the shape otherwise. Uses up
    the pipeline's random state: the pipeline reseeds itself before every variant."""
    compose = pipeline.compose
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
    compose.py_random.random()  # Compose's own "need to run" draw, made even at p=1
    height, width = shape
    for transform in compose.transforms:
        if not transform.should_apply():
            continue
        data = {"image": np.broadcast_to(_NOTHING, (height, width, 3))}
        params = transform.update_transform_params(transform.get_params(), data)
        drawn = transform.get_params_dependent_on_data(params, data)
        if isinstance(transform, RandomResizedCrop):
            x_min, y_min, x_max, y_max = drawn["crop_coords"]
            return (y_max - y_min, x_max - x_min), (transform.size[0], transform.size[1])
        if isinstance(transform, RightAngleRotate):
            height, width = (width, height) if params["factor"] % 2 else (height, width)
        elif not isinstance(transform, A.HorizontalFlip | A.VerticalFlip | A.Rotate | A.Affine):
            return None
    return None
