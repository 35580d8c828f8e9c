"""Benchmarks for issue 4 (``make bench``): LIMIT, SERVICE, PEER, OURS, latency, formats, memory."""
