"""A bounded, thread-safe LRU of decoded images, shared by every request in the process.

Decoding a 640 px JPEG costs more than augmenting it, so after the first epoch the service should never
decode again: entries are whole RGB arrays, evicted least-recently-used first once ``max_bytes`` is exceeded.
Two threads missing the same key at once may both decode it; the second result simply replaces the first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class DecodedCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return image
            self.misses += 1
        image = load()
        image.setflags(write=False)  # shared between requests: nobody may modify it in place
        self._put(key, image)
        return image

    def _put(self, key: str, image: np.ndarray) -> None:
        if image.nbytes > self.max_bytes:
            return
        with self._lock:
            previous = self._items.pop(key, None)
            self._bytes += image.nbytes - (previous.nbytes if previous is not None else 0)
            self._items[key] = image
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "items": len(self._items),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
            }
