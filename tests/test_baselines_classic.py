"""Classic baselines (flat-mlp, statnn, statnn-gbt, cnn-matrices), `baselines.run` and its CLI."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from baselines import classic, harness, weight_matching
from baselines.run import MethodSettings, run
from benchmark import load_task
from benchmark.submission import validate_submission
from benchmark.tasks import test_targets
from leaderboard.store import connect, entries
from zoo_builder.permutation import apply_permutation, invert, permutation_spec, random_permutations
from zoobench import cli

TINY = harness.TrainConfig(batch_size=16, epochs=40, patience=15, learning_rate=3e-3, progress=False)
SMALL = {"hidden": 32}


@pytest.fixture(scope="module")
def gen_task(tiny_preset_zoo):
    return load_task("generalization", tiny_preset_zoo)


@pytest.fixture(scope="module")
def trained(gen_task):
    """Each classic method trained once on the tiny generalization task (seed 0)."""
    cache = {}

    def get(method):
        if method not in cache:
            overrides = {} if method == "statnn-gbt" else SMALL
            cache[method] = classic.fit(method, gen_task, seed=0, train_cfg=TINY, **overrides)
        return cache[method]

    return get


@pytest.mark.parametrize("method", classic.METHODS)
def test_fits_and_predicts_every_test_network(gen_task, trained, method):
    """Whether the predictions are any good is tests/test_held_out.py's question, on a bigger zoo."""
    model, history = trained(method)
    assert history and all(np.isfinite(list(h.values())[-1]) for h in history)
    preds = classic.predict(model, gen_task.test)
    assert set(preds) == set(gen_task.test.ids)
    for p in preds.values():
        assert set(p) == {"test_acc", "gen_gap"} and 0.0 <= p["test_acc"] <= 1.0


def _twin_gaps(task, model, kind: str = "permutation") -> np.ndarray:
    answers = test_targets(task)
    twins = {t: o for t, o in answers["twins"].items() if answers["twin_kinds"][t] == kind}
    assert twins
    out = classic.outputs(model, task.test)
    pos = {i: k for k, i in enumerate(task.test.ids)}
    return np.array([[abs(out[t][pos[tw], 0] - out[t][pos[orig], 0]) for t in task.targets]
                     for tw, orig in twins.items()])


@pytest.mark.parametrize("method", ["statnn", "statnn-gbt"])
def test_stats_methods_are_invariant_on_twins(gen_task, trained, method):
    assert _twin_gaps(gen_task, trained(method)[0]).max() <= 1e-5


def test_flat_mlp_is_not_invariant_on_twins(gen_task, trained):
    assert _twin_gaps(gen_task, trained("flat-mlp")[0]).max() > 1e-4


def test_deterministic_given_seed(gen_task):
    short = harness.TrainConfig(batch_size=16, epochs=2, progress=False)
    (a, ha), (b, hb) = (classic.fit("statnn", gen_task, seed=5, train_cfg=short, hidden=16) for _ in range(2))
    assert ha == hb
    jax.tree.map(np.testing.assert_array_equal, a.variables, b.variables)
    ga, gb = (classic.fit("statnn-gbt", gen_task, seed=5, max_iter=20)[0] for _ in range(2))
    np.testing.assert_array_equal(classic.outputs(ga, gen_task.test)["test_acc"],
                                  classic.outputs(gb, gen_task.test)["test_acc"])


def test_splits_share_one_compiled_program_and_keep_their_own_constants(tiny_preset_zoo, gen_task):
    """A second split of a task reuses the first's compiled steps (nothing traced) and still
    gives what a fresh compilation gives: its target scales and head offsets are arguments."""
    short = harness.TrainConfig(batch_size=16, epochs=2, progress=False)
    other = load_task("generalization", tiny_preset_zoo, "ood-width")
    fit = lambda task: classic.fit("statnn", task, seed=1, train_cfg=short, hidden=16)[0]  # noqa: E731
    harness.COMPILED.clear()
    expected = classic.outputs(fit(other), other.test)
    harness.COMPILED.clear()
    classic.outputs(fit(gen_task), gen_task.test)  # a run of the main job: fit, then predict
    before = dict(classic.TRACES)
    got = classic.outputs(fit(other), other.test)
    assert classic.TRACES == before
    assert abs(np.mean(other.train.targets["test_acc"]) - np.mean(gen_task.train.targets["test_acc"])) > 1e-3
    for name in ("test_acc", "gen_gap"):
        np.testing.assert_array_equal(got[name], expected[name])


