"""What a request may ask, checked before any pixel work: each refusal names the request field at fault.

These checks read a spec against the images it will meet and against the service's limits; the engine itself
never refuses anything (it renders what it is given).
"""

from __future__ import annotations

from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.spec import Crop, Spec, reaching_shapes

from .errors import ServiceError, limit_exceeded


def check_fits(spec: Spec, height: int, width: int, name: str) -> None:
    """Refuse, before any work, an image smaller than a crop whose spec says ``if_smaller: error``."""
    reaching = reaching_shapes(spec.ops, (height, width))
    for index, (op, shapes) in enumerate(zip(spec.ops, reaching, strict=False)):
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
