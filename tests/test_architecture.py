"""Architecture specs, the forward pass and permutation symmetries (zoo_builder.architecture,
zoo_builder.permutation)."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_builder.architecture import (
    CLASSIFIER_ACTIVATIONS,
    ArchSpec,
    apply,
    check_params,
    conv_stride2,
    fan_in_out,
    neuron_activations,
)
from zoo_builder.permutation import (
    apply_permutation,
    identity_permutations,
    invert,
    permutation_spec,
    random_permutations,
)

ARCHS = [
    ArchSpec("mlp", (8, 8, 1), (16,), 10, "relu"),
    ArchSpec("mlp", (8, 8, 1), (12, 7), 10, "tanh"),
    ArchSpec("mlp", (6, 5, 2), (9, 16, 5, 11), 4, "gelu"),
    ArchSpec("mlp", (8, 8, 1), (6, 6, 6), 3, "sigmoid"),
    ArchSpec("cnn", (8, 8, 1), (4, 8), 10, "relu"),
    ArchSpec("cnn", (8, 8, 3), (5, 7, 6), 10, "leaky_relu"),
    ArchSpec("cnn", (9, 7, 1), (8, 4), 5, "tanh"),
    ArchSpec("cnn", (16, 16, 1), (4, 6, 8, 5), 10, "gelu"),
    ArchSpec("cnn", (28, 28, 1), (16, 16, 16), 10, "relu", padding="VALID"),  # the Small CNN Zoo's
    ArchSpec("cnn", (9, 12, 2), (4, 6), 5, "tanh", padding="VALID"),
]


def _ids(archs):
    return [f"{a.family}-{'x'.join(map(str, a.hidden))}-{a.activation}-{a.padding}" for a in archs]


def random_params(arch: ArchSpec, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random float32 parameters with nonzero biases (so bias permutation matters)."""
    rng = np.random.default_rng(seed)
    params = []
    for kshape, bshape in arch.layer_shapes():
        fan_in, _ = fan_in_out(kshape)
        params.append({
            "kernel": (rng.standard_normal(kshape) * math.sqrt(2.0 / fan_in)).astype(np.float32),
            "bias": (0.3 * rng.standard_normal(bshape)).astype(np.float32),
        })
    return params


def random_inputs(arch: ArchSpec, n: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *arch.input_shape)).astype(np.float32)


# --------------------------------------------------------------------------- ArchSpec


def test_layer_shapes_mlp_and_cnn():
    mlp = ArchSpec("mlp", (8, 8, 1), (16, 12), 10, "relu")
    assert mlp.layer_shapes() == [((64, 16), (16,)), ((16, 12), (12,)), ((12, 10), (10,))]
    assert (mlp.depth, mlp.num_layers) == (2, 3)
    assert mlp.num_params() == 64 * 16 + 16 + 16 * 12 + 12 + 12 * 10 + 10

    cnn = ArchSpec("cnn", (8, 8, 3), (4, 8), 10, "tanh")
    assert cnn.layer_shapes() == [((3, 3, 3, 4), (4,)), ((3, 3, 4, 8), (8,)), ((8, 10), (10,))]
    assert cnn.num_params() == 27 * 4 + 4 + 36 * 8 + 8 + 8 * 10 + 10


@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
def test_to_dict_round_trips_through_json(arch):
    doc = json.loads(json.dumps(arch.to_dict()))
    again = ArchSpec.from_dict(doc)
    assert again == arch and hash(again) == hash(arch)
    assert isinstance(again.hidden, tuple) and isinstance(again.input_shape, tuple)


def test_archspec_normalises_sequences_to_int_tuples():
    arch = ArchSpec("mlp", [8, 8, 1], [np.int64(4), 5], 10, "relu")
    assert arch.hidden == (4, 5) and arch.input_shape == (8, 8, 1)
    assert all(type(v) is int for v in (*arch.hidden, *arch.input_shape))
    assert arch == ArchSpec("mlp", (8, 8, 1), (4, 5), 10, "relu")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"family": "rnn"}, "family must be one of"),
        ({"activation": "swish"}, "activation must be one of"),
        ({"hidden": ()}, "hidden widths must be positive"),
        ({"hidden": (4, 0)}, "hidden widths must be positive"),
        ({"hidden": (-3,)}, "hidden widths must be positive"),
        ({"input_shape": (8, 8)}, "input_shape must be"),
        ({"input_shape": (8, 0, 1)}, "input_shape must be"),
        ({"padding": "valid"}, "padding must be one of"),
        ({"padding": "VALID"}, "padding applies to CNNs"),
        ({"family": "cnn", "hidden": (4, 4, 4), "padding": "VALID"},
         r"input_shape \(8, 8, 1\) is too small for 3 VALID stride-2 3x3 convolutions"),
    ],
)
def test_archspec_rejects_bad_fields(kwargs, match):
    fields = {"family": "mlp", "input_shape": (8, 8, 1), "hidden": (4,), "num_classes": 10,
              "activation": "relu"} | kwargs
    with pytest.raises(ValueError, match=match):
        ArchSpec(**fields)


