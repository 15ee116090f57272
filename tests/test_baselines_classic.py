"""Classic baselines (flat-mlp, statnn, statnn-gbt, cnn-matrices), `baselines.run` and its CLI."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from conftest import beats_constant, held_out_scores

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


# Measured on the tiny preset (48 networks: 34 train, 4 val, 10 test), seed 0, (Kendall tau, MSE /
# the train mean's MSE) per target: none of these beats a constant on both held-out targets. They
# are reported, not hidden: strict, so a method that starts passing must lose its mark.
HELD_OUT_FAILURES = {
    "flat-mlp": "test_acc (-0.07, 1.43), gen_gap (0.11, 1.07)",
    "statnn": "test_acc (0.29, 1.47): ranks, but worse MSE than the train mean",
    "cnn-matrices": "test_acc (-0.20, 1.98)",
    "statnn-gbt": "gen_gap (-0.38, 1.22); test_acc passes (0.45, 0.72)",
}


def _known(method: str, failures: dict):
    why = failures.get(method)
    marks = [pytest.mark.xfail(strict=True, reason=f"measured: {why}")] if why else []
    return pytest.param(method, marks=marks)


@pytest.mark.parametrize("method", [_known(m, HELD_OUT_FAILURES) for m in classic.METHODS])
def test_beats_constant_on_held_out_networks(gen_task, trained, method):
    """On the test networks (model selection used val), both targets beat a constant predictor."""
    model, history = trained(method)
    assert history and all(np.isfinite(list(h.values())[-1]) for h in history)
    scores = held_out_scores(gen_task, classic.outputs(model, gen_task.test))
    print(method, {t: np.round(s, 3).tolist() for t, s in scores.items()})  # (tau, MSE / constant's MSE)
    assert beats_constant(scores), scores
    preds = classic.predict(model, gen_task.test)
    assert set(preds) == set(gen_task.test.ids)
    for p in preds.values():
        assert set(p) == {"test_acc", "gen_gap"} and 0.0 <= p["test_acc"] <= 1.0


def test_a_constant_predictor_does_not_beat_constant(gen_task):
    """The check above can fail: the train mean, or noise around it, does not pass it."""
    n = len(gen_task.test.ids)
    mean = {t: np.full((n, 1), np.mean(gen_task.train.targets[t])) for t in gen_task.targets}
    assert not beats_constant(held_out_scores(gen_task, mean))
    rng = np.random.default_rng(0)
    noisy = {t: m + rng.normal(scale=np.std(gen_task.train.targets[t]), size=m.shape)
             for t, m in mean.items()}
    assert not beats_constant(held_out_scores(gen_task, noisy))


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


def test_standardised_with_train_statistics_only(gen_task, trained):
    model, _ = trained("statnn")
    x = classic.raw_features("statnn", gen_task.train)
    np.testing.assert_allclose(model.standardizer.mean, x.mean(0), rtol=1e-5, atol=1e-6)


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
