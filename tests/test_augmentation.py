"""Weight-space augmentation (`benchmark.augmentation`): what each part keeps and what it changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from nets import cnn, mlp, random_params

from benchmark.augmentation import (
    PERMUTE_ONLY,
    AugmentConfig,
    add_noise,
    augment,
    random_coordinate_warp,
    warp_coordinates,
)
from zoo_builder.architecture import apply

X = np.random.default_rng(1).normal(size=(16, 4, 4, 1)).astype(np.float32)


@pytest.mark.parametrize("arch", [mlp(6, 4), cnn(4, 5)], ids=["mlp", "cnn"])
def test_permutation_alone_keeps_the_function_and_changes_the_weights(arch):
    params = random_params(arch, seed=0)
    out = augment(arch, params, np.random.default_rng(0), PERMUTE_ONLY)
    x = np.random.default_rng(1).normal(size=(16, *arch.input_shape)).astype(np.float32)
    np.testing.assert_allclose(apply(arch, out, x), apply(arch, params, x), rtol=1e-5, atol=1e-5)
    assert not np.array_equal(out[0]["kernel"], params[0]["kernel"])


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_unit_symmetries_keep_the_function_and_change_more_than_the_order(activation):
    """ReLU units are rescaled and tanh units sign-flipped, as the twins of `zoo_builder.symmetry` are."""
    arch = dataclasses.replace(mlp(6, 4), activation=activation)
    params = random_params(arch, seed=0)
    cfg = dataclasses.replace(AugmentConfig(), noise=0.0)
    out = augment(arch, params, np.random.default_rng(0), cfg)
    np.testing.assert_allclose(apply(arch, out, X), apply(arch, params, X), rtol=1e-5, atol=1e-5)
    permuted = augment(arch, params, np.random.default_rng(0), PERMUTE_ONLY)
    # The same permutation (the first draws), but the multiset of first-layer values differs.
    assert not np.allclose(np.sort(out[0]["kernel"].ravel()), np.sort(permuted[0]["kernel"].ravel()))
    if activation == "tanh":  # a sign flip keeps magnitudes
        np.testing.assert_allclose(np.sort(np.abs(out[0]["kernel"]).ravel()),
                                   np.sort(np.abs(permuted[0]["kernel"]).ravel()), rtol=1e-6)


def test_noise_is_relative_to_each_tensor_and_moves_the_function_a_little():
    arch = mlp(6, 4)
    params = random_params(arch, seed=0)
    params[1]["kernel"] = params[1]["kernel"] * 100.0  # a tensor on another scale
    out = add_noise(params, np.random.default_rng(0), 0.1)
    for a, b in zip(params, out, strict=True):
        for key in ("kernel", "bias"):
            ratio = np.std(b[key] - a[key]) / np.std(a[key])
            assert 0.03 < ratio < 0.3, (key, ratio)
    noisy = augment(arch, params, np.random.default_rng(0), dataclasses.replace(PERMUTE_ONLY, noise=0.1))
    assert not np.allclose(apply(arch, noisy, X), apply(arch, params, X), rtol=1e-3)


def test_coordinate_warp_computes_the_warped_function():
    """f'(x) = f(x A + t), checked on a network of 2-D inputs (the siren's first layer is the same map)."""
    arch = mlp(8, 8, input_shape=(1, 1, 2), num_classes=1)
    params = random_params(arch, seed=0)
    a, t = random_coordinate_warp(np.random.default_rng(0), AugmentConfig())
    assert not np.allclose(a, np.eye(2)) and not np.allclose(t, 0)
    warped = warp_coordinates(params, a, t)
    x = np.random.default_rng(2).uniform(-1, 1, size=(32, 2)).astype(np.float32)
    expected = apply(arch, params, (x @ a + t).astype(np.float32).reshape(-1, 1, 1, 2))
    np.testing.assert_allclose(apply(arch, warped, x.reshape(-1, 1, 1, 2)), expected, rtol=1e-4, atol=1e-5)
    assert warped[1] is params[1]  # only the first layer changes


def test_image_networks_get_no_coordinate_warp():
    arch = mlp(6, input_shape=(1, 1, 2))  # 2 inputs, but pixels, not coordinates
    params = random_params(arch, seed=0)
    cfg = dataclasses.replace(AugmentConfig(), permute=False, unit_symmetries=False, noise=0.0)
    out = augment(arch, params, np.random.default_rng(0), cfg)
    for a, b in zip(params, out, strict=True):
        np.testing.assert_array_equal(a["kernel"], b["kernel"])


def test_a_warp_needs_a_coordinate_input():
    params = random_params(mlp(6), seed=0)
    with pytest.raises(ValueError, match=r"first kernel of shape \(2, width\)"):
        warp_coordinates(params, np.eye(2), np.zeros(2))


def test_augment_is_deterministic_given_the_generator_and_leaves_its_input_alone():
    arch = cnn(4, 5)
    params = random_params(arch, seed=0)
    before = [{k: v.copy() for k, v in layer.items()} for layer in params]
    a = augment(arch, params, np.random.default_rng(7))
    b = augment(arch, params, np.random.default_rng(7))
    for la, lb, l0, l1 in zip(a, b, params, before, strict=True):
        for key in ("kernel", "bias"):
            np.testing.assert_array_equal(la[key], lb[key])
            np.testing.assert_array_equal(l0[key], l1[key])


@pytest.mark.parametrize(("field", "value"), [("noise", -0.1), ("scale", 1.0), ("translation", float("nan"))])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"AugmentConfig.{field}"):
        AugmentConfig(**{field: value})