def test_standardised_with_train_statistics_only(gen_task, trained):
    model, _ = trained("statnn")
    x = classic.raw_features("statnn", gen_task.train).astype(np.float64)
    np.testing.assert_allclose(model.standardizer.mean, x.mean(0), rtol=1e-5, atol=1e-6)
    std = x.std(0)
    np.testing.assert_allclose(model.standardizer.std, np.where(std > 1e-8, std, 1.0), rtol=1e-5, atol=1e-6)
    # ... and statistics over every part would be other numbers: the checks above can tell.
    every = np.concatenate([x, *(classic.raw_features("statnn", p) for p in (gen_task.val, gen_task.test))])
    assert not np.allclose(every.mean(0), x.mean(0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(every.std(0), std, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["classification", "retrieval"])
@pytest.mark.parametrize("method", ["statnn", "statnn-gbt"])
def test_classification_and_retrieval(tiny_preset_zoo, name, method, tmp_path):
    short = harness.TrainConfig(batch_size=16, epochs=3, progress=False)
    overrides = (("max_iter", 10),) if method == "statnn-gbt" else (("hidden", 16),)
    [path] = run(tiny_preset_zoo, name, method, out_dir=tmp_path,
                 settings=MethodSettings(train=short, model=overrides))
    sub, task = validate_submission(path, tiny_preset_zoo)
    assert sub.metadata.method == method
    if name == "retrieval":
        emb = np.array([sub.predictions[i] for i in task.test.ids])
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_cli_writes_valid_submissions(tiny_preset_zoo, tmp_path, capsys):
    db = tmp_path / "lb.sqlite"
    code = cli.main(["baselines", "run", "--zoo", str(tiny_preset_zoo), "--task", "generalization",
                     "--method", "statnn-gbt", "--seeds", "2", "--out", str(tmp_path), "--db", str(db),
                     "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    paths = [w["path"] for w in doc["written"]]
    assert len(paths) == 2
    # Scored into the leaderboard as they were written: two seeds of one method.
    rows = entries(connect(db))
    assert sorted(r["seed"] for r in rows) == [0, 1] and {r["method"] for r in rows} == {"statnn-gbt"}
    assert sorted(w["stored_as"] for w in doc["written"]) == sorted(r["id"] for r in rows)
    for p in paths:
        sub, _ = validate_submission(p, tiny_preset_zoo)
        assert sub.metadata.method == "statnn-gbt"


@pytest.fixture(scope="module")
def merging_task(tiny_preset_zoo):
    return load_task("merging", tiny_preset_zoo)


def test_weight_matching_recovers_a_known_permutation(merging_task):
    """B is A with its hidden units permuted: weight matching finds the inverse exactly (MLP and CNN)."""
    seen = set()
    for i in merging_task.train.ids:
        arch = merging_task.train.arch(i)
        if arch.family in seen:
            continue
        seen.add(arch.family)
        params = merging_task.train.params(i)
        spec = permutation_spec(arch)
        true = random_permutations(spec, np.random.default_rng(3))
        permuted = apply_permutation(spec, true, params)
        found = weight_matching.weight_matching(spec, params, permuted)
        for name, perm in invert(true).items():
            np.testing.assert_array_equal(found[name], perm)
        realigned = apply_permutation(spec, found, permuted)
        for la, lb in zip(params, realigned, strict=True):
            np.testing.assert_array_equal(la["kernel"], lb["kernel"])
    assert seen == {"mlp", "cnn"}


def test_weight_matching_on_synthetic_pairs(merging_task):
    part = merging_task.val
    preds = weight_matching.predict_pairs(part, "weight-matching")
    assert set(preds) == {p.pair_id for p in (*part.pairs, *part.synthetic_pairs)}
    hits = total = 0
    for pair_id, true in part.synthetic_permutations.items():
        for name, perm in true.items():
            hits += int(np.sum(np.asarray(preds[pair_id][name]) == perm))
            total += len(perm)
    assert total > 0 and hits / total >= 0.9


@pytest.mark.parametrize("method", ["naive", "weight-matching"])
def test_cli_merging_submissions(tiny_preset_zoo, tmp_path, capsys, method):
    code = cli.main(["baselines", "run", "--zoo", str(tiny_preset_zoo), "--task", "merging",
                     "--method", method, "--out", str(tmp_path), "--json"])
    assert code == 0
    [w] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"]
    sub, _ = validate_submission(w["path"], tiny_preset_zoo)
    assert sub.metadata.method == method