def test_fan_in_out():
    assert fan_in_out((64, 16)) == (64, 16)
    assert fan_in_out((3, 3, 4, 8)) == (36, 72)


@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
def test_check_params_accepts_matching_and_names_the_bad_layer(arch):
    params = random_params(arch)
    check_params(arch, params)
    with pytest.raises(ValueError, match=f"expected {arch.num_layers} layers"):
        check_params(arch, params[:-1])
    bad = [dict(layer) for layer in params]
    bad[1]["bias"] = np.zeros(bad[1]["bias"].shape[0] + 1, np.float32)
    with pytest.raises(ValueError, match="layer 1: expected kernel"):
        check_params(arch, bad)
    bad = [dict(layer) for layer in params]
    bad[0]["weights"] = bad[0].pop("kernel")
    with pytest.raises(ValueError, match="layer 0: expected keys kernel and bias"):
        check_params(arch, bad)


# --------------------------------------------------------------------------- forward pass


@pytest.mark.parametrize(
    ("shape", "c_out", "padding"),
    [((2, 8, 8, 1), 4, "SAME"), ((3, 7, 7, 3), 5, "SAME"), ((1, 5, 6, 2), 3, "SAME"),
     ((2, 16, 16, 4), 8, "SAME"), ((1, 1, 1, 2), 2, "SAME"), ((2, 2, 3, 1), 1, "SAME"),
     ((2, 8, 8, 1), 4, "VALID"), ((3, 7, 7, 3), 5, "VALID"), ((1, 5, 6, 2), 3, "VALID"),
     ((2, 28, 28, 1), 16, "VALID"), ((1, 3, 3, 2), 2, "VALID"), ((2, 4, 9, 1), 1, "VALID")])
