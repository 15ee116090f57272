"""The array views: exact values on hand-made networks, padding, and permutation (in)variance."""

from __future__ import annotations

import numpy as np
import pytest
from nets import ARCHS, cnn, mlp, random_params

from benchmark.views import (
    flat,
    flat_vector,
    matrices,
    stats,
    stats_feature_names,
    stats_features,
    weight_matrix,
)
from zoo_builder.architecture import ArchSpec
from zoo_builder.permutation import apply_permutation, permutation_spec, random_permutations


def permuted(arch: ArchSpec, params, seed: int = 1):
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(seed))
    assert any((p != np.arange(p.size)).any() for p in perms.values())  # non-trivial
    return apply_permutation(spec, perms, params)


# --------------------------------------------------------------------------- flat


def test_flat_vector_orders_kernel_then_bias_per_layer():
    params = [{"kernel": np.array([[1, 2], [3, 4]]), "bias": np.array([5, 6])},
              {"kernel": np.array([[7], [8]]), "bias": np.array([9])}]
    v = flat_vector(params)
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, np.arange(1, 10))


def test_flat_pads_to_the_largest_network_and_masks():
    small, large = random_params(mlp(2, input_shape=(1, 1, 1))), random_params(mlp(5))
    x, mask = flat([small, large])
    n_small, n_large = mlp(2, input_shape=(1, 1, 1)).num_params(), mlp(5).num_params()
    assert x.shape == mask.shape == (2, n_large) and x.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(x[0, :n_small], flat_vector(small))
    assert (x[0, n_small:] == 0).all()
    np.testing.assert_array_equal(mask.sum(axis=1), [n_small, n_large])
    np.testing.assert_array_equal(x[1], flat_vector(large))


def test_flat_with_dim_pads_further_and_rejects_a_larger_network():
    params = random_params(mlp(5))
    x, mask = flat([params], dim=500)
    assert x.shape == (1, 500) and mask[0].sum() == mlp(5).num_params()
    with pytest.raises(ValueError, match="network 1 has 103 parameters, more than dim=100"):
        flat([random_params(mlp(2, input_shape=(1, 1, 1))), params], dim=100)


# --------------------------------------------------------------------------- statistics


