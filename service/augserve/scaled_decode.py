"""The ``fast`` decode mode: decode a JPEG cheaply, and only as large as the variant's crop window needs.

Every JPEG is decoded with libjpeg-turbo's fast integer IDCT and plain chroma upsampling (a quarter less CPU
on the bench set, for a mean error near one grey level). And a random resized crop keeps a window of the photo
and resizes it to the output size: when the window is at least twice the output on both sides, a full decode
makes pixels the resize throws away, and libjpeg-turbo can decode straight to 1/2, 1/4 or 1/8 of the size in
its IDCT. So, per variant, before any pixel work:

1. :func:`augserve.engine.windows.crop_window` replays the pipeline's random draws for the variant's seed on
   the full image's shape, without pixel work, up to the random resized crop, and reads the window it drew;
2. :func:`scale` picks the smallest of 1/8, 1/4, 1/2 at which that window still has the output's resolution
   on both sides (else the full size);
3. the image is decoded at that scale (:func:`augserve.codecs.decode`'s ``min_size``) and the pipeline runs on
   it as on any image: it draws its window again, on the smaller shape, so the window is the same fraction of
   the photo up to rounding.

Not bit-identical to ``exact``: the pixels come from a faster, sometimes smaller decode, and the window is
rounded on a smaller grid. Within the mode a seed still gives the same bytes: every step is a function of the
seed and the image. Only powers of two are used (libjpeg-turbo's other eighths cost more than a full decode),
so an image has at most four cached sizes (1 + 1/4 + 1/16 + 1/64 of its bytes). What it saves and what it
changes is measured by ``bench/decoders.py``; docs/architecture.md has the figures.

Scaling applies when every op before the first random resized crop is a flip, a rotation or a fractional
shift (their meaning does not depend on the pixel count); a shift in pixels, or another crop, before it keeps
the full size.
"""

from __future__ import annotations

from augserve_client.protocol.spec import Crop, Reflect, Rotate, Shift, Spec

from .engine import Pipeline
from .engine.windows import Window, crop_window

EIGHTHS = (1, 2, 4)  # 1/8, 1/4, 1/2 of each side; 8 (the full size) otherwise
FULL = 8


def scalable(spec: Spec) -> bool:
    """Whether a window can be read from ``spec``'s draws, and its ops before the crop are scale-free."""
    for op in spec.ops:
        if isinstance(op, Crop):
            return op.mode == "random_resized" and op.p == 1.0
        if isinstance(op, Shift) and op.unit != "fraction":
            return False
        if not isinstance(op, Reflect | Rotate | Shift):
            return False
    return False


def scale(drawn: Window | None) -> int:
    """The decode scale in eighths: the least of 1, 2, 4 at which the window keeps the output's resolution."""
    if drawn is None:
        return FULL
    (window_h, window_w), (out_h, out_w) = drawn
    for eighths in EIGHTHS:
        if window_h * eighths >= 8 * out_h and window_w * eighths >= 8 * out_w:
            return eighths
    return FULL


def eighths_for(pipeline: Pipeline, seed: int, shape: tuple[int, int]) -> int:
    """The decode scale of one variant (8: full size), from its seed's draws on the full image's shape."""
    if not scalable(pipeline.spec):
        return FULL
    return scale(crop_window(pipeline, seed, shape))