def test_conv_stride2_equals_lax_conv(shape, c_out, padding):
    rng = np.random.default_rng(sum(shape) + c_out)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((3, 3, shape[-1], c_out)).astype(np.float32)
    ours = conv_stride2(jnp.asarray(x), jnp.asarray(kernel), padding)
    ref = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(2, 2), padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
    size = (lambda n: -(-n // 2)) if padding == "SAME" else (lambda n: (n - 3) // 2 + 1)
    assert ours.shape == ref.shape == (shape[0], size(shape[1]), size(shape[2]), c_out)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_stride2_is_not_symmetric_in_the_kernel(padding):
    """Guards the reference comparison: a flipped or transposed kernel gives another result."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 2)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    out = np.asarray(conv_stride2(x, kernel, padding))
    for other in (kernel[::-1], kernel[:, ::-1], kernel.transpose(1, 0, 2, 3), kernel[:, :, ::-1]):
        assert np.abs(np.asarray(conv_stride2(x, np.ascontiguousarray(other), padding)) - out).max() > 1e-2


def test_padding_changes_the_function_and_the_feature_sizes():
    same = ArchSpec("cnn", (28, 28, 1), (16, 16, 16), 10, "relu")
    valid = ArchSpec("cnn", (28, 28, 1), (16, 16, 16), 10, "relu", padding="VALID")
    assert same.layer_shapes() == valid.layer_shapes()  # global pooling: the head does not see it
    assert same.feature_sizes() == [(28, 28), (14, 14), (7, 7), (4, 4)]
    assert valid.feature_sizes() == [(28, 28), (13, 13), (6, 6), (2, 2)]
    params, x = random_params(same), random_inputs(same)
    assert np.abs(np.asarray(apply(same, params, x) - apply(valid, params, x))).max() > 1e-2


def test_padding_round_trips_and_keeps_same_specs_unchanged():
    valid = ArchSpec("cnn", (28, 28, 1), (16, 16, 16), 10, "relu", padding="VALID")
    assert valid.to_dict()["padding"] == "VALID" and ArchSpec.from_dict(valid.to_dict()) == valid
    # A SAME spec's dict has no padding key, so network ids hashed from it are those of before.
    same = ArchSpec("cnn", (8, 8, 1), (4, 8), 10, "relu")
    assert "padding" not in same.to_dict() and ArchSpec.from_dict(same.to_dict()).padding == "SAME"


def _reference_logits(arch: ArchSpec, params, x: np.ndarray) -> np.ndarray:
    """Independent float64 forward pass: numpy for MLPs, lax.conv for CNNs."""
    act = {
        "relu": lambda z: np.maximum(z, 0.0),
        "tanh": np.tanh,
        "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
        "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
        "gelu": lambda z: np.asarray(jax.nn.gelu(jnp.asarray(z, jnp.float32))).astype(np.float64),
    }[arch.activation]
    h = np.asarray(x, np.float64)
    if arch.family == "mlp":
        h = h.reshape(len(h), -1)
        for layer in params[:-1]:
            h = act(h @ layer["kernel"].astype(np.float64) + layer["bias"])
    else:
        for layer in params[:-1]:
            z = jax.lax.conv_general_dilated(
                h.astype(np.float32), layer["kernel"], (2, 2), arch.padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
            h = act(np.asarray(z, np.float64) + layer["bias"])
        h = h.mean(axis=(1, 2))
    return h @ params[-1]["kernel"].astype(np.float64) + params[-1]["bias"]


@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
def test_apply_matches_an_independent_forward_pass(arch):
    params, x = random_params(arch), random_inputs(arch)
    logits = apply(arch, params, x)
    assert logits.shape == (len(x), arch.num_classes) and logits.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(logits), _reference_logits(arch, params, x), atol=1e-4, rtol=1e-4)


def test_apply_rejects_inputs_of_another_shape():
    arch = ARCHS[0]
    with pytest.raises(ValueError, match=r"input shape \(8, 8, 3\) does not match"):
        apply(arch, random_params(arch), np.zeros((2, 8, 8, 3), np.float32))


def _pad(arch: ArchSpec, params, width: int):
    """Zero-pad every hidden layer to `width` units (what the population trainer stores)."""
    wide = ArchSpec(arch.family, arch.input_shape, (width,) * arch.depth, arch.num_classes, arch.activation,
                    arch.padding)
    out = []
    for layer, (kshape, bshape) in zip(params, wide.layer_shapes(), strict=True):
        kernel = np.zeros(kshape, np.float32)
        kernel[..., : layer["kernel"].shape[-2], : layer["kernel"].shape[-1]] = layer["kernel"]
        bias = np.zeros(bshape, np.float32)
        bias[: layer["bias"].shape[0]] = layer["bias"]
        out.append({"kernel": kernel, "bias": bias})
    return wide, out


@pytest.mark.parametrize("activation", CLASSIFIER_ACTIVATIONS)
@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_zero_padded_units_do_not_change_the_function(family, activation):
    # sigmoid(0) = 0.5: padded units are active, only their zero outgoing weights hide them.
    arch = ArchSpec(family, (8, 8, 1), (5, 3, 7), 10, activation)
    params, x = random_params(arch), random_inputs(arch)
    wide, padded = _pad(arch, params, 16)
    np.testing.assert_allclose(np.asarray(apply(wide, padded, x)), np.asarray(apply(arch, params, x)),
                               atol=1e-5, rtol=1e-5)
    # ... and the padded units really take part in the computation: give one a bias and
    # outgoing weights and the output changes.
    padded[0]["bias"][6] = 1.0
    padded[1]["kernel"][..., 6, :] = 1.0
    assert np.abs(np.asarray(apply(wide, padded, x) - apply(arch, params, x))).max() > 1e-3


# --------------------------------------------------------------------------- permutations


@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
def test_permutation_spec_covers_every_hidden_axis(arch):
    spec = permutation_spec(arch)
    shapes = arch.layer_shapes()
    assert spec.sizes == {f"P_{i}": w for i, w in enumerate(arch.hidden)}
    assert set(spec.perm_to_axes) == set(spec.sizes)
    for name, axes in spec.perm_to_axes.items():
        i = int(name[2:])
        # output axis of layer i's kernel and bias, input axis of layer i + 1's kernel
        assert sorted(axes) == sorted([(i, "kernel", len(shapes[i][0]) - 1), (i, "bias", 0),
                                       (i + 1, "kernel", len(shapes[i + 1][0]) - 2)])
        for layer, param, axis in axes:
            shape = shapes[layer][0] if param == "kernel" else shapes[layer][1]
            assert shape[axis] == spec.sizes[name]
    # axes_to_perm is the inverse view of perm_to_axes, and the input and output are fixed.
    assert set(spec.axes_to_perm) == {(i, p) for i in range(arch.num_layers) for p in ("kernel", "bias")}
    for (layer, param), names in spec.axes_to_perm.items():
        shape = shapes[layer][0] if param == "kernel" else shapes[layer][1]
        assert len(names) == len(shape)
        for axis, name in enumerate(names):
            if name is not None:
                assert (layer, param, axis) in spec.perm_to_axes[name]
    assert spec.axes_to_perm[(0, "kernel")][-2] is None
    assert spec.axes_to_perm[(arch.depth, "kernel")][-1] is None
    assert spec.axes_to_perm[(arch.depth, "bias")] == (None,)


NEURON_ARCHS = [ARCHS[1], ARCHS[5], ArchSpec("siren", (28, 28, 1), (8, 6), 1, "sine")]


@pytest.mark.parametrize("arch", NEURON_ARCHS, ids=_ids(NEURON_ARCHS))
def test_neuron_activations_are_the_inputs_each_layer_and_the_outputs(arch):
    params = random_params(arch)
    x = (np.random.default_rng(2).uniform(-1, 1, (5, 2)).astype(np.float32) if arch.family == "siren"
         else random_inputs(arch, n=5))
    values = neuron_activations(arch, params, x)
    widths = [int(np.prod(arch.input_dims)) if arch.family == "mlp" else arch.input_dims[-1],
              *arch.hidden, arch.num_classes]
    assert [v.shape for v in values] == [(5, w) for w in widths]
    np.testing.assert_allclose(np.asarray(values[-1]), np.asarray(apply(arch, params, x)), atol=1e-6)
    if arch.family == "cnn":
        np.testing.assert_allclose(np.asarray(values[0]), x.mean(axis=(1, 2)), atol=1e-6)
        return
    act = np.tanh if arch.family == "mlp" else (lambda z: np.sin(arch.omega0 * z))
    h = x.reshape(5, -1).astype(np.float64)
    for layer, got in zip(params[:-1], values[1:-1], strict=True):
        h = act(h @ layer["kernel"] + layer["bias"])
        np.testing.assert_allclose(np.asarray(got), h, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
def test_permuted_network_computes_the_same_function(arch):
    params, x = random_params(arch), random_inputs(arch)
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(7))
    assert all(not np.array_equal(p, np.arange(len(p))) for p in perms.values())
    permuted = apply_permutation(spec, perms, params)
    check_params(arch, permuted)
    assert any(not np.array_equal(a["kernel"], b["kernel"]) for a, b in zip(params, permuted, strict=True))
    np.testing.assert_allclose(np.asarray(apply(arch, permuted, x)), np.asarray(apply(arch, params, x)),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS, ids=_ids(ARCHS))
@pytest.mark.parametrize("what", ["output axis only", "bias only", "next input axis only"])
def test_a_half_applied_permutation_changes_the_function(arch, what):
    """Sensitivity check for the invariance test above: it can fail."""
    params, x = random_params(arch), random_inputs(arch)
    layer = arch.depth - 1  # the last hidden layer
    perm = np.roll(np.arange(arch.hidden[layer]), 1)
    broken = [dict(p) for p in params]
    if what == "output axis only":
        broken[layer]["kernel"] = params[layer]["kernel"].take(perm, axis=-1)
        broken[layer]["bias"] = params[layer]["bias"].take(perm, axis=0)
    elif what == "bias only":
        broken[layer]["bias"] = params[layer]["bias"].take(perm, axis=0)
    else:
        broken[layer + 1]["kernel"] = params[layer + 1]["kernel"].take(perm, axis=-2)
    diff = np.abs(np.asarray(apply(arch, broken, x)) - np.asarray(apply(arch, params, x))).max()
    assert diff > 1e-3


@pytest.mark.parametrize("arch", ARCHS[:2] + ARCHS[4:6], ids=_ids(ARCHS[:2] + ARCHS[4:6]))
def test_permutation_inverse_identity_and_no_mutation(arch):
    params = random_params(arch)
    before = [{k: v.copy() for k, v in layer.items()} for layer in params]
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(3))
    permuted = apply_permutation(spec, perms, params)
    restored = apply_permutation(spec, invert(perms), permuted)
    for a, b, c in zip(params, restored, before, strict=True):
        for key in ("kernel", "bias"):
            np.testing.assert_array_equal(a[key], b[key])
            np.testing.assert_array_equal(a[key], c[key])  # input untouched
    same = apply_permutation(spec, identity_permutations(spec), params)
    for a, b in zip(params, same, strict=True):
        for key in ("kernel", "bias"):
            np.testing.assert_array_equal(a[key], b[key])
    # perms[name][j] is the old index of the unit at new position j.
    name = "P_0"
    np.testing.assert_array_equal(permuted[0]["bias"], params[0]["bias"][perms[name]])


def test_apply_permutation_works_on_jax_arrays():
    arch = ARCHS[5]
    params = jax.tree.map(jnp.asarray, random_params(arch))
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(0))
    permuted = apply_permutation(spec, perms, params)
    # The weights numpy arrays get, not the input handed back unchanged.
    for a, b in zip(permuted, apply_permutation(spec, perms, random_params(arch)), strict=True):
        for key in ("kernel", "bias"):
            np.testing.assert_array_equal(np.asarray(a[key]), b[key])
    assert any(not np.array_equal(a["kernel"], b["kernel"]) for a, b in zip(permuted, params, strict=True))
    x = random_inputs(arch)
    np.testing.assert_allclose(np.asarray(apply(arch, permuted, x)), np.asarray(apply(arch, params, x)),
                               atol=1e-5, rtol=1e-5)


def test_random_permutations_are_reproducible_permutations():
    spec = permutation_spec(ARCHS[2])
    a = random_permutations(spec, np.random.default_rng(5))
    b = random_permutations(spec, np.random.default_rng(5))
    assert a.keys() == b.keys() == spec.sizes.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(np.sort(a[name]), np.arange(spec.sizes[name]))


# --------------------------------------------------------------------------- trained networks


@pytest.mark.parametrize(("zoo_fixture", "archs"), [
    ("tiny_zoo", {("mlp", 2)}),
    ("tiny_preset_zoo", {("mlp", 1), ("mlp", 2), ("cnn", 2)}),
])
def test_permuting_trained_networks_keeps_their_function(request, zoo_fixture, archs):
    """One trained network of each architecture of a session zoo, on its own test inputs."""
    from zoo_builder.datasets import load_dataset
    from zoo_builder.storage import load_zoo

    zoo = load_zoo(request.getfixturevalue(zoo_fixture))
    zoo_cfg = zoo.manifest["config"]["zoo"]
    final = zoo.final
    picked = final.groupby(["family", "depth"]).head(1)
    assert set(map(tuple, picked[["family", "depth"]].to_numpy())) == archs
    rng = np.random.default_rng(0)
    for _, row in picked.iterrows():
        arch = zoo.arch(row["network_id"])
        params = zoo.params(row["network_id"])
        ds = load_dataset(row["dataset"], arch.input_shape, max_train=zoo_cfg["max_train"],
                          max_test=zoo_cfg["max_test"])
        logits = np.asarray(apply(arch, params, ds.x_test))
        assert np.mean(logits.argmax(-1) == ds.y_test) == pytest.approx(row["test_acc"], abs=1e-6)
        spec = permutation_spec(arch)
        permuted = apply_permutation(spec, random_permutations(spec, rng), params)
        np.testing.assert_allclose(np.asarray(apply(arch, permuted, ds.x_test)), logits, atol=1e-5, rtol=1e-5)
        # Sensitivity: permuting the first layer's units without the next layer's inputs breaks it.
        perm = np.roll(np.arange(arch.hidden[0]), 1)
        broken = [dict(p) for p in params]
        broken[0]["kernel"] = params[0]["kernel"].take(perm, axis=-1)
        broken[0]["bias"] = params[0]["bias"].take(perm, axis=0)
        assert np.abs(np.asarray(apply(arch, broken, ds.x_test)) - logits).max() > 1e-3
