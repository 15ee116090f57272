"""The batched merging evaluation (`evaluate_pairs`) equals the per-pair definition (`evaluate_pair`)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.merging import (
    DEFAULT_LAMBDAS,
    MergePair,
    align,
    evaluate_pair,
    evaluate_pairs,
    evaluation_data,
    interpolation_curve,
    interpolation_curves,
    merge,
    merge_path,
    pad_params,
)
from zoo_builder.architecture import ArchSpec, apply
from zoo_builder.permutation import permutation_spec, random_permutations

# Padding and batching only reorder float32 sums.
LOSS_ATOL = 1e-5


def _network(arch: ArchSpec, rng: np.random.Generator):
    return [{"kernel": rng.normal(scale=0.7, size=k).astype(np.float32),
             "bias": rng.normal(scale=0.3, size=b).astype(np.float32)} for k, b in arch.layer_shapes()]


def _data(n: int, rng: np.random.Generator):
    return rng.normal(size=(n, 4, 4, 1)).astype(np.float32), rng.integers(0, 3, size=n)


def _assert_curves_match(batched, pairs, data):
    for curve, p in zip(batched, pairs, strict=True):
        ref = interpolation_curve(p.arch, p.params_a, align(p.arch, p.params_b, p.perms), *data[p.data])
        np.testing.assert_array_equal(curve["lambdas"], ref["lambdas"])
        np.testing.assert_allclose(curve["loss"], ref["loss"], rtol=0, atol=LOSS_ATOL)
        np.testing.assert_array_equal(curve["accuracy"], ref["accuracy"])


def _toy_pairs():
    """MLP and CNN pairs of mixed widths and activations in shared (family, depth) groups, two datasets."""
    rng = np.random.default_rng(0)
    archs = [ArchSpec("mlp", (4, 4, 1), (5, 9), 3, "relu"), ArchSpec("mlp", (4, 4, 1), (8, 3), 3, "sigmoid"),
             ArchSpec("mlp", (4, 4, 1), (6,), 3, "gelu"), ArchSpec("cnn", (4, 4, 1), (3, 7), 3, "tanh"),
             ArchSpec("cnn", (4, 4, 1), (6, 2), 3, "leaky_relu")]
    pairs = [MergePair(arch, _network(arch, rng), _network(arch, rng),
                       random_permutations(permutation_spec(arch), rng), ("a", "b")[i % 2])
             for i, arch in enumerate(archs)]
    return pairs, {"a": _data(40, rng), "b": _data(23, rng)}


def test_padding_keeps_every_activations_function():
    rng = np.random.default_rng(1)
    x, _ = _data(16, rng)
    for family in ("mlp", "cnn"):
        for activation in ("relu", "sigmoid", "gelu", "tanh"):
            arch = ArchSpec(family, (4, 4, 1), (3, 5), 3, activation)
            params = _network(arch, rng)
            wide = ArchSpec(family, (4, 4, 1), (7, 8), 3, activation)
            padded = pad_params(params, (7, 8))
            np.testing.assert_allclose(apply(wide, padded, x), apply(arch, params, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="wider than the padded widths"):
        pad_params(params, (2, 8))


def test_merge_path_is_merge_at_every_lambda():
    rng = np.random.default_rng(2)
    arch = ArchSpec("cnn", (4, 4, 1), (3, 5), 3, "relu")
    a, b = _network(arch, rng), _network(arch, rng)
    path = merge_path(a, b, DEFAULT_LAMBDAS)
    for k, lam in enumerate(DEFAULT_LAMBDAS):
        for layer, expected in zip(path, merge(a, b, lam), strict=True):
            for key in expected:
                np.testing.assert_array_equal(layer[key][k], expected[key])


def test_batched_curves_equal_per_pair_curves_on_mixed_toy_pairs():
    pairs, data = _toy_pairs()
    _assert_curves_match(interpolation_curves(pairs, data), pairs, data)
    scores = evaluate_pairs(pairs, data)
    for s, p in zip(scores, pairs, strict=True):
        ref = evaluate_pair(p.arch, p.params_a, p.params_b, p.perms, *data[p.data])
        assert s.keys() == ref.keys()
        for k in ("merged_acc", "acc_a", "acc_b", "acc_ratio"):
            assert s[k] == ref[k] or (np.isnan(s[k]) and np.isnan(ref[k]))
        assert s["loss_barrier"] == pytest.approx(ref["loss_barrier"], abs=2 * LOSS_ATOL)


def test_batched_evaluation_names_what_is_wrong():
    pairs, data = _toy_pairs()
    with pytest.raises(ValueError, match=r"no evaluation \(x, y\) for \['b'\]"):
        interpolation_curves(pairs, {"a": data["a"]})
    bad = [MergePair(pairs[0].arch, pairs[0].params_a, pairs[0].params_b, {"P_0": np.arange(5)}, "a")]
    with pytest.raises(ValueError, match="expected permutations"):
        evaluate_pairs(bad, data)
    with pytest.raises(ValueError, match="at least 11 increasing"):
        evaluate_pairs(pairs, data, lambdas=np.linspace(0, 1, 5))


def test_batched_path_equals_per_pair_path_on_the_tiny_zoo(tiny_preset_zoo):
    from benchmark import load_task
    from benchmark.tasks import test_targets
    from zoo_builder.storage import load_zoo

    zoo = load_zoo(tiny_preset_zoo)
    task = load_task("merging", zoo)
    answers = test_targets(task)
    part, rng = task.test, np.random.default_rng(3)
    dataset_of = dict(zip(zoo.final["network_id"], zoo.final["dataset"], strict=True))
    pairs = []
    for pair in (*part.pairs[:4], *part.synthetic_pairs[:4]):
        arch = part.arch(pair.id_a)
        truth = answers["synthetic_permutations"].get(pair.pair_id)
        perms = truth if truth is not None else random_permutations(permutation_spec(arch), rng)
        pairs.append(MergePair(arch, part.params(pair.id_a), part.params(pair.id_b), perms,
                               str(dataset_of[pair.id_a])))
    # Real and synthetic pairs both compared (the zip in _assert_curves_match checks nothing on no pairs).
    assert len(pairs) > len(part.pairs[:4]) > 0
    data = {ds: evaluation_data(zoo, ds) for ds in {p.data for p in pairs}}
    _assert_curves_match(interpolation_curves(pairs, data), pairs, data)
