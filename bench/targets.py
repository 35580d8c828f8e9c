"""TARGETS: what a mask, 10 boxes and 10 keypoints per image cost over the image alone, in the engine.

The bench's spec (a flip and a rotation fused into a random resized crop, then a shift) on the bench's real
photos, in-process and single-threaded, so nothing but the engine is measured: the image alone, with a mask
(rendered by the same fused warp, nearest-neighbour), with 10 boxes, with 10 keypoints, and with all three.
Rounds alternate the configurations so a noisy machine disturbs them alike, and the least time of the rounds is
kept per configuration (the least is the one others' processes disturbed least). The figure that carries over
to any machine is the ratio to the image alone.

    .venv/bin/python -m bench.targets [--smoke] [--out DIR]   # this section alone: DIR/targets.{json,md}
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from augserve.engine import Pipeline, Targets
from augserve_client.protocol.spec import Spec
from augserve_client.protocol.targets import ImageTargets

from .common import SEED, SPEC, section_main
from .data import photos

BOXES = 10
CONFIGURATIONS = ("image", "mask", "boxes", "keypoints", "all")
SIZES = {False: (400, 5), True: (16, 1)}  # smoke -> (variants, rounds)


def scenes(count: int) -> list[tuple[np.ndarray, dict[str, Targets]]]:
    """``count`` windows of the real photos, each with the targets of every configuration."""
    rng = np.random.default_rng(SEED)
    made = []
    for index in range(count):
        photo = photos()[index % len(photos())]
        height, width = photo.shape[:2]
        mask = (photo[..., 0] > photo[..., 2]).astype(np.uint8)  # some shape with real edges
        x0, y0 = rng.uniform(0, width * 0.8, BOXES), rng.uniform(0, height * 0.8, BOXES)
        boxes = [[x, y, x + width * 0.15, y + height * 0.15] for x, y in zip(x0, y0, strict=True)]
        points = [
            [x, y] for x, y in zip(rng.uniform(0, width - 1, BOXES), rng.uniform(0, height - 1, BOXES), strict=True)
        ]
        with_boxes = ImageTargets(boxes=boxes, labels=list(range(BOXES)))
        with_points = ImageTargets(keypoints=points)
        everything = ImageTargets(boxes=boxes, labels=list(range(BOXES)), keypoints=points)
        configurations = {
            "mask": Targets(mask=mask),
            "boxes": Targets.of(with_boxes),
            "keypoints": Targets.of(with_points),
            "all": Targets.of(everything, mask),
        }
        made.append((photo, configurations))
    return made


def run(variants: int, rounds: int) -> dict[str, Any]:
    """Single-threaded as the service's pool threads are: OpenCV held to one thread (as ``augserve.app`` and
    LIMIT's workers hold it). Inside ``make bench`` that matters twice: OpenCV's own thread pool, once started
    here, would leave every process LIMIT forks later hung in ``cv2.setNumThreads``."""
    cv2.setNumThreads(1)
    spec = Spec.model_validate(SPEC)
    plain, targeted = Pipeline(spec), Pipeline(spec, with_targets=True)
    made = scenes(8)

    def work(configuration: str) -> Callable[[], None]:
        def go() -> None:
            for number in range(variants):
                image, targets = made[number % len(made)]
                if configuration == "image":
                    plain.image(image, SEED + number)
                else:
                    targeted.with_moved(image, SEED + number, targets[configuration])

        return go

    best = dict.fromkeys(CONFIGURATIONS, float("inf"))
    for _ in range(rounds):
        for configuration in CONFIGURATIONS:
            start = time.perf_counter()
            work(configuration)()
            best[configuration] = min(best[configuration], time.perf_counter() - start)
    return {
        "variants": variants,
        "rounds": rounds,
        "spec": SPEC,
        "boxes_per_image": BOXES,
        "keypoints_per_image": BOXES,
        "us_per_variant": {name: round(1e6 * seconds / variants, 1) for name, seconds in best.items()},
        "vs_image": {name: round(seconds / best["image"], 3) for name, seconds in best.items()},
    }


def markdown(results: dict[str, Any]) -> str:
    """The file ``python -m bench.targets`` (and ``make bench``) writes: a heading, the setup, the table."""
    info = results["machine"]
    return (
        "# augserve benchmark: what targets cost (`python -m bench.targets`)\n\n"
        f"Measured {info['date']} on {info['cpu']}: {results['variants']} variants of the bench's spec on its photos "
        f"per configuration, in-process, one thread, the least of {results['rounds']} rounds.\n\n" + table(results)
    )


def table(results: dict[str, Any]) -> str:
    lines = [
        "| configuration | us per variant | vs the image alone |",
        "|---|---:|---:|",
    ]
    labels = {
        "image": "the image alone",
        "mask": "+ a mask",
        "boxes": f"+ {results['boxes_per_image']} boxes",
        "keypoints": f"+ {results['keypoints_per_image']} keypoints",
        "all": "+ all three",
    }
    for name in CONFIGURATIONS:
        lines.append(f"| {labels[name]} | {results['us_per_variant'][name]} | {results['vs_image'][name]:.2f} |")
    return "\n".join(lines) + "\n"


def standalone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    return run(*SIZES[args.smoke])


def main(argv: list[str] | None = None) -> None:
    section_main(__doc__, "targets", standalone, markdown, argv)


if __name__ == "__main__":
    main()
