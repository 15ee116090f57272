"""ng-gnn and its harness: invariance, sensitivity, equivariance, training, compilation, sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from baselines import harness, ng_gnn_merging
from baselines.ng_gnn import LAYERS, ModelConfig, NeuralGraphNet
from benchmark import load_task
from benchmark.neural_graph import budget_for, hidden_node_ids, network_graph, pad_batch
from benchmark.submission import write_submission
from zoo_builder.architecture import apply
from zoo_builder.permutation import apply_permutation, permutation_spec, random_permutations

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EDGE_DIM = 9  # the tiny preset holds CNNs
# An output change this large is 10x the invariance tolerance (1e-5): a real change, not rounding.
SENSITIVE = 1e-4
TINY = harness.TrainConfig(batch_size=8, epochs=8, patience=8, learning_rate=3e-3, progress=False)


@pytest.fixture(scope="module")
def gen_task(tiny_preset_zoo):
    return load_task("generalization", tiny_preset_zoo)


def _network(task, family, min_depth):
    """(params, arch) of the first train network of `family` with depth >= min_depth."""
    for i in task.train.ids:
        arch = task.train.arch(i)
        if arch.family == family and arch.depth >= min_depth:
            return task.train.params(i), arch
    raise AssertionError(f"no {family} of depth >= {min_depth} in the tiny preset")


def _submit(task, preds, path):
    """`preds` is a valid submission for `task` (write_submission validates it against the task)."""
    assert write_submission(path, task=task, method="ng-gnn", predictions=preds).exists()


def _batch(params, arch):
    g = network_graph(params, arch, edge_dim=EDGE_DIM, reverse_edges=True)
    return pad_batch([g], budget_for([g], 1))


def _outputs(model, params, arch):
    net, variables = model
    batch = _batch(params, arch)
    return np.asarray(net.apply(variables, batch)["a"][0]), np.asarray(
        net.apply(variables, batch, method=NeuralGraphNet.node_embeddings))


@pytest.fixture(scope="module")
def networks(gen_task):
    return {f: _network(gen_task, f, 2) for f in ("mlp", "cnn")}


@pytest.fixture(scope="module", params=LAYERS)
def model(networks, request):
    """A raw-logit model (no squashing head), so output differences are not hidden by a sigmoid;
    one per message-passing layer."""
    cfg = ModelConfig(kind="classification", outputs=(("a", 5),), hidden=16, num_layers=2,
                      layer=request.param)
    net = NeuralGraphNet(cfg)
    return net, net.init(jax.random.PRNGKey(0), _batch(*networks["mlp"]))


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_invariant_to_hidden_permutations(networks, model, family):
    params, arch = networks[family]
    base, _ = _outputs(model, params, arch)
    spec = permutation_spec(arch)
    for seed in range(3):
        perms = random_permutations(spec, np.random.default_rng(seed))
        assert any((p != np.arange(len(p))).any() for p in perms.values())
        out, _ = _outputs(model, apply_permutation(spec, perms, params), arch)
        np.testing.assert_allclose(out, base, atol=1e-5)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_sensitive_to_breaking_the_coupling(networks, model, family):
    """Permuting layer 0's output units without layer 1's inputs changes the function, and the output."""
    params, arch = networks[family]
    base, _ = _outputs(model, params, arch)
    perm = np.random.default_rng(0).permutation(arch.hidden[0])
    broken = [dict(layer) for layer in params]
    broken[0] = {"kernel": np.take(params[0]["kernel"], perm, axis=-1),
                 "bias": np.take(params[0]["bias"], perm)}
    out, _ = _outputs(model, broken, arch)
    assert np.max(np.abs(out - base)) > SENSITIVE


def test_sensitive_to_input_permutations(networks, model):
    """Input neurons have positions: permuting an MLP's input pixels changes the output."""
    params, arch = networks["mlp"]
    base, _ = _outputs(model, params, arch)
    perm = np.random.default_rng(1).permutation(np.shape(params[0]["kernel"])[0])
    first = {"kernel": np.take(params[0]["kernel"], perm, axis=0), "bias": params[0]["bias"]}
    permuted = [first, *params[1:]]
    out, _ = _outputs(model, permuted, arch)
    assert np.max(np.abs(out - base)) > SENSITIVE


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_node_embeddings_equivariant(networks, model, family):
    params, arch = networks[family]
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(7))
    _, h = _outputs(model, params, arch)
    _, h_perm = _outputs(model, apply_permutation(spec, perms, params), arch)
    for name, ids in hidden_node_ids(arch).items():
        # New unit j is old unit perms[name][j].
        np.testing.assert_allclose(h_perm[ids], h[ids[perms[name]]], atol=1e-5)
        assert np.max(np.abs(h_perm[ids] - h[ids])) > 1e-4  # the permutation did move something


