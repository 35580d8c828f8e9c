"""Benchmarks (``make bench``): LIMIT, SERVICE, PEER, OURS, latency, formats, memory. Run as ``python -m bench.run``."""

import os

# Every benchmark imports albumentations (the peer's pipeline) through this package, which runs first: without
# this albumentations asks the package index for a newer version on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
