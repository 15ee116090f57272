"""nfn-np: equivariance of the NP layer, invariance of the model, padding, and a smoke fit.

As NFN's own tests: permute the hidden units of a network (`zoo_builder.permutation`),
check each layer's output is permuted the same way and the model's output does not
move (atol 1e-5); then break the coupling (permute a kernel's columns without its bias
and the next layer's rows) and check the output does move, so the invariance test can fail.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from nets import cnn, mlp, random_params

from baselines import harness, nfn
from baselines.run import fit_predict, settings_for
from benchmark import load_task
from zoo_builder.architecture import ArchSpec
from zoo_builder.permutation import apply_permutation, permutation_spec, random_permutations

ATOL = 1e-5
SENSITIVE = 1e-4  # 10x the tolerance: a real change, not rounding
# Varied widths within a network, several depths, a CNN, and a SIREN (2 coordinates in, C channels out).
ARCHS = [mlp(7, 4), cnn(3, 4), ArchSpec("siren", (8, 8, 1), (6, 5), 1, "sine")]
CFG = nfn.NFNConfig(kind="classification", outputs=(("dataset", 3),), hidden=6, layers=1, max_depth=3)


def _name(arch) -> str:
    return f"{arch.family}{'-'.join(map(str, arch.hidden))}-in{arch.input_shape[-1]}"


def _encode(params, pad_width=0, pad_depth=0):
    arch_width = max(np.shape(layer["kernel"])[-1] for layer in params[:-1])
    return nfn.encode([params], arch_width + pad_width, len(params) - 1 + pad_depth)


def permute_batch(batch, spec, perms, depth):
    """`perms` applied to encoded features of any feature width (identity on padded units).

    Reads the spec: slot s's rows carry the permutation of its kernel's input axis, its
    columns and bias that of the output axis.
    """
    def full(name, size):
        p = np.asarray(perms[name]) if name else np.arange(0)
        return np.concatenate([p, np.arange(len(p), size)])

    ws, bs, ms = list(batch["w"]), list(batch["b"]), list(batch["m"])
    for i in range(depth + 1):
        names = spec.axes_to_perm[(i, "kernel")]
        s = -1 if i == depth else i
        rows, cols = full(names[-2], ws[s].shape[1]), full(names[-1], ws[s].shape[2])
        ws[s], bs[s] = ws[s][:, rows][:, :, cols], bs[s][:, cols]
        if i < depth:
            ms[i + 1] = ms[i + 1][:, cols]
    return {**batch, "w": tuple(ws), "b": tuple(bs), "m": tuple(ms)}


@pytest.mark.parametrize("arch", ARCHS, ids=_name)
def test_encoding_commutes_with_the_permutation_spec(arch):
    """Encoding a permuted network = permuting its encoding (`permute_batch` is the spec's action)."""
    params = random_params(arch)
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(1))
    got = _encode(apply_permutation(spec, perms, params), 2, 1)
    want = permute_batch(_encode(params, 2, 1), spec, perms, arch.depth)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arch", ARCHS[:2], ids=_name)
def test_np_layer_is_equivariant(arch):
    """NPLinear(permuted features) = permuted NPLinear(features), on padded widths and depths."""
    spec = permutation_spec(arch)
    batch = _encode(random_params(arch), 3, 1)
    rows, cols = nfn.unit_masks(batch)
    rng = np.random.default_rng(2)
    ws = tuple(rng.normal(size=w.shape[:3] + (4,)).astype(np.float32) * np.asarray(nfn._entry_mask(r, c))
               for w, r, c in zip(batch["w"], rows, cols, strict=True))
    bs = tuple(rng.normal(size=b.shape + (4,)).astype(np.float32) * np.asarray(c)[:, :, None]
               for b, c in zip(batch["b"], cols, strict=True))
    feats = {**batch, "w": ws, "b": bs}
    layer = nfn.NPLinear(5, CFG.slots)
    variables = nfn.init_from_shapes(layer, [(ws, bs, batch)], seed=0)
    apply = jax.jit(layer.apply)
    out_w, out_b = apply(variables, ws, bs, batch)
    worst = 0.0
    for seed in range(3):
        perms = random_permutations(spec, np.random.default_rng(seed))
        p = permute_batch(feats, spec, perms, arch.depth)
        got_w, got_b = apply(variables, p["w"], p["b"], p)
        want = permute_batch({**batch, "w": out_w, "b": out_b}, spec, perms, arch.depth)
        for got, exp in zip((*got_w, *got_b), (*want["w"], *want["b"]), strict=True):
            worst = max(worst, float(np.abs(np.asarray(got) - np.asarray(exp)).max()))
    assert worst < ATOL, worst
    # Not trivially so: the layer's output depends on the features.
    assert float(np.abs(np.asarray(out_w[0])).max()) > SENSITIVE