def _probe_batch(params, arch, num=4):
    g = network_graph(params, arch, edge_dim=EDGE_DIM, reverse_edges=True)
    g = harness.with_probe_features([g], [(params, arch)], num)[0]
    return pad_batch([g], budget_for([g], 1))


@pytest.fixture(scope="module")
def probe_model(networks):
    """ng-gnn reading probe features and Fourier-encoded values (the INR profile's inputs)."""
    cfg = ModelConfig(kind="classification", outputs=(("a", 5),), hidden=16, num_layers=2,
                      probe_features=4, value_encoding="fourier", fourier_features=8)
    net = NeuralGraphNet(cfg)
    return net, net.init(jax.random.PRNGKey(0), _probe_batch(*networks["mlp"]))


def test_probe_features_are_each_neurons_values_on_the_probes(networks):
    params, arch = networks["mlp"]
    graph = _probe_batch(params, arch)
    x = harness.probe_inputs(arch, 4)
    n_in = int(np.prod(arch.input_dims))
    probe = graph.nodes["probe"]
    np.testing.assert_allclose(probe[:n_in], x.reshape(4, -1).T)  # input nodes: the probes themselves
    n_real = int(graph.n_node[0])
    np.testing.assert_allclose(probe[n_real - arch.num_classes:n_real],
                               np.asarray(apply(arch, params, x)).T, atol=1e-5)


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_probe_features_keep_the_invariance_and_the_sensitivity(networks, probe_model, family):
    net, variables = probe_model
    params, arch = networks[family]
    out = lambda p: np.asarray(net.apply(variables, _probe_batch(p, arch))["a"][0])  # noqa: E731
    base = out(params)
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(3))
    np.testing.assert_allclose(out(apply_permutation(spec, perms, params)), base, atol=1e-5)
    perm = np.random.default_rng(0).permutation(arch.hidden[0])
    first = {"kernel": np.take(params[0]["kernel"], perm, axis=-1), "bias": np.take(params[0]["bias"], perm)}
    broken = [first, *params[1:]]
    assert np.max(np.abs(out(broken) - base)) > SENSITIVE


@pytest.fixture(scope="module")
def fitted(gen_task):
    """ng-gnn trained once on the tiny generalization task: (trained, history, traces before the fit)."""
    harness.COMPILED.clear()  # count this fit's compilations, not reuse of an earlier test's
    before = dict(harness.TRACES)
    trained, history = harness.fit(harness.model_config_for(gen_task, hidden=32, num_layers=2), TINY,
                                   gen_task, seed=0)
    return trained, history, before


