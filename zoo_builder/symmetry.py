"""Every per-unit symmetry of an architecture, as data, derived once from its permutation spec.

Three kinds of transformation of a hidden unit leave a network's function unchanged:

* **permutation** (every family): reorder the units of a layer (`zoo_builder.permutation`);
* **scale** (ReLU and leaky-ReLU, positively homogeneous: ``f(c·z) = c·f(z)`` for ``c > 0``):
  multiply a unit's incoming weights and bias by ``c`` and its outgoing weights by ``1/c``;
* **sign** (odd activations, tanh and sine: ``f(−z) = −f(z)``): negate a unit's incoming
  weights, bias and outgoing weights.

In a CNN a unit is a channel. An architecture has one activation for all its hidden
layers, so a kind acts on every hidden layer or on none. gelu and sigmoid have
neither scale nor sign symmetry. Twins, augmentation and the tests read this
module, never their own copy of these rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from zoo_builder.architecture import ArchSpec
from zoo_builder.permutation import (
    Axis,
    PermutationSpec,
    apply_permutation,
    permutation_spec,
    random_permutations,
)

KINDS = ("permutation", "scale", "sign")
# Activations with the symmetry, by name. "sine" is the SIREN family's, odd like tanh.
SCALE_ACTIVATIONS = frozenset({"relu", "leaky_relu"})
SIGN_ACTIVATIONS = frozenset({"tanh", "sine"})
# Scale twins draw log(c) uniformly from [log(1/4), log(4)]: large enough to move raw-weight
# statistics, small enough to keep float32 logits within ~1e-6.
SCALE_RANGE = (0.25, 4.0)


@dataclasses.dataclass(frozen=True)
class UnitAxes:
    """The tensor axes one group of hidden units (a layer) touches.

    Attributes:
      size: number of units.
      incoming: axes holding each unit's own weights and bias (multiplied by its factor).
      outgoing: axes holding the weights that read the unit (divided by its factor).
    """

    size: int
    incoming: tuple[Axis, ...]
    outgoing: tuple[Axis, ...]


@dataclasses.dataclass(frozen=True)
class UnitSymmetry:
    """One kind of function-preserving per-unit transformation, and the unit groups it acts on.

    Attributes:
      kind: one of `KINDS`.
      units: group name (``P_i``, as in the permutation spec) -> its axes.
      permutation: the permutation spec it was derived from (what ``permutation`` applies).
    """

    kind: str
    units: Mapping[str, UnitAxes]
    permutation: PermutationSpec = dataclasses.field(repr=False)


def kinds_of_activation(activation: str) -> tuple[str, ...]:
    """The kinds (in `KINDS` order) that preserve the function of units with this activation."""
    return tuple(k for k in KINDS if k == "permutation"
                 or (k == "scale" and activation in SCALE_ACTIVATIONS)
                 or (k == "sign" and activation in SIGN_ACTIVATIONS))


def symmetry_kinds(arch: ArchSpec) -> tuple[str, ...]:
    """The kinds of twin `arch` admits, in `KINDS` order (permutation always)."""
    return kinds_of_activation(arch.activation)


def unit_axes(spec: PermutationSpec) -> dict[str, UnitAxes]:
    """Each permuted group's axes, split into its units' own (the lowest layer) and the next layer's."""
    out = {}
    for name, axes in spec.perm_to_axes.items():
        own = min(layer for layer, _, _ in axes)
        out[name] = UnitAxes(spec.sizes[name], tuple(a for a in axes if a[0] == own),
                             tuple(a for a in axes if a[0] != own))
    return out


def symmetries(arch: ArchSpec) -> dict[str, UnitSymmetry]:
    """Kind -> its `UnitSymmetry`, for every kind `arch` admits (`symmetry_kinds`)."""
    spec = permutation_spec(arch)
    units = unit_axes(spec)
    return {kind: UnitSymmetry(kind, units, spec) for kind in symmetry_kinds(arch)}


def symmetry(arch: ArchSpec, kind: str) -> UnitSymmetry:
    """The `UnitSymmetry` of `kind` for `arch`; ValueError if the architecture does not admit it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    found = symmetries(arch)
    if kind not in found:
        raise ValueError(f"a {arch.family} with activation {arch.activation!r} has no {kind} symmetry; "
                         f"it admits {list(found)}")
    return found[kind]


def random_scales(sym: UnitSymmetry, rng: np.random.Generator,
                  low: float = SCALE_RANGE[0], high: float = SCALE_RANGE[1]) -> dict[str, np.ndarray]:
    """One positive factor per unit, log-uniform in [low, high], drawn layer by layer."""
    if not 0 < low <= high:
        raise ValueError(f"scale range must satisfy 0 < low <= high, got ({low!r}, {high!r})")
    return {name: np.exp(rng.uniform(np.log(low), np.log(high), sym.units[name].size))
            for name in sym.units}


def random_signs(sym: UnitSymmetry, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One factor ±1 per unit, each −1 with probability 1/2, drawn layer by layer."""
    return {name: np.where(rng.random(sym.units[name].size) < 0.5, -1.0, 1.0) for name in sym.units}


def _along(factor: np.ndarray, ndim: int, axis: int, dtype) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = len(factor)
    return np.asarray(factor, dtype).reshape(shape)


def apply_unit_scaling(sym: UnitSymmetry, factors: Mapping[str, np.ndarray], params):
    """`params` with unit j of group g's own weights and bias × ``factors[g][j]``, its readers' ÷ it.

    Positive factors are a scale transformation, ±1 a sign flip (dividing by −1 negates).
    Works on numpy or jax arrays and keeps each tensor's dtype; the input is not modified.
    """
    out = [dict(layer) for layer in params]
    for name, axes in sym.units.items():
        f = np.asarray(factors[name], np.float64)
        if f.shape != (axes.size,) or not np.all(np.isfinite(f)) or np.any(f == 0):
            raise ValueError(f"factors[{name!r}]: expected {axes.size} finite non-zero values, got shape "
                             f"{f.shape}")
        for (layer, key, axis), by in [(a, f) for a in axes.incoming] + [(a, 1 / f) for a in axes.outgoing]:
            value = out[layer][key]
            out[layer][key] = value * _along(by, value.ndim, axis, value.dtype)
    return out


def random_transform(sym: UnitSymmetry, params, rng: np.random.Generator):
    """`params` under a random transformation of `sym`'s kind, drawn from `rng` (the twins' recipe)."""
    if sym.kind == "permutation":
        return apply_permutation(sym.permutation, random_permutations(sym.permutation, rng), params)
    draw = random_scales if sym.kind == "scale" else random_signs
    return apply_unit_scaling(sym, draw(sym, rng), params)
