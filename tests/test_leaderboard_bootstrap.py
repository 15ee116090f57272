"""Bootstrap intervals over clustered items: replicates of one config (and checkpoints of one network) are
resampled together (`leaderboard.metrics`), and the scorer knows each test item's cluster."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmark import metrics as task_metrics
from leaderboard import metrics as M

CLUSTERS, PER_CLUSTER, TRIALS, RESAMPLES = 40, 5, 200, 300


def _clustered_sample(rng, mu=0.5):
    """40 clusters of 5 items sharing a cluster effect (sd 1) plus item noise (sd 0.5); the mean is `mu`."""
    effect = rng.normal(0.0, 1.0, CLUSTERS)
    values = mu + np.repeat(effect, PER_CLUSTER) + rng.normal(0.0, 0.5, CLUSTERS * PER_CLUSTER)
    labels = np.repeat([f"config-{c:02d}" for c in range(CLUSTERS)], PER_CLUSTER)
    order = rng.permutation(len(values))  # clusters need not be contiguous
    return values[order], labels[order]


def _coverage(interval, mu=0.5) -> float:
    rng = np.random.default_rng(12)
    hits = 0
    for trial in range(TRIALS):
        values, labels = _clustered_sample(rng, mu)
        low, high = interval(values, labels, trial)
        hits += low <= mu <= high
    return hits / TRIALS


def test_cluster_bootstrap_of_the_mean_covers_the_true_mean():
    def interval(values, labels, seed):
        e = M.mean_estimate(values, clusters=labels, seed=seed, resamples=RESAMPLES)
        assert (e.n, e.n_clusters) == (CLUSTERS * PER_CLUSTER, CLUSTERS)
        return e.low, e.high

    assert 0.90 <= _coverage(interval) <= 0.99


def test_cluster_bootstrap_of_any_metric_covers_the_true_value():
    """The generic path (index arrays into the items, as for Kendall tau or R²) resamples clusters too."""
    def interval(values, labels, seed):
        e = M.estimate(np.mean, values, clusters=labels, seed=seed, resamples=RESAMPLES)
        assert e.n_clusters == CLUSTERS
        return e.low, e.high

    assert 0.90 <= _coverage(interval) <= 0.99


def test_independent_resampling_of_clustered_items_is_too_narrow():
    """Why clusters: resampling the 200 items one by one ignores the shared effects (design effect ~4)."""
    def interval(values, labels, seed):
        e = M.mean_estimate(values, seed=seed, resamples=RESAMPLES)
        return e.low, e.high

    assert _coverage(interval) < 0.80


def test_generic_and_vectorised_paths_draw_the_same_resamples():
    values, labels = _clustered_sample(np.random.default_rng(3))
    values[[4, 17]] = np.nan  # nan items are left out, as `mean_estimate` documents
    fast = M.mean_estimate(values, clusters=labels, seed=5, resamples=400)
    slow = M.bootstrap(lambda i: np.nanmean(values[i]), len(values), clusters=labels, seed=5, resamples=400)
    assert (fast.low, fast.high) == pytest.approx(slow, abs=1e-12)
    num, den = np.abs(values) + 1, np.full(len(values), 3.0)
    pooled = M.ratio_estimate(np.nan_to_num(num), den, clusters=labels, seed=5, resamples=400)
    slow = M.bootstrap(lambda i: np.nan_to_num(num)[i].sum() / den[i].sum(), len(values), clusters=labels,
                       seed=5, resamples=400)
    assert (pooled.low, pooled.high) == pytest.approx(slow, abs=1e-12)
    assert pooled.n_clusters == CLUSTERS


@pytest.mark.parametrize("clustered", [True, False])
def test_vectorised_kendall_matches_scipy_tau_on_every_resample(clustered, monkeypatch):
    """Ties (rounded values, a constant stretch) and clusters: the quadratic forms give scipy's τ-b."""
    values, labels = _clustered_sample(np.random.default_rng(4))
    y = np.round(values, 1)
    pred = np.round(values + np.random.default_rng(5).normal(0, 1, len(values)), 1)
    pred[:20] = 0.0
    clusters = labels if clustered else None
    fast = M.kendall_estimate(y, pred, clusters=clusters, seed=7, resamples=300)
    slow = M.estimate(task_metrics.kendall_tau, y, pred, clusters=clusters, seed=7, resamples=300)
    assert fast.value == slow.value and (fast.n, fast.n_clusters) == (slow.n, slow.n_clusters)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12)
    assert slow.low < fast.value < slow.high
    constant = M.kendall_estimate(y, np.ones_like(y), clusters=clusters, resamples=50)
    assert (constant.value, constant.low, constant.high) == (0.0, 0.0, 0.0)  # undefined τ: 0, as kendall_tau
    monkeypatch.setattr(M, "KENDALL_VECTOR_MAX", 10)  # the generic path above the size limit
    assert M.kendall_estimate(y, pred, clusters=clusters, seed=7, resamples=300) == slow


