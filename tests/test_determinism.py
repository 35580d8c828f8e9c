"""Determinism of the engine: same seed, same bytes; any split over threads or processes, same variants;
any single variant regenerated alone from its seed."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from augserve.engine import Pipeline, PipelineCache
from augserve_client.protocol.seeds import derive_seed
from augserve_client.protocol.spec import Spec
from imaging_workers import render

FULL_SPEC: dict[str, Any] = {
    "ops": [
        {"op": "reflect", "horizontal": True, "vertical": True},
        {"op": "rotate", "angle": [-30, 30], "p": 0.7},
        {"op": "crop", "mode": "random_resized", "size": [48, 64], "scale": [0.3, 1.0]},
        {"op": "shift", "x": [-0.2, 0.2], "y": [-0.1, 0.1]},
        {"op": "rotate", "right_angles": [90, 270], "p": 0.5},
    ],
    "output": {"size": [40, 40]},
}


@pytest.fixture(scope="module")
def small_photos(photos: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(photo[::4, ::4]) for photo in photos]


def test_the_same_seed_gives_identical_bytes_and_different_seeds_differ(small_photos: list[np.ndarray]) -> None:
    spec = Spec.model_validate(FULL_SPEC)
    outputs = [Pipeline(spec)(small_photos[0], seed).image.tobytes() for seed in range(20)]
    assert outputs == [Pipeline(spec)(small_photos[0], seed).image.tobytes() for seed in range(20)]
    assert len(set(outputs)) == 20


def test_a_reused_pipeline_carries_no_state_from_one_variant_to_the_next(small_photos: list[np.ndarray]) -> None:
    pipeline = Pipeline(Spec.model_validate(FULL_SPEC))
    first = pipeline(small_photos[0], 11)
    pipeline(small_photos[1], 12)
    again = pipeline(small_photos[0], 11)
    assert first.image.tobytes() == again.image.tobytes() and first.applied == again.applied


def render_request(spec: Spec, images: list[np.ndarray], request_seed: int, threads: int) -> list[bytes]:
    """Every variant of a request, computed the way the server does: per-thread pipelines in a pool."""
    cache = PipelineCache()
    jobs = [(index, variant) for index in range(len(images)) for variant in range(6)]

    def one(job: tuple[int, int]) -> bytes:
        index, variant = job
        return cache.get(spec)(images[index], derive_seed(request_seed, index, variant)).image.tobytes()

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, jobs))


def test_one_thread_or_two_give_the_same_variants(small_photos: list[np.ndarray]) -> None:
    spec = Spec.model_validate(FULL_SPEC)
    assert render_request(spec, small_photos, 42, threads=1) == render_request(spec, small_photos, 42, threads=2)


@pytest.mark.slow
def test_two_processes_give_the_same_variants_as_one_thread(small_photos: list[np.ndarray]) -> None:
    spec = Spec.model_validate(FULL_SPEC)
    image = small_photos[0]
    seeds = [derive_seed(42, 0, variant) for variant in range(8)]
    expected = [Pipeline(spec)(image, seed).image.tobytes() for seed in seeds]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        halves = list(pool.map(render, [spec.model_dump_json()] * 2, [image] * 2, [seeds[1::2], seeds[::2]]))
    assert all(pid != os.getpid() for pid, _ in halves)
    (_, odd), (_, even) = halves
    assert [even[i // 2] if i % 2 == 0 else odd[i // 2] for i in range(8)] == expected


def test_any_variant_can_be_regenerated_alone_from_its_seed(small_photos: list[np.ndarray]) -> None:
    spec = Spec.model_validate(FULL_SPEC)
    streamed = render_request(spec, small_photos, 7, threads=2)
    alone = Pipeline(spec)(small_photos[1], derive_seed(7, 1, 4))
    assert alone.image.tobytes() == streamed[6 + 4]


def test_applied_parameters_are_plain_json(small_photos: list[np.ndarray]) -> None:
    pipeline = Pipeline(Spec.model_validate(FULL_SPEC))
    for seed in range(10):
        variant = pipeline(small_photos[0], seed)
        assert json.loads(json.dumps(variant.applied)) == variant.applied
        assert variant.seed == seed
        indices = [step["op_index"] for step in variant.applied]
        assert indices[-1] == -1 and indices[:-1] == sorted(indices[:-1])  # in spec order, output last
