"""Permuted copies of networks: symmetry twins and synthetic merging pairs.

A network whose hidden units are permuted computes the same function with
different weights (docs/parameters.md). Each split's test part holds such
*twins* of a few test networks under fresh opaque ids: a method that respects
the symmetry gives a twin the same prediction as its original, one that reads
raw weights need not. The merging task's *synthetic pairs* are permuted copies
plus small noise, so the permutation that aligns them is known.

Everything here is derived from strings by sha256 (ids, seeds), never from the
weights, so the same zoo ids give the same twins on every machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence

import numpy as np

from zoo_builder.architecture import ArchSpec
from zoo_builder.permutation import apply_permutation, invert, permutation_spec, random_permutations

TWIN_FRACTION = 0.1
# Noise of a synthetic pair's B network, in units of each tensor's own std.
SYNTHETIC_NOISE = 0.01


@dataclasses.dataclass(frozen=True)
class Twin:
    """A permuted copy of test network `of`, known to methods only as `id`.

    Attributes:
      id: 16 hex digits, opaque (a hash of the split's seed material and `of`).
      of: the original network's id (scorer-only).
      seed: seeds the generator that draws the twin's permutations.
    """

    id: str
    of: str
    seed: int


def derive_hex(*parts: str) -> str:
    """sha256 of the parts joined by '/': the source of every id and seed here."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def derive_seed(*parts: str) -> int:
    """A 32-bit seed from `derive_hex`, for `np.random.default_rng`."""
    return int(derive_hex(*parts)[:8], 16)


def twin_id(seed_material: str, original: str) -> str:
    return derive_hex(seed_material, original, "twin")[:16]


def twin_seed(seed_material: str, original: str) -> int:
    return derive_seed(seed_material, original, "twin-seed")


def pick_twins(test_ids: Sequence[str], seed_material: str,
               fraction: float = TWIN_FRACTION) -> tuple[Twin, ...]:
    """Twins of ``round(fraction * n)`` (at least one) test networks, chosen by hash order.

    Sorted by twin id, so the order says nothing about the originals.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if not test_ids:
        return ()
    k = max(1, math.floor(fraction * len(test_ids) + 0.5))
    chosen = sorted(test_ids, key=lambda i: derive_hex(seed_material, i, "twin-pick"))[:k]
    twins = (Twin(twin_id(seed_material, i), i, twin_seed(seed_material, i)) for i in chosen)
    return tuple(sorted(twins, key=lambda t: t.id))


def permuted_copy(arch: ArchSpec, params, seed: int):
    """`params` with every hidden layer's units permuted at random (drawn from `seed`)."""
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(seed))
    return apply_permutation(spec, perms, params)


def noisy_permuted_copy(arch: ArchSpec, params, seed: int, noise: float = SYNTHETIC_NOISE):
    """A synthetic merging partner: a permuted copy of `params` plus Gaussian noise.

    The noise on each tensor has std ``noise * tensor.std()``, so the copy is close
    to, but not exactly, a permutation of the original.

    Returns:
      (params_b, aligning): ``aligning["P_i"]`` is the permutation of B's units that
      aligns B to A, i.e. ``apply_permutation(spec, aligning, params_b)`` equals
      `params` up to the noise. It is what a merging method should return.
    """
    if not noise >= 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    rng = np.random.default_rng(seed)
    spec = permutation_spec(arch)
    # The permutations are the generator's first draws (see `aligning_permutations`).
    perms = random_permutations(spec, rng)
    permuted = apply_permutation(spec, perms, params)
    noisy = []
    for layer in permuted:
        new_layer = {}
        for key in sorted(layer):
            value = np.asarray(layer[key])
            scale = noise * float(value.std())
            new_layer[key] = (value + scale * rng.standard_normal(value.shape)).astype(value.dtype)
        noisy.append(new_layer)
    return noisy, invert(perms)


def aligning_permutations(arch: ArchSpec, seed: int) -> dict[str, np.ndarray]:
    """The permutations that align `noisy_permuted_copy(arch, ., seed)` back to its original.

    Needs no weights: the permutations are the first draws of the seed's generator.
    """
    return invert(random_permutations(permutation_spec(arch), np.random.default_rng(seed)))
