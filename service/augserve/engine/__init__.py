"""The engine: spec -> albumentations pipeline -> variants. Pure: arrays in, arrays and parameters out.

Split the way albumentations splits itself, with the arrows running one way:

- :mod:`.pipeline`: a spec compiled to a Compose, seeded per variant, cached per thread; what was applied;
- :mod:`.targets`: masks, boxes and keypoints as the pipeline takes and gives them;
- :mod:`.transforms`: the albumentations transforms augserve owns, each calling functional;
- :mod:`.functional`: pure pixel functions on numpy arrays.

It knows nothing of HTTP, requests or settings: what a request may ask is checked in :mod:`augserve.preflight`.
"""

import os

# albumentations asks the package index for a newer version when it is imported, unless this is set; the
# engine is the only part of augserve that imports it, and this module runs before any of it does.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .pipeline import BORDERS, INTERPOLATIONS, Pipeline, PipelineCache, Variant
from .targets import Targets

__all__ = ["BORDERS", "INTERPOLATIONS", "Pipeline", "PipelineCache", "Targets", "Variant"]
