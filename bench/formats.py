"""Output formats through /v1/augment: what each costs in bytes on the wire and in variants per second.

Same requests, same server, same two streams as SERVICE augment; only ``format`` changes. ``npy`` is the raw
224x224x3 array plus a 128-byte header; the encoders trade server CPU for bytes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .common import Config, timed
from .service import augment_window
from .serving import BenchServer

FORMATS = ("npy", "jpeg", "png", "webp")
REQUESTS = 6  # per window: PNG and WebP run at a third of npy's rate, and the full run should stay short


def run(server: BenchServer, groups: list[list[bytes]], config: Config) -> dict[str, Any]:
    results: dict[str, Any] = {}
    groups = groups[: max(2, REQUESTS)]
    for fmt in FORMATS:
        augment_window(server, groups[:2], config, fmt)  # warm this format's pipeline and encoder
        results[fmt] = timed(partial(augment_window, server, groups, config, fmt), config)
    raw = results["npy"]["variants_per_s"]
    for summary in results.values():
        summary["vs_npy"] = round(summary["variants_per_s"] / raw, 3)
    return results
