"""Seed derivation: the documented hash, pinned, so a replayed request gives the same variants forever."""

from __future__ import annotations

import hashlib

import pytest
from augserve_client.protocol.seeds import SEED_BITS, derive_seed, fresh_seed


def documented_rule(*parts: int) -> int:
    """The rule as docs/spec.md states it, written out independently of the implementation."""
    payload = b"".join((part & (2**64 - 1)).to_bytes(8, "little") for part in parts)
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little") >> 1


@pytest.mark.parametrize("parts", [(0, 0, 0), (7, 1, 2), (2**63 - 1, 255, 63), (-1,), (-5, 3), (), (1, 2, 3, 4)])
def test_derive_seed_is_the_documented_blake2b_rule(parts: tuple[int, ...]) -> None:
    assert derive_seed(*parts) == documented_rule(*parts)


def test_derive_seed_is_pinned() -> None:
    """If these change, every seed a user ever wrote down replays differently: never change them."""
    assert derive_seed(0, 0, 0) == 1445694884619442965
    assert derive_seed(7, 0, 0) == 6995898920932951122
    assert derive_seed(7, 1, 2) == 5131819315702240109


def test_seeds_fit_a_signed_64_bit_integer() -> None:
    seeds = [
        derive_seed(request, image, variant) for request in (0, 1, 2**62) for image in range(8) for variant in range(8)
    ]
    assert all(0 <= seed < 2**SEED_BITS for seed in seeds)
    assert len(set(seeds)) == len(seeds)


def test_every_part_and_its_position_matter() -> None:
    assert derive_seed(1, 2, 3) != derive_seed(3, 2, 1)
    assert derive_seed(1, 0, 1) != derive_seed(1, 1, 0)
    assert derive_seed(1, 2) != derive_seed(1, 2, 0)


def test_negative_parts_are_their_twos_complement() -> None:
    assert derive_seed(-1, 0) == derive_seed(2**64 - 1, 0)


def test_fresh_seeds_are_random_63_bit_integers() -> None:
    seeds = {fresh_seed() for _ in range(64)}
    assert len(seeds) == 64
    assert all(0 <= seed < 2**SEED_BITS for seed in seeds)