def test_stats_features_by_hand():
    # 1 input, 5 hidden units, 2 classes: the first layer's weights and biases are 1..5.
    arch = mlp(5, input_shape=(1, 1, 1), num_classes=2)
    head = np.arange(10, dtype=np.float32).reshape(5, 2)
    params = [
        {"kernel": np.array([[1, 2, 3, 4, 5]], np.float32), "bias": np.array([5, 4, 3, 2, 1], np.float32)},
        {"kernel": head, "bias": np.array([-1, 1], np.float32)},
    ]
    f = stats_features(params, arch, max_layers=3)
    names = stats_feature_names(3)
    assert f.shape == (len(names),) == (17 * 3 + 1,) and f.dtype == np.float32
    got = dict(zip(names, f.tolist(), strict=True))
    # mean 3, variance (4 + 1 + 0 + 1 + 4) / 5 = 2, percentiles exactly the order statistics.
    for param in ("weight", "bias"):
        assert [got[f"layer0/{param}/{s}"] for s in ("mean", "var", "q0", "q25", "q50", "q75", "q100")] == \
            [3, 2, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(
        [got[f"layer1/weight/{s}"] for s in ("mean", "var", "q0", "q25", "q50", "q75", "q100")],
        [4.5, 8.25, 0, 2.25, 4.5, 6.75, 9], rtol=1e-6)
    assert [got[f"layer1/bias/{s}"] for s in ("mean", "var", "q0", "q50", "q100")] == [0, 1, -1, 0, 1]
    assert [got[k] for k in ("layer0/fan_in", "layer0/fan_out", "layer1/fan_in", "layer1/fan_out")] == \
        [1, 5, 5, 2]
    # The absent third layer is all zero, flagged absent; the layer count is 2.
    assert all(got[n] == 0 for n in names if n.startswith("layer2/"))
    assert [got[f"layer{l}/present"] for l in range(3)] == [1, 1, 0]
    assert got["num_layers"] == 2
    assert names[:2] == ["layer0/weight/mean", "layer0/weight/var"] and names[-1] == "num_layers"


def test_stats_features_of_a_conv_layer_match_numpy():
    arch = cnn(4, 5)
    params = random_params(arch)
    f = stats_features(params, arch, max_layers=3)
    w = params[1]["kernel"].astype(np.float64)
    expected = [w.mean(), w.var(), *np.percentile(w, [0, 25, 50, 75, 100])]
    np.testing.assert_allclose(f[14:21], expected, rtol=1e-6)
    names = stats_feature_names(3)
    assert names[14] == "layer1/weight/mean"
    i = names.index("layer1/fan_in")
    np.testing.assert_array_equal(f[i:i + 2], [4, 5])  # channel widths, not 9 * c_in


def test_stats_rejects_a_network_deeper_than_max_layers_and_names_it():
    archs = [mlp(5), mlp(6, 4)]
    with pytest.raises(ValueError, match="network 1: 3 layers, more than max_layers=2"):
        stats([random_params(a) for a in archs], archs, max_layers=2)
    with pytest.raises(ValueError, match="network 0: layer 0: expected kernel"):
        stats([random_params(mlp(6))], [mlp(5)])


def test_stats_of_a_population_lines_up_layers():
    archs = [mlp(5), mlp(7, 5, 4, 6), cnn(4, 5)]
    params = [random_params(a, seed=i) for i, a in enumerate(archs)]
    f = stats(params, archs)
    assert f.shape == (3, 17 * 5 + 1)
    np.testing.assert_array_equal(f[:, -1], [2, 5, 3])
    for i, (p, a) in enumerate(zip(params, archs, strict=True)):
        np.testing.assert_array_equal(f[i], stats_features(p, a, 5))


# --------------------------------------------------------------------------- matrices


def test_weight_matrix_of_a_conv_kernel_puts_the_input_channel_fastest():
    kernel = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
    m = weight_matrix(kernel)
    assert m.shape == (18, 4)
    h, w, i = 1, 2, 1
    np.testing.assert_array_equal(m[(h * 3 + w) * 2 + i], kernel[h, w, i])
    dense = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(weight_matrix(dense), dense)


def test_matrices_stack_layers_as_padded_channels():
    archs = [mlp(5), cnn(4, 6)]
    params = [random_params(a) for a in archs]
    x, mask = matrices(params)
    # Largest rows: the MLP's 16 inputs vs the CNN's 9 * 4 = 36; largest columns: 6.
    assert x.shape == mask.shape == (2, 3, 36, 6) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 0, :16, :5], params[0][0]["kernel"])
    assert (x[0, 0][~mask[0, 0]] == 0).all() and mask[0, 0].sum() == 16 * 5
    assert not mask[0, 2].any()  # the MLP has only two layers
    np.testing.assert_array_equal(x[1, 1, :36, :6], weight_matrix(params[1][1]["kernel"]))
    np.testing.assert_array_equal(x[1, 2, :6, :3], params[1][-1]["kernel"])


def test_matrices_reject_a_network_that_does_not_fit_the_grid():
    params = [random_params(mlp(5)), random_params(mlp(9))]
    x, _ = matrices(params[:1], grid=(20, 10), max_layers=4)
    assert x.shape == (1, 4, 20, 10)
    with pytest.raises(ValueError, match=r"network 1, layer 0: weight matrix \(16, 9\) does not fit"):
        matrices(params, grid=(16, 8))
    with pytest.raises(ValueError, match="network 0 has 2 layers, more than max_layers=1"):
        matrices(params, max_layers=1)


# --------------------------------------------------------------------------- permutations


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.family}-{'-'.join(map(str, a.hidden))}")
def test_stats_are_permutation_invariant_flat_and_matrices_are_not(arch):
    params = random_params(arch)
    twin = permuted(arch, params)
    assert not np.array_equal(flat([params])[0], flat([twin])[0])
    assert not np.array_equal(matrices([params])[0], matrices([twin])[0])
    np.testing.assert_allclose(stats([twin], [arch]), stats([params], [arch]), atol=1e-6, rtol=0)
    # Control: stats do see a change that is not a symmetry.
    broken = [dict(layer) for layer in params]
    broken[0] = {"kernel": params[0]["kernel"] * 1.5, "bias": params[0]["bias"]}
    assert np.abs(stats([broken], [arch]) - stats([params], [arch])).max() > 1e-3
