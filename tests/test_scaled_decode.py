"""The ``fast`` decode mode: the window replayed from a seed is the one the pipeline draws, the scale it picks
keeps the output's resolution, and a seed gives the same bytes every time within the mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from augserve import codecs
from augserve.devserver import ServerProcess
from augserve.engine import Pipeline
from augserve.engine.windows import crop_window
from augserve.jpeg import scaled_size
from augserve.scaled_decode import FULL, eighths_for
from augserve_client import Client
from augserve_client.protocol.spec import Spec
from conftest import encode

SPEC = {
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "rotate", "angle": [-15, 15], "p": 0.5},
        {"op": "crop", "mode": "random_resized", "size": [64, 64], "scale": [0.3, 1.0]},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
    "output": {"format": "npy"},
}
MAX_PIXELS = 10_000_000


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(Spec.model_validate(SPEC))


def test_the_replayed_window_is_the_one_the_pipeline_draws(pipeline: Pipeline, photos: list[np.ndarray]) -> None:
    photo = photos[0]
    for seed in range(40):
        drawn = crop_window(pipeline, seed, photo.shape[:2])
        applied = pipeline(photo, seed).applied
        x_min, y_min, x_max, y_max = next(step["box"] for step in applied if "box" in step)
        assert drawn == ((y_max - y_min, x_max - x_min), (64, 64)), seed


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "shift", "x": [0, 4], "y": [0, 4], "unit": "pixels", "p": 1.0}],  # pixels mean less when smaller
        [{"op": "crop", "mode": "center", "size": [300, 300]}],  # another crop first
        [],
    ],
    ids=["pixel-shift-first", "center-crop-first", "crop-alone"],
)
def test_ops_before_the_crop_decide_whether_it_may_scale(ops: list[dict], photos: list[np.ndarray]) -> None:
    crop = {"op": "crop", "mode": "random_resized", "size": [16, 16], "scale": [0.9, 1.0]}
    pipeline = Pipeline(Spec.model_validate({"ops": [*ops, crop]}))
    scales = {eighths_for(pipeline, seed, photos[0].shape[:2]) for seed in range(10)}
    assert scales == ({FULL} if ops else {1})  # a 16x16 output of a ~400x600 window: 1/8 is plenty


def test_a_crop_that_may_not_apply_never_scales(photos: list[np.ndarray]) -> None:
    crop = {"op": "crop", "mode": "random_resized", "size": [16, 16], "scale": [0.9, 1.0], "p": 0.5}
    pipeline = Pipeline(Spec.model_validate({"ops": [crop]}))
    assert {eighths_for(pipeline, seed, photos[0].shape[:2]) for seed in range(10)} == {FULL}


def fast_variant(pipeline: Pipeline, data: bytes, shape: tuple[int, int], seed: int) -> tuple[np.ndarray, int]:
    """What an epoch stream in fast mode makes of one sample (epoch_stream -> sources -> codecs)."""
    eighths = eighths_for(pipeline, seed, shape)
    min_size = None if eighths == FULL else scaled_size(shape, eighths)
    return pipeline.image(codecs.decode(data, "p.jpg", MAX_PIXELS, min_size, fast=True), seed), eighths


def test_fast_variants_are_repeatable_and_close_to_exact(pipeline: Pipeline, photos: list[np.ndarray]) -> None:
    big = cv2.resize(photos[1], (1280, 854), interpolation=cv2.INTER_CUBIC)
    data = encode(big, "JPEG", quality=90)
    exact_source = codecs.decode(data, "p.jpg", MAX_PIXELS)
    scales, errors = set(), []
    for seed in range(24):
        fast, eighths = fast_variant(pipeline, data, big.shape[:2], seed)
        again, _ = fast_variant(pipeline, data, big.shape[:2], seed)
        np.testing.assert_array_equal(fast, again)
        exact = pipeline.image(exact_source, seed)
        assert fast.shape == exact.shape == (64, 64, 3)
        scales.add(eighths)
        errors.append(np.abs(fast.astype(int) - exact).mean())
    assert scales & {1, 2, 4}  # some variants did decode smaller
    assert np.median(errors) < 12  # the same picture, up to window rounding on the smaller grid


@pytest.mark.slow
def test_a_fast_server_gives_the_same_bytes_for_the_same_seed(tmp_path: Path, photo_files: list[Path]) -> None:
    server = ServerProcess(tmp_path / "data", decode="fast", cache_bytes=0).start()
    try:
        with Client(server.url, timeout=60) as client:
            name = client.upload_dataset("photos", photo_files, labels=[0, 1], progress=False)["name"]

            def epoch() -> np.ndarray:
                batches = client.epoch(name, SPEC, batch_size=2, seed=3, epoch=0)
                return np.concatenate([batch.images for batch in batches])

            first = epoch()
            np.testing.assert_array_equal(epoch(), first)
    finally:
        server.stop()
    assert first.shape == (2, 64, 64, 3)
