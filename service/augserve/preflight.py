"""What a request may ask, checked before any pixel work: each refusal names the request field at fault.

These checks read a spec against the images it will meet and against the service's limits; the engine itself
never refuses anything (it renders what it is given).
"""

from __future__ import annotations

from collections.abc import Callable

from augserve_client.protocol.allowlist import size_problem
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.spec import Albumentations, Crop, Spec, reaching_shapes
from augserve_client.protocol.targets import ImageTargets, TargetRules, box_problem, point_problem

from .engine.allowed import allowed_problem
from .errors import ServiceError, limit_exceeded


def check_fits(spec: Spec, height: int, width: int, name: str) -> None:
    """Refuse, before any work, an image smaller than a crop whose spec says ``if_smaller: error``, or than an
    albumentations transform can render."""
    reaching = reaching_shapes(spec.ops, (height, width))
    for index, (op, shapes) in enumerate(zip(spec.ops, reaching, strict=False)):
        if isinstance(op, Albumentations):
            problems = [size_problem(op.transform, h, w) for h, w in shapes]
            problem = next((found for found in problems if found is not None), None)
            if problem is not None:
                message = f"{name} reaches spec.ops[{index}] ({op.name}), which {problem}"
                raise ServiceError(ErrorCode.INVALID_SPEC, message, field=f"spec.ops[{index}]", file=name)
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


def check_spec(spec: Spec, max_pixels: int) -> None:
    """Everything a spec is checked for before its work starts, whatever route or command brought it."""
    check_sizes(spec, max_pixels)
    check_transforms(spec)


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


def check_targets(
    targets: ImageTargets | None,
    rules: TargetRules,
    height: int,
    width: int,
    field: str,
    name: str,
    box_field: Callable[[int], str] | None = None,
) -> None:
    """Refuse, before any work, a box or keypoint that cannot belong to an image of ``height`` x ``width``
    (albumentations would raise in the middle of the stream). ``field`` is where the targets sit in the request,
    e.g. ``targets[2]``; ``box_field`` names box ``j`` where that is elsewhere (a COCO file's annotation)."""
    if targets is None:
        return
    for index, box in enumerate(targets.boxes):
        problem = box_problem(box, rules.box_format, height, width, rules.clip)
        if problem is not None:
            where = box_field(index) if box_field is not None else f"{field}.boxes[{index}]"
            message = f"{where} {list(box)} ({rules.box_format}) of {name} {problem}"
            raise ServiceError(ErrorCode.INVALID_TARGETS, message, field=where, file=name)
    for index, point in enumerate(targets.keypoints):
        problem = point_problem(point, height, width)
        if problem is not None:
            where = f"{field}.keypoints[{index}]"
            raise ServiceError(
                ErrorCode.INVALID_TARGETS, f"{where} {list(point)} of {name} {problem}", field=where, file=name
            )


def check_mask(mask_shape: tuple[int, ...], height: int, width: int, field: str, name: str, image: str) -> None:
    """Refuse a mask whose size is not its image's."""
    if tuple(mask_shape[:2]) != (height, width):
        message = f"{field} ({name}) is {mask_shape[1]}x{mask_shape[0]}, its image {image} is {width}x{height}"
        raise ServiceError(ErrorCode.INVALID_TARGETS, message, field=field, file=name)


def check_transforms(spec: Spec, prefix: str = "spec") -> None:
    """Refuse an ``albumentations`` op whose parameters albumentations itself refuses, naming the parameter
    when the transform's schema says which (``spec.ops[2].transform.blur_limit``)."""
    for index, op in enumerate(spec.ops):
        if not isinstance(op, Albumentations):
            continue
        problem = allowed_problem(op)
        if problem is not None:
            parameter, message = problem
            field = f"{prefix}.ops[{index}].transform" + (f".{parameter}" if parameter else "")
            raise ServiceError(ErrorCode.INVALID_SPEC, f"{field} ({op.name}): {message}", field=field)
