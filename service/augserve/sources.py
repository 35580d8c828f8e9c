"""Where a dataset item's pixels come from: the process's RAM cache, then the disk tier, then a decode.

Keys carry the decode mode and scale (:mod:`.scaled_decode`): ``upload:<hash>`` is the exact full image,
``upload:<hash>@fast2/8`` the same photo decoded fast at a quarter of each side. The disk tier outlives a
server, which may come back in the other mode: a key never names pixels of another mode.

The disk tier (:mod:`.disk_cache`) is told which source bytes an entry came from: for an upload its blob's hash,
which is its name already; for a folder dataset a hash of the file read now, since a file under the data root
can change after registration.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import xxhash
from augserve_client.protocol.targets import TargetRules, as_fractions, from_fractions

from . import codecs
from .disk_cache import DiskCache
from .engine import Pipeline, Targets
from .jpeg import scaled_size
from .scaled_decode import FULL, eighths_for
from .settings import Settings
from .state import AppState
from .store import Manifest


def disk_tier(settings: Settings) -> DiskCache | None:
    """This process's disk tier, or None when ``disk_cache_bytes`` is 0."""
    if not settings.disk_cache_bytes:
        return None
    directory = settings.disk_cache_dir or Path(settings.data_dir) / "decoded"
    return DiskCache.shared(directory, settings.disk_cache_bytes)


def item_key(manifest: Manifest, index: int, eighths: int | None = None) -> str:
    """``eighths`` None: the exact decode; else the fast one at that scale."""
    key = manifest.decoded_key(index)
    return key if eighths is None else f"{key}@fast{eighths}/8"


def decoded(state: AppState, manifest: Manifest, index: int, eighths: int | None = None) -> np.ndarray:
    """Item ``index`` decoded exactly, or (``eighths`` given) fast at ``eighths``/8 of each side when it is a
    JPEG, through both cache tiers."""
    key = item_key(manifest, index, eighths)
    return state.cache.get(key, lambda: _load(state, manifest, index, key, eighths))


def variant_source(state: AppState, manifest: Manifest, pipeline: Pipeline, index: int, seed: int) -> np.ndarray:
    """What the variant ``seed`` of item ``index`` is made from: the exact decode, or in ``fast`` mode the one at
    the scale its crop window allows. An epoch's batches and a replayed sample both start here, so they agree."""
    fast = state.settings.decode == "fast" and not manifest.has_targets  # targets hold full-size coordinates
    return decoded(state, manifest, index, eighths_for(pipeline, seed, manifest.sizes[index]) if fast else None)


def sample_targets(state: AppState, manifest: Manifest, index: int, rules: TargetRules) -> Targets:
    """What moves with item ``index``: its decoded mask (through the RAM cache), its boxes in the spec's box
    format (the manifest keeps them in pascal_voc pixels) and its keypoints."""
    mask = (
        None
        if manifest.masks is None
        else state.cache.get(manifest.mask_key(index), partial(_mask, state, manifest, index))
    )
    stored = manifest.targets[index] if manifest.targets is not None else None
    if stored is None:
        return Targets(mask=mask)
    height, width = manifest.sizes[index]
    boxes = as_fractions(np.array(stored["boxes"], dtype=np.float64).reshape(-1, 4), "pascal_voc", height, width)
    return Targets(
        mask=mask,
        boxes=from_fractions(boxes, rules.box_format, height, width),
        labels=stored["labels"],
        keypoints=np.array(stored["keypoints"], dtype=np.float64).reshape(-1, 2),
        keypoint_labels=stored["keypoint_labels"],
    )


def _mask(state: AppState, manifest: Manifest, index: int) -> np.ndarray:
    assert manifest.masks is not None
    data = state.store.read(manifest, index, mask=True)
    return codecs.decode_mask(data, manifest.masks[index], state.settings.max_pixels)


def _load(state: AppState, manifest: Manifest, index: int, key: str, eighths: int | None) -> np.ndarray:
    disk = disk_tier(state.settings)
    data = None
    if disk is not None:
        if manifest.kind == "upload":
            source = manifest.keys[index]
        else:
            data = state.store.read(manifest, index)
            source = xxhash.xxh3_128_hexdigest(data)
        found = disk.get(key, source)
        if found is not None:
            return found
    data = state.store.read(manifest, index) if data is None else data
    min_size = None if eighths in (None, FULL) else scaled_size(manifest.sizes[index], eighths)
    pixels = codecs.decode(data, manifest.keys[index], state.settings.max_pixels, min_size, eighths is not None)
    if disk is not None:
        disk.put(key, source, pixels)
    return pixels
