"""Reclaiming blobs no dataset references, after a delete, without racing a registration.

Blobs are shared by content, so a deleted dataset's blobs may still serve others; only blobs no manifest
lists are reclaimed. A registration is two steps apart (blobs first, then the manifest that lists them), so a
blob is also kept while it is fresh: storing one, or being told it is already there (``/v1/blobs/missing``),
touches it, and only blobs untouched for ``blob_grace_seconds`` are candidates. A registration that takes
longer than that between its two steps finds its blob gone and says so (a 404 naming the item): it uploads
again.
"""

from __future__ import annotations

import logging
import time

from .store import DatasetStore

log = logging.getLogger("augserve.reclaim")


def reclaim_blobs(store: DatasetStore, grace_seconds: float) -> int:
    """Delete blobs no manifest lists and nobody touched for ``grace_seconds``; returns how many."""
    referenced = {key for manifest in store.list() if manifest.kind == "upload" for key in manifest.keys}
    cutoff = time.time() - grace_seconds
    reclaimed = 0
    for path in store.blobs.glob("*/*"):
        if path.name in referenced or path.name.startswith("."):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                reclaimed += 1
        except FileNotFoundError:  # another replica reclaimed it first
            continue
    if reclaimed:
        log.info("reclaimed %d blob(s) no dataset references", reclaimed)
    return reclaimed
