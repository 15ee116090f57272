"""Do the prediction baselines beat a constant on networks they never saw?

Each method is trained on the held-out zoo's generalization task (`conftest.HELD_OUT_DOC`:
134 train, 19 val, 39 test networks), with model selection on val only, and scored on the
test part's originals, one target at a time: Kendall tau above 0 (a constant's) and an MSE
below that of predicting the train mean. Both targets are checked; a (method, target) pair
that fails is marked with its measured scores, strict, so a method that starts passing must
lose its mark and one that regresses fails.

A method whose single seed passes or fails by chance is scored by the mean prediction of
several seeds (`ENSEMBLE_SEEDS`), so the verdict does not hang on one CPU's rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import beats_constant, held_out_scores

from baselines import classic, harness
from benchmark import load_task
from benchmark.tasks import test_targets

CLASSIC_TRAIN = harness.TrainConfig(batch_size=16, epochs=40, patience=15, learning_rate=3e-3, progress=False)
GNN_TRAIN = harness.TrainConfig(batch_size=16, epochs=20, patience=8, learning_rate=3e-3, progress=False)
METHODS = (*classic.METHODS, "ng-gnn")
TARGETS = ("test_acc", "gen_gap")

# cnn-matrices' test_acc over seeds 0-5, one seed each: tau 0.03-0.39, MSE ratio 0.75-1.04 (seed 5
# fails; a CI machine's CPU gave 0.07 / 1.04 at seed 0, this one 0.28 / 0.88). The mean of 5 seeds
# gave tau 0.31-0.47 and ratio 0.83-0.91 over the windows of seeds 0-7.
ENSEMBLE_SEEDS = {"cnn-matrices": 5}

# Measured with the settings above, seed 0 (or the ensemble): (Kendall tau, MSE / the train mean's MSE).
KNOWN_FAILURES = {
    ("flat-mlp", "test_acc"): "(0.17, 1.42): ranks a little, fits worse than the mean",
    ("flat-mlp", "gen_gap"): "(-0.19, 1.71)",
    ("statnn", "gen_gap"): "(0.04, 1.42)",
    ("cnn-matrices", "gen_gap"): "mean of 5 seeds: (-0.01, 1.35)",
    ("statnn-gbt", "gen_gap"): "(0.06, 1.21)",
}


@pytest.fixture(scope="module")
def task(held_out_zoo):
    return load_task("generalization", held_out_zoo)


@pytest.fixture(scope="module")
def scores(task):
    """Method -> target -> (tau, MSE ratio) on the test originals, each method trained once."""
    cache = {}

    def get(method):
        if method not in cache:
            if method == "ng-gnn":
                cfg = harness.model_config_for(task, hidden=32, num_layers=2)
                trained, _ = harness.fit(cfg, GNN_TRAIN, task, seed=0)
                outputs = harness.outputs(trained, task.test)
            else:
                overrides = {} if method == "statnn-gbt" else {"hidden": 32}
                fits = [classic.fit(method, task, seed=s, train_cfg=CLASSIC_TRAIN, **overrides)[0]
                        for s in range(ENSEMBLE_SEEDS.get(method, 1))]
                runs = [classic.outputs(model, task.test) for model in fits]
                outputs = {t: np.mean([r[t] for r in runs], axis=0) for t in runs[0]}
            cache[method] = held_out_scores(task, outputs)
            print(method, {t: np.round(s, 3).tolist() for t, s in cache[method].items()})
        return cache[method]

    return get


def _case(method: str, target: str):
    why = KNOWN_FAILURES.get((method, target))
    marks = [pytest.mark.xfail(strict=True, reason=f"measured: {why}")] if why else []
    return pytest.param(method, target, marks=marks, id=f"{method}-{target}")


def test_the_zoo_is_big_enough_and_its_targets_vary(task):
    assert (len(task.train.ids), len(task.val.ids), len(test_targets(task)["ids"])) == (134, 19, 39)
    for t in TARGETS:
        assert np.std(task.train.targets[t]) > 0.08, t


@pytest.mark.parametrize(("method", "target"), [_case(m, t) for m in METHODS for t in TARGETS])
def test_beats_constant_on_held_out_networks(scores, method, target):
    assert beats_constant({target: scores(method)[target]}), scores(method)


def test_a_constant_predictor_does_not_beat_constant(task):
    """The check above can fail: the train mean, or noise around it, does not pass it."""
    n = len(task.test.ids)
    mean = {t: np.full((n, 1), np.mean(task.train.targets[t])) for t in task.targets}
    assert not beats_constant(held_out_scores(task, mean))
    rng = np.random.default_rng(0)
    noisy = {t: m + rng.normal(scale=np.std(task.train.targets[t]), size=m.shape) for t, m in mean.items()}
    for t in task.targets:
        assert not beats_constant({t: held_out_scores(task, noisy)[t]})
