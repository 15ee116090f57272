"""probe (ProbeGen): shapes, gradients, exact grouped forward passes, symmetry invariance, a smoke fit."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nets import cnn, mlp, random_params

from baselines import harness, probe
from baselines.run import MethodSettings, run
from benchmark import load_task
from benchmark.submission import validate_submission
from benchmark.tasks import test_targets
from zoo_builder.architecture import apply
from zoo_builder.permutation import apply_permutation, permutation_spec, random_permutations

CFG = probe.ProbeConfig(num_probes=8, latent_dim=4, generator_width=8, hidden=16)
SMOKE = harness.TrainConfig(batch_size=16, epochs=3, patience=3, learning_rate=3e-3, progress=False)


def act(arch, name):
    return dataclasses.replace(arch, activation=name)


# One zoo's worth of hand-made networks: MLPs and CNNs, several widths, depths and activations.
NETWORKS = [(random_params(a, seed=i), a) for i, a in enumerate([
    mlp(6, input_shape=(8, 8, 2)), act(mlp(4, input_shape=(8, 8, 2)), "tanh"),
    act(mlp(5, 3, input_shape=(8, 8, 2)), "sigmoid"), act(mlp(3, 6, input_shape=(8, 8, 2)), "gelu"),
    cnn(4, 5), act(cnn(3, 2), "tanh"), act(cnn(2, 4), "leaky_relu"),
])]


def part_of(networks):
    """What `probe.stack` reads of a task part."""
    return SimpleNamespace(networks=lambda: networks, ids=tuple(f"n{i}" for i in range(len(networks))))


def heads(variables, networks, cfg=CFG, groups=None):
    """The probe model's outputs for `networks` (one batch per group, jitted)."""
    groups = groups or probe.plan_groups([a for _, a in networks])
    dims = probe._input_dims(list(groups.values()))
    evaluate = lambda spec: jax.jit(probe.model_forward(cfg, dims, spec))  # noqa: E731
    return probe.evaluate_stacks(evaluate, variables, probe.stack(part_of(networks), groups), 4)


@pytest.fixture(scope="module")
def variables():
    return probe.init_variables(CFG, (8, 8, 2), 3, seed=0)


def test_generator_and_responses_have_the_expected_shapes(variables):
    probes = probe.ProbeGenerator(CFG, (8, 8, 2)).apply(variables["generator"])
    assert probes.shape == (8, 8, 8, 2) and float(jnp.abs(probes).max()) <= 1.0  # tanh images
    coords = probe.ProbeGenerator(CFG, (2,)).init_with_output(jax.random.PRNGKey(0))[0]
    assert coords.shape == (8, 2)
    groups = probe.plan_groups([a for _, a in NETWORKS])
    # One group per (family, depth): activations share it; widths are the group's widest.
    assert sorted((s.family, s.hidden) for s in groups.values()) == [("cnn", (4, 5)), ("mlp", (5, 6)),
                                                                     ("mlp", (6,))]
    out = heads(variables, NETWORKS)
    assert set(out) == {"test_acc", "gen_gap"} and out["test_acc"].shape == (len(NETWORKS), 1)
    assert np.isfinite(out["test_acc"]).all() and ((out["test_acc"] > 0) & (out["test_acc"] < 1)).all()


def test_grouped_padded_forward_is_each_networks_own(variables):
    """Zero-padding and the shared-activation switch change nothing: every network's responses are
    `apply` of that network alone on the probes."""
    groups = probe.plan_groups([a for _, a in NETWORKS])
    stacks = probe.stack(part_of(NETWORKS), groups)
    probes = probe.ProbeGenerator(CFG, (8, 8, 2)).apply(variables["generator"])
    responses = jax.jit(probe.responses, static_argnums=0)
    by_group = [responses(spec, nets, a, probes) for spec, nets, a in
                zip(stacks.specs, stacks.params, stacks.activation, strict=True)]
    own = jax.jit(apply, static_argnums=0)  # compiled: run op by op, CNNs take seconds
    for i, (params, arch) in enumerate(NETWORKS):
        got = by_group[stacks.group[i]][stacks.row[i]]
        np.testing.assert_allclose(got, own(arch, params, probes), rtol=1e-5, atol=1e-5, err_msg=str(arch))


def test_gradient_reaches_the_generator(variables):
    spec = probe.plan_groups([NETWORKS[0][1]])
    stacks = probe.stack(part_of(NETWORKS[:1]), spec)
    inputs = (stacks.params[0], stacks.activation[0])
    forward = probe.model_forward(CFG, (8, 8, 2), stacks.specs[0])
    grads = jax.jit(jax.grad(lambda v: forward(v, inputs)["test_acc"].sum()))(variables)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["generator"])]
    assert len(norms) == 2 * CFG.generator_layers + 1 and min(norms) > 0  # the latent codes and every layer


