"""Permutation symmetries as data, derived once from an `ArchSpec`.

As in Git Re-Basin's weight matching, a `PermutationSpec` says which permutation
acts on which axis of which tensor. Every hidden layer ``i`` has a permutation
``P_i`` of its units: it acts on the output axis of layer ``i``'s kernel and bias
and on the input axis of layer ``i + 1``'s kernel. Permuting a network with it
leaves its function unchanged. Permuting, neural-graph building and weight
matching all read this one spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from zoo_builder.architecture import ArchSpec

# (layer index, "kernel" | "bias", axis)
Axis = tuple[int, str, int]


@dataclasses.dataclass(frozen=True)
class PermutationSpec:
    """Which permutation acts on which tensor axis.

    Attributes:
      perm_to_axes: permutation name -> the tensor axes it acts on.
      axes_to_perm: (layer, param) -> one entry per axis: a permutation name or None.
      sizes: permutation name -> number of units it permutes.
    """

    perm_to_axes: dict[str, tuple[Axis, ...]]
    axes_to_perm: dict[tuple[int, str], tuple[str | None, ...]]
    sizes: dict[str, int]


def perm_name(layer: int) -> str:
    return f"P_{layer}"


def permutation_spec(arch: ArchSpec) -> PermutationSpec:
    """The permutation spec of `arch`: one permutation per hidden layer."""
    perm_to_axes: dict[str, list[Axis]] = {}
    axes_to_perm: dict[tuple[int, str], tuple[str | None, ...]] = {}
    shapes = arch.layer_shapes()
    for i, (kshape, _) in enumerate(shapes):
        out_perm = perm_name(i) if i < arch.depth else None
        in_perm = perm_name(i - 1) if i > 0 else None
        kaxes: list[str | None] = [None] * len(kshape)
        kaxes[-1] = out_perm
        # The input axis of a dense kernel is 0; of an HWIO conv kernel it is 2.
        in_axis = len(kshape) - 2
        kaxes[in_axis] = in_perm
        axes_to_perm[(i, "kernel")] = tuple(kaxes)
        axes_to_perm[(i, "bias")] = (out_perm,)
        if out_perm is not None:
            perm_to_axes.setdefault(out_perm, []).extend(
                [(i, "kernel", len(kshape) - 1), (i, "bias", 0)]
            )
        if in_perm is not None:
            perm_to_axes.setdefault(in_perm, []).append((i, "kernel", in_axis))
    return PermutationSpec(
        perm_to_axes={k: tuple(v) for k, v in perm_to_axes.items()},
        axes_to_perm=axes_to_perm,
        sizes={perm_name(i): w for i, w in enumerate(arch.hidden)},
    )


def apply_permutation(spec: PermutationSpec, perms: dict[str, np.ndarray], params):
    """Permute `params` (canonical layer list of numpy or jax arrays).

    ``perms[name][j]`` is the old index of the unit placed at new position ``j``.
    Returns a new layer list; the input is not modified.
    """
    out = []
    for i, layer in enumerate(params):
        new_layer = {}
        for key, value in layer.items():
            for axis, name in enumerate(spec.axes_to_perm[(i, key)]):
                if name is not None:
                    value = value.take(np.asarray(perms[name]), axis=axis)
            new_layer[key] = value
        out.append(new_layer)
    return out


def random_permutations(spec: PermutationSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One uniformly random permutation per hidden layer."""
    return {name: rng.permutation(size) for name, size in spec.sizes.items()}


def identity_permutations(spec: PermutationSpec) -> dict[str, np.ndarray]:
    return {name: np.arange(size) for name, size in spec.sizes.items()}


def invert(perms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The permutations that undo `perms`."""
    return {name: np.argsort(p) for name, p in perms.items()}


def permutation_problems(sizes: Mapping[str, int], perms, where: str) -> list[str]:
    """Why `perms` is not, for every name in `sizes`, a permutation of range(size); [] when it is.

    The one check of a method's permutations (the merging scorer, submissions); each
    problem names `where`, the layer and what was expected. A layer whose value is
    None was already refused by the caller and is skipped.
    """
    if not isinstance(perms, Mapping):
        return [f"{where}: expected a mapping P_i -> permutation, got {type(perms).__name__}"]
    problems = [f"{where}.{name}: missing layer; expected permutations {sorted(sizes)}"
                for name in sorted(set(sizes) - set(perms))]
    problems += [f"{where}.{name}: unknown layer; the architecture has {sorted(sizes)}"
                 for name in sorted(set(perms) - set(sizes), key=str)]
    for name, size in sizes.items():
        if perms.get(name) is None:
            continue
        p = np.asarray(perms[name])
        if p.ndim != 1 or p.dtype.kind not in "iu":
            problems.append(f"{where}.{name}: expected a permutation of 0..{size - 1} (integers), "
                            f"got an array of {p.dtype} with shape {p.shape}")
        elif len(p) != size:
            problems.append(f"{where}.{name}: expected a permutation of 0..{size - 1} ({size} units), "
                            f"got {len(p)} values")
        elif not np.array_equal(np.sort(p), np.arange(size)):
            counts = np.bincount(np.clip(p, 0, size), minlength=size + 1)[:size]
            missing = np.flatnonzero(counts == 0)[:5].tolist()
            problems.append(f"{where}.{name}: not a bijection of 0..{size - 1}; units {missing} missing "
                            "(values must be distinct, in range)")
    return problems
