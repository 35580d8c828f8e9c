"""Work done in another process by tests/test_engine.py: importable and picklable, so spawn can run it."""

from __future__ import annotations

import os

import numpy as np
from augserve.engine import Pipeline
from augserve_client.protocol.spec import Spec


def render(spec_json: str, image: np.ndarray, seeds: list[int]) -> tuple[int, list[bytes]]:
    """The variants of ``image`` for ``seeds``, as raw bytes, and the id of the process that made them."""
    pipeline = Pipeline(Spec.model_validate_json(spec_json))
    return os.getpid(), [pipeline(image, seed).image.tobytes() for seed in seeds]