def rescaled(params, factors):
    """Hidden unit j of layer i scaled by factors[i][j] on its way in, divided on its way out: the same
    function for a ReLU net (factors > 0) and for a tanh net (factors ±1)."""
    out = [dict(layer) for layer in params]
    for i, f in enumerate(factors):
        out[i]["kernel"] = out[i]["kernel"] * f
        out[i]["bias"] = out[i]["bias"] * f
        out[i + 1]["kernel"] = out[i + 1]["kernel"] / f[:, None]
    return out


def symmetric_copies(rng):
    """(original, copy) pairs of every kind the benchmark's twins are."""
    pairs = []
    for params, arch in NETWORKS:
        spec = permutation_spec(arch)
        pairs.append((params, apply_permutation(spec, random_permutations(spec, rng), params), arch))
        if arch.activation == "relu":
            pairs.append((params, rescaled(params, [rng.uniform(0.2, 5.0, w) for w in arch.hidden]), arch))
    for arch in (act(mlp(5, 3, input_shape=(8, 8, 2)), "tanh"), act(cnn(3, 2), "tanh")):
        params = random_params(arch, seed=11)
        pairs.append((params, rescaled(params, [rng.choice([-1.0, 1.0], w) for w in arch.hidden]), arch))
    return pairs


def test_invariant_to_permutations_rescaling_and_sign_flips(variables):
    pairs = symmetric_copies(np.random.default_rng(0))
    for a, b, _ in pairs:  # the copies really differ in weights
        assert max(float(np.abs(np.asarray(x["kernel"]) - np.asarray(y["kernel"])).max())
                   for x, y in zip(a, b, strict=True)) > 1e-2
    out = heads(variables, [(p, arch) for a, b, arch in pairs for p in (a, b)])
    for name, v in out.items():
        assert np.abs(v[0::2] - v[1::2]).max() <= 1e-5, name


def test_sensitive_to_a_weight_change(variables):
    """The invariance check can fail: a network with one weight changed gets another prediction."""
    for params, arch in NETWORKS:
        changed = [dict(layer) for layer in params]
        kernel = np.array(params[0]["kernel"])
        kernel.reshape(-1)[0] += 1.0
        changed[0]["kernel"] = kernel
        out = heads(variables, [(params, arch), (changed, arch)])
        assert abs(out["test_acc"][0, 0] - out["test_acc"][1, 0]) > 1e-5, arch


def test_rejects_a_network_wider_than_its_group():
    params, arch = NETWORKS[0]
    narrow = probe.plan_groups([dataclasses.replace(arch, hidden=(2,))])
    with pytest.raises(ValueError, match="network 'n0' layer 0 kernel"):
        probe.stack(part_of([(params, arch)]), narrow)


@pytest.fixture(scope="module")
def gen_task(tiny_preset_zoo):
    return load_task("generalization", tiny_preset_zoo)


def test_smoke_fit_predicts_and_twins_agree(gen_task):
    trained, history = probe.fit(gen_task, seed=0, train_cfg=SMOKE, num_probes=16, hidden=32)
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(np.isfinite([h["train_loss"], h["val_metric"]]).all() for h in history)
    preds = probe.predict(trained, gen_task.test)
    assert set(preds) == set(gen_task.test.ids)
    assert all(set(p) == {"test_acc", "gen_gap"} and 0.0 <= p["test_acc"] <= 1.0 for p in preds.values())
    twins = test_targets(gen_task)["twins"]
    assert twins
    gaps = [abs(preds[t][n] - preds[o][n]) for t, o in twins.items() for n in ("test_acc", "gen_gap")]
    assert max(gaps) <= 1e-5
    assert len({round(p["test_acc"], 6) for p in preds.values()}) > 1  # not a constant


@pytest.mark.parametrize("name", ["classification", "retrieval"])
def test_classification_and_retrieval_submissions(tiny_zoo, name, tmp_path):
    """On the build-mechanics zoo: its MLPs are one group, so one program each to compile."""
    short = dataclasses.replace(SMOKE, epochs=2)
    harness.COMPILED.clear()
    traces = dict(probe.TRACES)
    [path] = run(tiny_zoo, name, "probe", out_dir=tmp_path,
                 settings=MethodSettings(train=short, model=(("num_probes", 16), ("hidden", 16))))
    sub, task = validate_submission(path, tiny_zoo)
    assert probe.TRACES["train"] - traces["train"] == 1  # one group, one program, both epochs
    assert sub.metadata.method == "probe"
    if name == "retrieval":
        emb = np.array([sub.predictions[i] for i in task.test.ids])
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
