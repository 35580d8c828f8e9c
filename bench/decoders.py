"""Decoders on the bench set: Pillow against libjpeg-turbo through simplejpeg, and ``fast`` against ``exact``.

* speed: CPU ms per image in one thread (the least of a few passes), and the wall-time speed-up of decoding in
  two threads of one process over one thread: near 2 when the decoder releases the GIL (on 2 free cores).
* scales: how many of the bench's variants ``fast`` decodes at 1/2, 1/4, 1/8 or in full.
* fidelity of ``fast``: its whole decodes against ``exact``'s (the fast IDCT and upsampling alone), and each
  variant against the ``exact`` variant of the same seed (PSNR, mean and max abs error), over all variants and
  over those it decoded smaller (their windows are rounded on a smaller grid: edges move by a fraction of an
  output pixel, which the max error shows).
"""

from __future__ import annotations

import io
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
from augserve.codecs import decode
from augserve.engine import Pipeline
from augserve.scaled_decode import FULL, eighths_for
from augserve_client.protocol.epochs import sample_seed
from augserve_client.protocol.spec import Spec
from PIL import Image, ImageOps

from .common import SEED, SPEC, Config
from .limit import MAX_PIXELS, decode_sample

Decoder = Callable[[bytes], np.ndarray]


def pillow(blob: bytes) -> np.ndarray:
    """The service's decode before libjpeg-turbo was called directly: Pillow, EXIF transpose, RGB."""
    with Image.open(io.BytesIO(blob)) as image:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return np.asarray(image.convert("RGB"))


def turbo(blob: bytes) -> np.ndarray:
    return decode(blob, "sample.jpg", MAX_PIXELS)


def turbo_fast(blob: bytes) -> np.ndarray:
    """``fast`` mode's full-size decode: libjpeg-turbo's fast IDCT and upsampling."""
    return decode(blob, "sample.jpg", MAX_PIXELS, fast=True)


def _pass_cpu(decoder: Decoder, blobs: list[bytes]) -> float:
    started = time.thread_time()
    for blob in blobs:
        decoder(blob)
    return time.thread_time() - started


def _wall(decoder: Decoder, blobs: list[bytes], threads: int) -> float:
    shares = [blobs[rank::threads] for rank in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda share: [decoder(blob) for blob in share], shares))
        return time.perf_counter() - started


def speed(blobs: list[bytes], passes: int) -> dict[str, Any]:
    found = {}
    for name, decoder in (("pillow", pillow), ("simplejpeg", turbo), ("simplejpeg_fast", turbo_fast)):
        cpu = min(_pass_cpu(decoder, blobs) for _ in range(passes))
        one = min(_wall(decoder, blobs, 1) for _ in range(passes))
        two = min(_wall(decoder, blobs, 2) for _ in range(passes))
        found[name] = {"cpu_ms_per_image": round(1e3 * cpu / len(blobs), 3), "threads_2_speedup": round(one / two, 2)}
    found["simplejpeg_vs_pillow_cpu"] = round(
        found["pillow"]["cpu_ms_per_image"] / found["simplejpeg"]["cpu_ms_per_image"], 2
    )
    return found


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _errors(fast: np.ndarray, exact: np.ndarray) -> tuple[float, float, int]:
    error = np.abs(fast.astype(np.int16) - exact)
    return psnr(fast, exact), float(error.mean()), int(error.max())


def _summary(found: list[tuple[float, float, int]]) -> dict[str, Any]:
    if not found:
        return {"count": 0}
    psnrs = [value[0] for value in found]
    return {
        "count": len(found),
        "psnr_db_median": round(float(np.median(psnrs)), 2),
        "psnr_db_worst": round(float(min(psnrs)), 2),
        "mean_abs_error": round(float(np.mean([value[1] for value in found])), 2),
        "max_abs_error": max(value[2] for value in found),
    }


def fidelity(blobs: list[bytes], epochs: int) -> dict[str, Any]:
    """``fast`` against ``exact``: whole decodes (fast IDCT and upsampling alone), each variant of ``epochs``
    epochs, and the variants ``fast`` decoded smaller apart."""
    pipeline = Pipeline(Spec.model_validate(SPEC))
    scales: Counter[int] = Counter()
    decodes, variants, scaled = [], [], []
    for index, blob in enumerate(blobs):
        exact_full = decode(blob, "sample.jpg", MAX_PIXELS)
        decodes.append(_errors(decode(blob, "sample.jpg", MAX_PIXELS, fast=True), exact_full))
        for epoch in range(epochs):
            seed = sample_seed(SEED, epoch, index)
            eighths = eighths_for(pipeline, seed, exact_full.shape[:2])
            scales[eighths] += 1
            fast = pipeline.image(decode_sample(pipeline, blob, seed, "fast"), seed)
            errors = _errors(fast, pipeline.image(exact_full, seed))
            variants.append(errors)
            if eighths != FULL:
                scaled.append(errors)
    total = sum(scales.values())
    return {
        "share_by_scale": {f"eighths_{eighths}": round(count / total, 3) for eighths, count in sorted(scales.items())},
        "decodes": _summary(decodes),
        "variants": _summary(variants),
        "scaled_variants": _summary(scaled),
    }


def run(blobs: list[bytes], config: Config) -> dict[str, Any]:
    """Measured in a forked process, as LIMIT is: OpenCV work in this process would start OpenCV's thread pool,
    and a DataLoader worker forked from it later hangs in ``cv2.setNumThreads`` (the pool's lock, copied held)."""
    context = mp.get_context("fork")
    results = context.Queue()
    worker = context.Process(target=_measure, args=(blobs, config, results))
    worker.start()
    found = results.get(timeout=600)
    worker.join()
    return found


def _measure(blobs: list[bytes], config: Config, results: Any) -> None:
    cv2.setNumThreads(1)  # as in the service and LIMIT
    results.put({"speed": speed(blobs, config.repeats), "fast_vs_exact": fidelity(blobs, max(2, config.epochs))})
