"""Scoring a submission: validate it, then compute its metrics against the test targets.

This is the only module that reads test targets (`benchmark.tasks.test_targets`).
Primary metrics are over the original test items; twins only feed the symmetry
consistency numbers, one set per kind of twin (permutation, scale, sign: keys
``KIND/...``), so that a method's respect for each symmetry reads apart. The
primary metrics' bootstrap intervals resample clusters of items
(`leaderboard.metrics`): an item's cluster is its network's ``config_id``, so
replicates of one config and checkpoints of one network go together. A query
(retrieval) is an item; a merging pair (real or synthetic) belongs to the
config_id of its network A, which for a real pair is also B's (the pairs are
replicates of one config).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

import numpy as np

from benchmark.merging import MergePair, evaluate_pairs, evaluation_data
from benchmark.metrics import accuracy, macro_f1, r2, retrieval_per_query
from benchmark.splits import as_zoo
from benchmark.submission import (
    MAX_BYTES,
    Submission,
    SubmissionError,
    check_against_task,
    load_submission_task,
    read_with_problems,
)
from benchmark.tasks import TASK_KINDS, test_targets
from leaderboard import metrics as M
from zoo_builder.files import sha256_file
from zoo_builder.symmetry import KINDS


def strict_json(value):
    """`value` with nan as None and ±inf as "inf"/"-inf": valid JSON for the store and --json output."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float | np.floating):
        v = float(value)
        return None if np.isnan(v) else ("inf" if v == np.inf else "-inf" if v == -np.inf else v)
    return value


def _key(network_id: str, epoch: int, all_checkpoints: bool) -> str:
    return f"{network_id}@{int(epoch)}" if all_checkpoints else network_id


def _items(task, answers: dict, all_checkpoints: bool) -> tuple[list[str], dict[str, list[tuple[str, str]]]]:
    """Keys of the original test items, and kind -> (twin key, original key) of its twin items.

    Only the kinds the test part has twins of are keys, in `KINDS` order: a kind no network
    of the zoo admits has no consistency, rather than a perfect one.
    """
    originals = [_key(i, e, all_checkpoints) for i, e in zip(answers["ids"], answers["epochs"], strict=True)]
    twins: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for i, e in zip(task.test.ids, task.test.epochs, strict=True):
        if i in answers["twins"]:
            twins[answers["twin_kinds"][i]].append(
                (_key(i, e, all_checkpoints), _key(answers["twins"][i], e, all_checkpoints)))
    return originals, {k: v for k, v in twins.items() if v}


def _class_index(value, classes) -> int:
    return classes.index(value) if isinstance(value, str) else int(np.argmax(value))


def _score_generalization(sub, task, answers, seed, resamples):
    originals, twins = _items(task, answers, sub.metadata.all_checkpoints)
    boot = {"clusters": answers["clusters"], "seed": seed, "resamples": resamples}
    out, sym = {}, {}
    for t in task.targets:
        y = answers["targets"][t]
        pred = {k: sub.predictions[k][t] for k in sub.predictions}
        y_pred = np.array([pred[k] for k in originals], np.float64)
        out[f"{t}/kendall_tau"] = M.kendall_estimate(y, y_pred, **boot)
        out[f"{t}/r2"] = M.estimate(r2, y, y_pred, fast=M.fast_r2, **boot)
        for kind, pairs in twins.items():
            c = M.regression_consistency([pred[a] for a, _ in pairs], [pred[b] for _, b in pairs], y_pred)
            sym[f"{kind}/{t}/normalized_abs_diff"] = c["normalized"]
            sym[f"{kind}/{t}/mean_abs_diff"] = c["mean_abs_diff"]
    return out, sym


def _score_classification(sub, task, answers, seed, resamples):
    originals, twins = _items(task, answers, False)
    boot = {"clusters": answers["clusters"], "seed": seed, "resamples": resamples}
    out, sym = {}, {}
    for t in task.targets:
        classes = list(task.classes[t])
        pred = {k: _class_index(sub.predictions[k][t], classes) for k in sub.predictions}
        y, y_pred = answers["targets"][t], np.array([pred[k] for k in originals], np.int64)
        out[f"{t}/accuracy"] = M.estimate(accuracy, y, y_pred, **boot)
        out[f"{t}/macro_f1"] = M.estimate(macro_f1, y, y_pred, fast=M.fast_macro_f1, **boot)
        for kind, pairs in twins.items():
            sym[f"{kind}/{t}/agreement"] = M.class_agreement([pred[a] for a, _ in pairs],
                                                             [pred[b] for _, b in pairs])
    return out, sym


def _score_retrieval(sub, task, answers, seed, resamples):
    originals, twins = _items(task, answers, False)
    emb = np.stack([sub.predictions[k] for k in originals])
    per_query = retrieval_per_query(emb, answers["targets"][task.targets[0]], ks=(1, 10))
    boot = {"clusters": answers["clusters"][per_query["query"]], "seed": seed, "resamples": resamples}
    out = {"mAP": M.mean_estimate(per_query["ap"], **boot),
           "recall@1": M.mean_estimate(per_query["hit@1"], **boot),
           "recall@10": M.mean_estimate(per_query["hit@10"], **boot)}
    position = {k: j for j, k in enumerate(originals)}
    sym = {}
    for kind, pairs in twins.items():
        c = M.embedding_consistency(np.stack([sub.predictions[a] for a, _ in pairs]),
                                    np.stack([sub.predictions[b] for _, b in pairs]),
                                    emb, np.array([position[b] for _, b in pairs], np.int64))
        sym.update({f"{kind}/{k}": v for k, v in c.items()})
    return out, sym


