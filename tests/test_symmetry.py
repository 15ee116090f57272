"""The symmetry spec: each kind an architecture admits preserves its function; the others do not."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from tests.nets import cnn, mlp, random_params
from zoo_builder.architecture import CLASSIFIER_ACTIVATIONS, ArchSpec, apply
from zoo_builder.permutation import permutation_spec
from zoo_builder.symmetry import (
    KINDS,
    UnitSymmetry,
    apply_unit_scaling,
    kinds_of_activation,
    random_scales,
    random_signs,
    random_transform,
    symmetries,
    symmetry,
    symmetry_kinds,
    unit_axes,
)

SHAPES = [mlp(7, 5, 4), cnn(4, 5),
          dataclasses.replace(cnn(3, 4, 5, input_shape=(16, 16, 1)), padding="VALID")]
# Every activation on an MLP and on a CNN (SAME or VALID padding in turn).
CASES = [(act, shape) for k, act in enumerate(CLASSIFIER_ACTIVATIONS) for shape in (0, 1 + k % 2)]


# Compiled once per architecture: quicker than eager ops for the CNNs' im2col.
_apply = jax.jit(apply, static_argnums=0)


def _rel_err(arch, a, b, x) -> float:
    ya, yb = np.asarray(_apply(arch, a, x)), np.asarray(_apply(arch, b, x))
    return float(np.max(np.abs(ya - yb)) / np.max(np.abs(ya)))


def _x(arch, n=16):
    return np.random.default_rng(1).normal(size=(n, *arch.input_shape)).astype(np.float32)


def test_kinds_follow_the_activation():
    assert kinds_of_activation("relu") == kinds_of_activation("leaky_relu") == ("permutation", "scale")
    assert kinds_of_activation("tanh") == ("permutation", "sign")
    # SIREN's activation is odd: sign twins.
    assert kinds_of_activation("sine") == ("permutation", "sign")
    assert kinds_of_activation("gelu") == kinds_of_activation("sigmoid") == ("permutation",)
    for act in CLASSIFIER_ACTIVATIONS:
        arch = dataclasses.replace(mlp(3), activation=act)
        assert symmetry_kinds(arch) == tuple(symmetries(arch)) == kinds_of_activation(act)
    siren = ArchSpec("siren", (28, 28, 1), (32, 32), 1, "sine")
    assert symmetry_kinds(siren) == tuple(symmetries(siren)) == ("permutation", "sign")


def test_unit_axes_split_the_permutation_spec():
    arch = cnn(4, 5)
    units = unit_axes(permutation_spec(arch))
    assert set(units) == {"P_0", "P_1"}
    assert units["P_0"].incoming == ((0, "kernel", 3), (0, "bias", 0))
    assert units["P_0"].outgoing == ((1, "kernel", 2),)
    assert units["P_1"].outgoing == ((2, "kernel", 0),) and units["P_1"].size == 5


@pytest.mark.parametrize(("act", "shape"), CASES)
def test_every_admitted_kind_preserves_the_function_and_no_other_does(act, shape):
    arch = dataclasses.replace(SHAPES[shape], activation=act)
    params, x = random_params(arch, shape), _x(arch)
    admitted, spec = symmetries(arch), permutation_spec(arch)
    for kind in KINDS:
        sym = admitted.get(kind) or UnitSymmetry(kind, unit_axes(spec), spec)
        moved = random_transform(sym, params, np.random.default_rng(3))
        changed = max(float(np.max(np.abs(a[k] - b[k])))
                      for a, b in zip(params, moved, strict=True) for k in a)
        assert changed > 1e-3, (kind, "the weights must change")
        err = _rel_err(arch, params, moved, x)
        if kind in admitted:
            assert err <= 1e-5, (kind, act, err)
        elif kind != "permutation":  # a kind the activation lacks really breaks the function
            assert err > 1e-3, (kind, act, err)


def test_draws_are_reproducible_and_in_range():
    sym = symmetry(mlp(50, 40), "scale")
    a, b = random_scales(sym, np.random.default_rng(0)), random_scales(sym, np.random.default_rng(0))
    assert all(np.array_equal(a[n], b[n]) for n in a) and set(a) == {"P_0", "P_1"}
    c = np.concatenate(list(a.values()))
    assert c.min() >= 0.25 and c.max() <= 4 and (c < 1).any() and (c > 1).any()
    s = np.concatenate(list(random_signs(sym, np.random.default_rng(0)).values()))
    assert set(np.unique(s)) == {-1.0, 1.0} and 0.3 < np.mean(s < 0) < 0.7


def test_scaling_checks_its_factors_and_refuses_kinds_the_arch_lacks():
    arch = mlp(3, 2)
    sym = symmetry(arch, "scale")
    params = random_params(arch)
    with pytest.raises(ValueError, match=r"factors\['P_1'\]: expected 2"):
        apply_unit_scaling(sym, {"P_0": np.ones(3), "P_1": np.ones(3)}, params)
    with pytest.raises(ValueError, match="non-zero"):
        apply_unit_scaling(sym, {"P_0": np.zeros(3), "P_1": np.ones(2)}, params)
    with pytest.raises(ValueError, match="activation 'relu' has no sign symmetry"):
        symmetry(arch, "sign")
    out = apply_unit_scaling(sym, {"P_0": np.array([2.0, 1, 1]), "P_1": np.ones(2)}, params)
    assert out[0]["kernel"].dtype == np.float32 and params[0]["bias"][0] * 2 == out[0]["bias"][0]
    np.testing.assert_allclose(out[1]["kernel"][0], params[1]["kernel"][0] / 2)