@pytest.fixture(scope="module")
def model_and_params():
    model = nfn.NFN(CFG)
    examples = [nfn.Encoded((_encode(random_params(a), 1, CFG.max_depth - a.depth),), np.zeros(1, np.int64),
                            np.zeros(1, np.int64)) for a in ARCHS]
    return model, nfn.init_params(model, examples, seed=0), jax.jit(model.apply)


def _logits(apply, variables, batch):
    return np.asarray(apply(variables, batch)["dataset"])


@pytest.mark.parametrize("arch", ARCHS, ids=_name)
def test_model_is_invariant_and_sensitive(model_and_params, arch):
    _, variables, apply = model_and_params
    params, spec = random_params(arch), permutation_spec(arch)
    out = _logits(apply, variables, _encode(params))
    for seed in range(3):
        perms = random_permutations(spec, np.random.default_rng(seed))
        moved = _logits(apply, variables, _encode(apply_permutation(spec, perms, params)))
        np.testing.assert_allclose(moved, out, atol=ATOL)
    # Break the coupling: permute layer 0's output units in its kernel only (not its bias, not the
    # next layer's rows). The network computes another function; the model must see it.
    broken = [dict(layer) for layer in params]
    perm = np.roll(np.arange(arch.hidden[0]), 1)
    broken[0]["kernel"] = broken[0]["kernel"][..., perm]
    assert np.abs(_logits(apply, variables, _encode(broken)) - out).max() > SENSITIVE


@pytest.mark.parametrize("arch", ARCHS[:2], ids=_name)
def test_padding_gives_the_unpadded_output(model_and_params, arch):
    """Masked means: padded widths and depths, or batch-mates that force them, change nothing."""
    _, variables, apply = model_and_params
    params = random_params(arch)
    out = _logits(apply, variables, _encode(params))
    deeper = random_params(dataclasses.replace(arch, hidden=(9,) * (arch.depth + 1)), seed=3)
    both = nfn.encode([params, deeper], 9, CFG.max_depth)  # wider and deeper than `params`
    np.testing.assert_allclose(_logits(apply, variables, both)[:1], out, atol=1e-6)


def test_layouts_share_np_parameters_and_keep_their_own_lifts(model_and_params):
    """An MLP and a CNN share every NP layer (per slot); lifts and embeddings are per layout."""
    _, variables, _ = model_and_params
    names = set(variables["params"])
    assert {f"np_{k}" for k in range(CFG.layers)} <= names
    slots = set(variables["params"]["np_0"])
    assert {f"{s}_w" for s in ("h0", "h1", "h2", "head")} == {n for n in slots if n.endswith("_w")}
    signatures = {n.split("_")[1] for n in names if n.startswith("lift_")}
    assert signatures == {"i16t1o3", "i2t9o3", "i2t1o1"}  # MLP 4x4x1, CNN 8x8x2, SIREN


def test_smoke_fit_on_the_tiny_zoo(tiny_preset_zoo):
    """The smoke profile trains on train, selects on val, predicts every test item (twins included)."""
    task = load_task("generalization", tiny_preset_zoo)
    harness.COMPILED.clear()
    nfn.TRACES.update(train=0, eval=0)
    fitted = fit_predict("nfn-np", task, 0, settings_for("nfn-np", "smoke"))
    cap = settings_for("nfn-np", "smoke").train.epochs
    assert 1 <= len(fitted.history) <= cap
    assert all(set(h) == {"epoch", "train_loss", "val_metric"} and np.isfinite(h["train_loss"])
               for h in fitted.history)
    assert set(fitted.predictions) == set(task.test.ids)
    assert all(0.0 <= p["test_acc"] <= 1.0 and -1.0 <= p["gen_gap"] <= 1.0
               for p in fitted.predictions.values())
    # One training program per layout (the tiny zoo's MLPs of depth 1 and 2 share one: depth is padded).
    layouts = {nfn.layout_of(p) for p, _ in task.train.networks()}
    assert len(layouts) == 2 and nfn.TRACES["train"] == len(layouts)
