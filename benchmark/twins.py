"""Transformed copies of networks: symmetry twins and synthetic merging pairs.

A network whose hidden units are permuted, rescaled (ReLU) or sign-flipped (tanh)
computes the same function with different weights (`zoo_builder.symmetry`,
docs/parameters.md). Each split's test part holds such *twins* of a few test
networks under fresh opaque ids, of every kind their architecture admits: a
method that respects a symmetry gives a twin of that kind the same prediction as
its original, one that reads raw weights need not. The merging task's *synthetic
pairs* are permuted copies plus small noise, so the permutation that aligns them
is known.

Everything here is derived from strings by sha256 (ids, seeds), never from the
weights, so the same zoo ids give the same twins on every machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np

from zoo_builder.architecture import ArchSpec
from zoo_builder.permutation import apply_permutation, invert, permutation_spec, random_permutations
from zoo_builder.symmetry import KINDS, random_transform, symmetry

TWIN_FRACTION = 0.1
# Noise of a synthetic pair's B network, in units of each tensor's own std.
SYNTHETIC_NOISE = 0.01


@dataclasses.dataclass(frozen=True)
class Twin:
    """A transformed copy of test network `of`, known to methods only as `id`.

    Attributes:
      id: 16 hex digits, opaque (a hash of the split's seed material, `of` and `kind`).
      of: the original network's id (scorer-only).
      seed: seeds the generator that draws the twin's transformation.
      kind: which symmetry made it, one of `zoo_builder.symmetry.KINDS` (scorer-only).
    """

    id: str
    of: str
    seed: int
    kind: str = "permutation"


def derive_hex(*parts: str) -> str:
    """sha256 of the parts joined by '/': the source of every id and seed here."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def derive_seed(*parts: str) -> int:
    """A 32-bit seed from `derive_hex`, for `np.random.default_rng`."""
    return int(derive_hex(*parts)[:8], 16)


def _kind_tag(kind: str) -> tuple[str, ...]:
    # Permutation twins hash as they did before the other kinds existed, so their ids stay put.
    return () if kind == "permutation" else (kind,)


def twin_id(seed_material: str, original: str, kind: str = "permutation") -> str:
    return derive_hex(seed_material, original, "twin", *_kind_tag(kind))[:16]


def twin_seed(seed_material: str, original: str, kind: str = "permutation") -> int:
    return derive_seed(seed_material, original, "twin-seed", *_kind_tag(kind))


def pick_twins(test_ids: Sequence[str], seed_material: str, kinds_of: Mapping[str, Sequence[str]],
               fraction: float = TWIN_FRACTION) -> tuple[Twin, ...]:
    """For each kind, twins of ``round(fraction * n)`` (at least one) of the n test networks whose
    architecture admits it (`kinds_of`: id -> `zoo_builder.symmetry.symmetry_kinds`), chosen by hash
    order; none where n is 0.

    Sorted by twin id, so the order says nothing about the originals or the kinds.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    twins = []
    for kind in KINDS:
        eligible = [i for i in test_ids if kind in kinds_of[i]]
        if not eligible:
            continue
        k = max(1, math.floor(fraction * len(eligible) + 0.5))
        tag = _kind_tag(kind)
        chosen = sorted(eligible, key=lambda i: derive_hex(seed_material, i, "twin-pick", *tag))[:k]
        twins += [Twin(twin_id(seed_material, i, kind), i, twin_seed(seed_material, i, kind), kind)
                  for i in chosen]
    return tuple(sorted(twins, key=lambda t: t.id))


def twin_params(arch: ArchSpec, params, twin: Twin):
    """`twin`'s parameters from its original's: a random transformation of its kind, drawn from its seed."""
    return random_transform(symmetry(arch, twin.kind), params, np.random.default_rng(twin.seed))


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
