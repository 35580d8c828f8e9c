"""Property: anything the validator (and the pre-flight limits) accept, the engine renders.

Hypothesis builds raw JSON specs with numbers from every corner (huge, tiny, subnormal, negative, infinite,
NaN, out of range) in every numeric field; a spec that validates must then render on small, 1-pixel and
extreme-aspect images without raising. Sizes stay small so that each example is cheap; the pixel limit is
the same check the server applies (``preflight.check_sizes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from augserve.engine import Pipeline
from augserve.errors import ServiceError
from augserve.preflight import check_sizes
from augserve_client.protocol.spec import Spec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

MAX_PIXELS = 64 * 64
IMAGES = [
    np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8),
    np.full((1, 1, 3), 200, np.uint8),
    np.random.default_rng(1).integers(0, 256, (2, 61, 3), dtype=np.uint8),
]

extremes = st.sampled_from([0, 1e-300, 5e-324, -5e-324, 1e300, 1e308, -1e308, 1e4, 1e-4, 360, -360, 2**31, 2**63])
numbers = st.one_of(
    extremes,
    extremes,  # twice: an extreme in the right field is what breaks an engine
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2),
    st.integers(min_value=-(2**64), max_value=2**64),
)
# Unordered pairs are refused; ordered ones and equal ones reach the engine, which is where extremes hurt.
ranges = st.one_of(
    st.lists(numbers, min_size=2, max_size=2),
    st.lists(numbers, min_size=2, max_size=2).map(sorted),
    numbers.map(lambda value: [value, value]),
)
sizes = st.one_of(st.integers(-2, 80), st.lists(st.integers(-2, 80), min_size=2, max_size=2))
probabilities = st.one_of(st.just(1.0), numbers)
interpolations = st.sampled_from(["nearest", "linear", "cubic", "area", "lanczos"])
borders = st.sampled_from(["constant", "reflect", "replicate"])
fills = st.one_of(st.integers(-1, 256), st.lists(st.integers(-1, 256), min_size=3, max_size=3))


def op(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"op": st.just(kind)}, optional=fields)


ops = st.one_of(
    op("reflect", p=probabilities, horizontal=st.booleans(), vertical=st.booleans()),
    op(
        "rotate",
        p=probabilities,
        angle=ranges,
        right_angles=st.lists(st.sampled_from([90, 180, 270]), min_size=1, max_size=3),
        interpolation=interpolations,
        border=borders,
        fill=fills,
    ),
    st.fixed_dictionaries(
        {"op": st.just("crop"), "size": sizes},
        optional={
            "mode": st.sampled_from(["random", "center", "random_resized"]),
            "scale": ranges,
            "ratio": ranges,
            "p": probabilities,
            "interpolation": interpolations,
            "border": borders,
            "fill": fills,
            "if_smaller": st.just("pad"),
        },
    ),
    op(
        "shift",
        p=probabilities,
        x=ranges,
        y=ranges,
        unit=st.sampled_from(["fraction", "pixels"]),
        interpolation=interpolations,
        border=borders,
        fill=fills,
    ),
)
specs = st.fixed_dictionaries(
    {"ops": st.lists(ops, min_size=1, max_size=4)},
    optional={"output": st.fixed_dictionaries({}, optional={"size": sizes, "interpolation": interpolations})},
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(raw=specs, seed=st.integers(0, 2**63 - 1))
@example(raw={"ops": [{"op": "crop", "mode": "random_resized", "size": 8, "ratio": [1e308, 1e308]}]}, seed=0)
@example(raw={"ops": [{"op": "crop", "mode": "random_resized", "size": 8, "ratio": [5e-324, 5e-324]}]}, seed=0)
def test_a_spec_that_validates_renders(raw: dict[str, Any], seed: int) -> None:
    try:
        spec = Spec.model_validate(raw)
        check_sizes(spec, MAX_PIXELS)
    except (ValidationError, ServiceError):
        return
    pipeline = Pipeline(spec)
    for image in IMAGES:
        variant = pipeline(image, seed)
        assert variant.image.dtype == np.uint8 and variant.image.ndim == 3 and variant.image.shape[2] == 3
        if spec.output.size is not None:
            assert variant.image.shape[:2] == tuple(spec.output.size)


@pytest.mark.parametrize("ratio", [[1e308, 1e308], [5e-324, 5e-324], [1e-300, 1.0], [1.0, 1e300]])
def test_ratios_that_would_overflow_the_crop_are_refused_naming_the_field(ratio: list[float]) -> None:
    with pytest.raises(ValidationError) as raised:
        Spec.model_validate({"ops": [{"op": "crop", "mode": "random_resized", "size": 8, "ratio": ratio}]})
    assert raised.value.errors()[0]["loc"][:4] == ("ops", 0, "crop", "ratio")