def test_trains_and_compiles_once(gen_task, fitted, tmp_path):
    trained, history, before = fitted
    # One compilation per size bucket the train (val) graphs fall in, not one per batch.
    used = {name: np.unique(trained.buckets.assign(harness.graphs_of(part, TINY)))
            for name, part in (("train", gen_task.train), ("val", gen_task.val))}
    n_batches = len(harness.bucket_batches(np.arange(len(gen_task.train.ids)),
                                           trained.buckets.assign(harness.graphs_of(gen_task.train, TINY)),
                                           TINY.batch_size))
    assert n_batches > len(used["train"])
    assert harness.TRACES["train"] - before["train"] == len(used["train"])
    assert harness.TRACES["eval"] - before["eval"] == len(used["val"])
    assert len(history) >= 1 and all(np.isfinite(h["train_loss"]) for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    preds = harness.predict(trained, gen_task.test)
    assert set(preds) == set(gen_task.test.ids)
    for p in preds.values():
        assert set(p) == {"test_acc", "gen_gap"} and 0.0 <= p["test_acc"] <= 1.0
        assert all(isinstance(v, float) for v in p.values())
    assert harness.write_submission(trained, gen_task, tmp_path / "sub.json").exists()


def test_bucket_batches_cover_order_once_with_one_bucket_per_batch():
    assignment = np.array([0, 1, 0, 2, 1, 0, 0, 2, 1, 0])
    order = np.random.default_rng(0).permutation(10)
    out = harness.bucket_batches(order, assignment, 2)
    assert sorted(np.concatenate(out).tolist()) == list(range(10))
    assert all(len(b) <= 2 and len(set(assignment[b])) == 1 for b in out)
    firsts = [int(np.flatnonzero(order == b[0])[0]) for b in out]
    assert firsts == sorted(firsts)  # batches follow the shuffled order
    np.testing.assert_array_equal(np.concatenate(harness.bucket_batches(order, assignment, 2)),
                                  np.concatenate(out))


def test_deterministic_given_seed(gen_task):
    cfg = harness.model_config_for(gen_task, hidden=16, num_layers=2)
    short = harness.TrainConfig(batch_size=8, epochs=1, progress=False)
    a, ha = harness.fit(cfg, short, gen_task, seed=3)
    b, hb = harness.fit(cfg, short, gen_task, seed=3)
    assert ha == hb
    jax.tree.map(np.testing.assert_array_equal, a.variables, b.variables)


_DEVICES_SCRIPT = """
import json, os, sys
import jax
if os.environ.get("ZOOBENCH_COMPILE_CACHE"):  # the session's persistent cache (tests/conftest.py)
    jax.config.update("jax_compilation_cache_dir", os.environ["ZOOBENCH_COMPILE_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
from baselines import harness, ng_gnn_merging
from benchmark import load_task
assert jax.local_device_count() == 4, jax.local_devices()
task = load_task("generalization", sys.argv[1])
cfg = harness.model_config_for(task, hidden=16, num_layers=2)
out = {}
for n in (1, 4):
    tc = harness.TrainConfig(batch_size=8, epochs=2, patience=5, num_devices=n, progress=False)
    _, history = harness.fit(cfg, tc, task, seed=0)
    out[n] = [h["train_loss"] for h in history]
print(json.dumps(out))
"""


def test_one_and_four_devices_agree(tiny_preset_zoo):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT, str(tiny_preset_zoo)], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(losses["1"]) == len(losses["4"]) == 2
    np.testing.assert_allclose(losses["4"], losses["1"], rtol=1e-4)


@pytest.mark.parametrize("name", ["classification", "retrieval"])
def test_classification_and_retrieval_heads(tiny_preset_zoo, name, tmp_path):
    task = load_task(name, tiny_preset_zoo)
    cfg = harness.model_config_for(task, hidden=16, num_layers=2, embed_dim=8)
    short = harness.TrainConfig(batch_size=8, epochs=3, patience=3, learning_rate=3e-3, progress=False)
    trained, history = harness.fit(cfg, short, task, seed=0)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(0.0 <= h["val_metric"] <= 1.0 for h in history)
    preds = harness.predict(trained, task.test)
    assert set(preds) == set(task.test.ids)
    if name == "classification":
        for p in preds.values():
            assert set(p) == set(task.targets)
            assert all(p[t] in task.classes[t] for t in task.targets)
    else:
        emb = np.array(list(preds.values()))
        assert emb.shape == (len(task.test), 8)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        assert np.ptp(emb, axis=0).max() > 1e-3  # not a constant embedding
    _submit(task, preds, tmp_path / "sub.json")


def test_merging_by_node_embeddings_recovers_synthetic_permutations(tiny_preset_zoo, tmp_path):
    """Equivariant embeddings + Hungarian matching find the true alignment of permuted, noisy copies."""
    task = load_task("merging", tiny_preset_zoo)
    part = task.val
    model, variables = ng_gnn_merging.default_model(hidden=16, num_layers=2)
    preds = ng_gnn_merging.predict_pairs(model, variables, part, edge_dim=EDGE_DIM)
    assert set(preds) == {p.pair_id for p in (*part.pairs, *part.synthetic_pairs)}
    hits = total = 0
    for pair_id, true in part.synthetic_permutations.items():
        for name, perm in true.items():
            assert sorted(preds[pair_id][name]) == list(range(len(perm)))
            hits += int(np.sum(np.asarray(preds[pair_id][name]) == perm))
            total += len(perm)
    assert total > 0 and hits / total >= 0.9
    _submit(task, ng_gnn_merging.predict_pairs(model, variables, task.test, edge_dim=EDGE_DIM),
            tmp_path / "sub.json")
