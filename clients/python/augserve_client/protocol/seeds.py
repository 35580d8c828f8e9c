"""Seed derivation: the one documented hash that makes every variant reproducible on its own.

A variant's seed is ``derive_seed(request_seed, image_index, variant_index)``; a sample's seed in an epoch is
``derive_seed(seed, epoch, dataset_index)``. The hash is BLAKE2b with an 8-byte digest over the parts, each
written as 8 little-endian bytes (two's complement, so negative numbers are allowed), read back as a
little-endian integer and shifted right by one bit so the result fits a signed 64-bit integer.

Because the seed depends only on these numbers, the same request produces the same bytes whatever the number
of threads, processes, workers or ranks, and any single variant can be regenerated alone.
"""

from __future__ import annotations

import hashlib
import secrets

SEED_BITS = 63
SEED_MAX = (1 << SEED_BITS) - 1  # the largest seed derive_seed gives and a request may name


def derive_seed(*parts: int) -> int:
    """Hash integers into a non-negative 63-bit seed (see the module docstring for the exact rule)."""
    payload = b"".join((part % (1 << 64)).to_bytes(8, "little") for part in parts)
    digest = hashlib.blake2b(payload, digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def fresh_seed() -> int:
    """A random seed for requests that did not name one; returned to the caller so the call can be replayed."""
    return secrets.randbits(SEED_BITS)