def test_singleton_clusters_agree_with_scipy_percentile_interval():
    values = np.random.default_rng(4).normal(1.0, 2.0, 150)
    ours = M.mean_estimate(values, clusters=np.arange(150), seed=0, resamples=4000)
    iid = M.mean_estimate(values, seed=0, resamples=4000)
    theirs = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=4000, confidence_level=0.95,
                             random_state=0).confidence_interval
    width = theirs.high - theirs.low
    for e in (ours, iid):
        assert e.low == pytest.approx(theirs.low, abs=0.05 * width)
        assert e.high == pytest.approx(theirs.high, abs=0.05 * width)
    assert iid.n_clusters == 150 == ours.n_clusters


def test_clustered_mean_agrees_with_scipy_on_cluster_totals():
    """scipy resamples observations i.i.d.; with one observation per cluster (its sum and its count, paired)
    and the ratio of totals as statistic it is the cluster bootstrap of the mean."""
    values, labels = _clustered_sample(np.random.default_rng(6))
    ours = M.mean_estimate(values, clusters=labels, seed=0, resamples=4000)
    codes = np.unique(labels, return_inverse=True)[1]
    sums, counts = np.bincount(codes, values), np.bincount(codes).astype(float)
    theirs = stats.bootstrap((sums, counts), lambda s, c, axis=-1: s.sum(axis) / c.sum(axis), paired=True,
                             method="percentile", n_resamples=4000, random_state=0).confidence_interval
    width = theirs.high - theirs.low
    assert ours.low == pytest.approx(theirs.low, abs=0.06 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.06 * width)


def test_cluster_labels_must_align_with_the_items():
    with pytest.raises(ValueError, match="clusters: expected 3 labels"):
        M.mean_estimate([1.0, 2.0, 3.0], clusters=["a", "b"])


def test_estimates_record_their_cluster_count():
    e = M.mean_estimate([1.0, 2.0, 3.0, 4.0], clusters=["a", "a", "b", "b"], resamples=50)
    assert e.to_doc() == {"value": 2.5, "ci_low": e.low, "ci_high": e.high, "n": 4, "n_clusters": 2}
    assert M.mean_estimate([], resamples=50).n_clusters == 0


# --------------------------------------------------------------------------- the scorer's clusters


@pytest.fixture(scope="module")
def zoo(tiny_preset_zoo):
    from zoo_builder.storage import load_zoo

    return load_zoo(tiny_preset_zoo)


def test_test_items_are_clustered_by_config_id(zoo):
    from benchmark.tasks import load_task, test_targets

    config_of = dict(zip(zoo.final["network_id"], zoo.final["config_id"].astype(str), strict=True))
    task = load_task("generalization", zoo, "id", all_checkpoints=True)
    a = test_targets(task)
    assert list(a["clusters"]) == [config_of[i] for i in a["ids"]]
    # every checkpoint of a network, and every replicate of its config, in one cluster
    assert len(set(a["clusters"])) < len(set(a["ids"])) < len(a["ids"])
    merging = test_targets(load_task("merging", zoo, "id"))
    assert list(merging["pair_clusters"]) == [config_of[p.id_a] for p in merging["pairs"]]
    assert all(config_of[p.id_a] == config_of[p.id_b] for p in merging["pairs"])
    assert set(merging["synthetic_clusters"]) == set(merging["synthetic_permutations"])


def test_scores_resample_configs_and_say_how_many(tmp_path, zoo):
    from benchmark.submission import write_submission
    from benchmark.tasks import load_task, test_targets
    from leaderboard.score import score_submission

    task = load_task("generalization", zoo, "id", all_checkpoints=True)
    a = test_targets(task)
    rng = np.random.default_rng(0)
    preds = {f"{i}@{int(e)}": {"test_acc": float(rng.random()), "gen_gap": float(rng.random())}
             for i, e in zip(task.test.ids, task.test.epochs, strict=True)}
    r = score_submission(write_submission(tmp_path / "s.npz", task=task, method="m", predictions=preds), zoo,
                         resamples=50)
    tau = r["metrics"]["test_acc/kendall_tau"]
    assert (tau["n"], tau["n_clusters"]) == (len(a["ids"]), len(set(a["clusters"])))
    assert tau["ci_low"] <= tau["value"] <= tau["ci_high"]