def _score_merging(sub, task, answers, seed, resamples):
    zoo, part = task.zoo, task.test
    dataset_of = dict(zip(zoo.final["network_id"], zoo.final["dataset"], strict=True))
    pairs = [MergePair(part.arch(p.id_a), part.params(p.id_a), part.params(p.id_b),
                       sub.predictions[p.pair_id], str(dataset_of[p.id_a])) for p in answers["pairs"]]
    data = {ds: evaluation_data(zoo, ds) for ds in dict.fromkeys(p.data for p in pairs)}
    scores = evaluate_pairs(pairs, data)
    ratios = [s["acc_ratio"] for s in scores]
    barriers = [s["loss_barrier"] for s in scores]
    merged = [s["merged_acc"] for s in scores]
    correct, total, synthetic_clusters = [], [], []
    for pid, true in answers["synthetic_permutations"].items():
        synthetic_clusters.append(answers["synthetic_clusters"][pid])
        pred = sub.predictions[pid]
        correct.append(sum(int(np.sum(np.asarray(pred[n]) == np.asarray(p))) for n, p in true.items()))
        total.append(sum(len(p) for p in true.values()))
    boot = {"clusters": answers["pair_clusters"], "seed": seed, "resamples": resamples}
    out = {"acc_ratio": M.mean_estimate(ratios, **boot),
           "loss_barrier": M.mean_estimate(barriers, **boot),
           "merged_acc": M.mean_estimate(merged, **boot),
           "unit_match_acc": M.ratio_estimate(correct, total, clusters=synthetic_clusters, seed=seed,
                                              resamples=resamples)}
    return out, {}


# By task kind (`benchmark.tasks.TASK_KINDS`).
SCORERS = {"regression": _score_generalization, "classification": _score_classification,
           "retrieval": _score_retrieval, "merging": _score_merging}
PRIMARY = {
    "generalization": ("test_acc/kendall_tau", "test_acc/r2", "gen_gap/kendall_tau", "gen_gap/r2"),
    "classification": ("dataset/accuracy", "dataset/macro_f1", "optimizer/accuracy", "optimizer/macro_f1"),
    "retrieval": ("mAP", "recall@1", "recall@10"),
    "merging": ("acc_ratio", "loss_barrier", "unit_match_acc", "merged_acc"),
    "inr-classification": ("label/accuracy", "label/macro_f1"),
}
# Larger is better for every metric but these.
LOWER_IS_BETTER = frozenset({"loss_barrier"})


def score_valid(sub: Submission, task, *, seed: int = M.DEFAULT_SEED,
                resamples: int = M.DEFAULT_RESAMPLES) -> dict:
    """Metrics (with intervals), symmetry consistency and seed (None if unseeded) of a validated submission.

    The seed travels with the scores so that the leaderboard can aggregate runs over seeds.
    """
    answers = test_targets(task)
    out, sym = SCORERS[TASK_KINDS[task.name]](sub, task, answers, seed, resamples)
    return strict_json({"metrics": {k: v.to_doc() for k, v in out.items()}, "symmetry": sym,
                        "seed": sub.metadata.seed})


def score_submission(path, zoo, *, seed: int = M.DEFAULT_SEED, resamples: int = M.DEFAULT_RESAMPLES,
                     max_bytes: int = MAX_BYTES, tasks: MutableMapping | None = None) -> dict:
    """Validate the submission at `path` against its task on `zoo`, then score it.

    Args:
      path: a JSON or NPZ submission.
      zoo: a `Zoo` or its directory.
      seed, resamples: of the cluster bootstrap intervals (95% percentile).
      tasks: optional cache (task, split, all_checkpoints) -> Task, shared across calls.

    Returns a JSON-able dict: the submission's metadata, ``seed`` (None when it has
    none), ``sha256`` of the file, ``metrics`` (name -> value, ci_low, ci_high, n,
    n_clusters: the items and the clusters the bootstrap resampled),
    ``symmetry`` and ``bootstrap`` (whose ``seed`` is the bootstrap's, not the run's).
    Raises `SubmissionError` (nothing scored) listing every problem.
    """
    zoo = as_zoo(zoo)
    path = Path(path)
    digest = sha256_file(path)
    sub, problems = read_with_problems(path, max_bytes=max_bytes)
    if sub is None:
        raise SubmissionError(path, problems)
    m = sub.metadata
    key = (m.task, m.split, m.all_checkpoints)
    tasks = {} if tasks is None else tasks
    if key not in tasks:
        try:
            tasks[key] = load_submission_task(sub, zoo)
        except SubmissionError as e:
            raise SubmissionError(path, problems + e.problems) from None
    task = tasks[key]
    problems += check_against_task(sub, task)
    if not problems and sha256_file(path) != digest:
        problems.append("file: changed while it was being scored")
    if problems:
        raise SubmissionError(path, problems)
    scores = score_valid(sub, task, seed=seed, resamples=resamples)
    return {**m.to_doc(), "path": str(path), "sha256": digest, **scores,
            "bootstrap": {"seed": seed, "resamples": resamples, "confidence": M.CONFIDENCE}}
