"""Every albumentations transform augserve owns: each draws its parameters exactly as albumentations does
(same seeds, same draws, in the same order) and does its pixel work through :mod:`.functional`.

- :class:`Affine` and :class:`Rotate` warp through :func:`.functional.warp_affine`; masks, boxes and keypoints
  go through albumentations' own code with the same draw.
- :class:`RightAngleRotate` rotates losslessly by one of the allowed right angles.
- :class:`RandomResizedCrop` never cuts an empty window, and renders the run deferred to it, if any.

Deferred geometry. Rotating a photo by a few degrees and then cutting a small window out of it resamples every
pixel of the photo to keep a fraction of them. So flips and a rotation that a random resized crop follows
record what they would do in the pipeline's :class:`Deferred` instead of resampling, and the crop, which knows
its window, renders the run in one step (:func:`.functional.render_window`), for the image and for a mask:

- flips alone: the window is mirrored instead of the image, cropped and resized, and the small result
  flipped. When the window shrinks (the usual case) with linear interpolation, these are exactly the pixels
  of flipping first; otherwise OpenCV's fixed-point weights, not quite symmetric, can differ by one grey level.
- with a rotation: one ``warpAffine`` of the source through the composed matrix (flips, rotation, window,
  resize) straight onto the output size. The variant is interpolated once instead of twice (rotate, then
  resize), so it is a little sharper; the geometry, the border and the fill are the rotation's own.

- a mask takes the same composed matrix, with nearest-neighbour interpolation and the mask's own fill.

Boxes and keypoints are not deferred: moving them costs nothing, so each transform in the run moves them at
once, through albumentations' own functions, and they come out exactly as albumentations' pipeline makes them.

Which runs may be deferred is decided when a spec is compiled (:func:`.pipeline.deferrable`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import albumentations as A
import albumentations.augmentations.crops.functional as fcrops
import albumentations.augmentations.geometric.functional as fgeometric
import numpy as np

from .functional import mirror, render_window, warp_affine


class Affine(A.Affine):
    """``A.Affine`` warping through :func:`.functional.warp_affine`, drawing only the image's matrix."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """albumentations' draws, in its order, and its matrices (the engine never sets ``fit_output``)."""
        shape = params["shape"][:2]
        translate = self._get_translate_params(shape)
        shear = self._get_shear_params()
        scale = self._get_scale(self.scale, self.keep_ratio, self.balanced_scale, self.py_random)
        rotate = self.py_random.uniform(*self.rotate)
        matrix, bbox_matrix = _matrices(shape, translate, shear, scale, rotate)
        return {"rotate": rotate, "scale": scale, "matrix": matrix, "bbox_matrix": bbox_matrix, "output_shape": shape}

    def apply(self, img: np.ndarray, matrix: np.ndarray, output_shape: tuple[int, int], **params: Any) -> np.ndarray:
        return warp_affine(img, matrix, self.interpolation, self.fill, self.border_mode, output_shape)


class Rotate(A.Rotate):
    """``A.Rotate`` warping through :func:`.functional.warp_affine` (the engine never sets ``crop_border``)."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        angle = self.py_random.uniform(*self.limit)
        still, unscaled = {"x": 0, "y": 0}, {"x": 1, "y": 1}
        matrix, bbox_matrix = _matrices(params["shape"][:2], still, still, unscaled, angle)
        return {"x_min": -1, "x_max": -1, "y_min": -1, "y_max": -1, "matrix": matrix, "bbox_matrix": bbox_matrix}

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return warp_affine(img, matrix, self.interpolation, self.fill, self.border_mode, params["shape"][:2])


def _matrices(shape: tuple[int, int], translate: Any, shear: Any, scale: Any, angle: float) -> tuple[Any, Any]:
    """albumentations' two matrices for one draw: about pixel centres for pixels and keypoints, about the
    continuous centre for boxes."""
    create = fgeometric.create_affine_transformation_matrix
    pixels = create(translate, shear, scale, angle, fgeometric.center(shape))
    return pixels, create(translate, shear, scale, angle, fgeometric.center_bbox(shape))


class RightAngleRotate(A.RandomRotate90):
    """Lossless rotation by one of the allowed right angles (RandomRotate90 would also pick 0)."""

    def __init__(self, angles: list[int], p: float) -> None:
        super().__init__(p=p)
        self.factors = sorted({angle // 90 for angle in angles})

    def get_params(self) -> dict[str, int]:
        return {"factor": self.py_random.choice(self.factors)}


class Deferred:
    """The geometry recorded so far for one variant: a 3x3 matrix taking source pixel centres to those of the
    image the crop would have seen, and the ``(fill, mask fill, border_mode)`` of the rotation in the run, if any.

    A pipeline makes one variant at a time in one thread; its deferred transforms and its crop share one
    instance, which the pipeline clears before every variant and the crop when it takes the run over.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.matrix = np.eye(3)
        self.warp: tuple[Any, Any, int] | None = None

    def then(self, matrix: np.ndarray) -> None:
        self.matrix = matrix @ self.matrix


class _DeferredFlip:
    """Records a flip of pixel centres along ``axis`` (0: columns, 1: rows) instead of flipping."""

    axis: ClassVar[int]

    def __init__(self, p: float, deferred: Deferred) -> None:
        super().__init__(p=p)  # type: ignore[call-arg]  # the albumentations flip this is mixed into
        self.deferred = deferred

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        self.deferred.then(mirror(img.shape[1 - self.axis], self.axis))
        return img

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return mask  # the crop renders it with the image's run


class DeferredHorizontalFlip(_DeferredFlip, A.HorizontalFlip):
    axis = 0
    described_as = "HorizontalFlip"  # deferring changes when the pixels move, not what is applied


class DeferredVerticalFlip(_DeferredFlip, A.VerticalFlip):
    axis = 1
    described_as = "VerticalFlip"


class DeferredRotate(Rotate):
    described_as = "Rotate"

    def __init__(self, deferred: Deferred, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferred = deferred

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        self.deferred.then(matrix)
        self.deferred.warp = (self.fill, self.fill_mask, self.border_mode)
        return img

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return mask


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
        if params.get("run") is None:
            return super().apply(img, crop_coords, **params)
        return self._render(img, crop_coords, self.interpolation, params["run"], fill=0)

    def apply_to_mask(self, mask: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        if params.get("run") is None:
            return super().apply_to_mask(mask, crop_coords, **params)
        return self._render(mask, crop_coords, self.mask_interpolation, params["run"], fill=1)

    def _render(
        self, array: np.ndarray, crop_coords: tuple[int, int, int, int], interpolation: int, run: Any, fill: int
    ) -> np.ndarray:
        """The window of ``array`` the deferred ``run`` makes; ``fill`` picks the image's (0) or the mask's (1)
        of the rotation's ``(fill, mask fill, border)``."""
        matrix, warp = run
        border = None if warp is None else (warp[fill], warp[2])
        return render_window(array, matrix, crop_coords, self.size, interpolation, border)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """The window, and the run deferred to it (taken over here, once, for the image and the mask alike)."""
        drawn = super().get_params_dependent_on_data(params, data)
        x_min, y_min, x_max, y_max = drawn["crop_coords"]
        if not (x_max > x_min and y_max > y_min):
            window = (max(1, y_max - y_min), max(1, x_max - x_min))
            drawn = {"crop_coords": fcrops.get_center_crop_coords(params["shape"][:2], window)}
        if self.deferred is not None:
            drawn["run"] = (self.deferred.matrix, self.deferred.warp)
            self.deferred.clear()
        return drawn
