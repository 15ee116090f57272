"""The leaderboard: submission format, validation, metrics, scoring, store and CLI."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import f1_score, label_ranking_average_precision_score, r2_score

from benchmark import metrics as task_metrics
from benchmark.merging import evaluate_pair, evaluation_data, loss_barrier
from benchmark.submission import (
    SubmissionError,
    read_submission,
    task_metadata,
    validate_submission,
    write_submission,
)
from benchmark.submission_format import FORMAT, jsonable
from leaderboard import metrics as M
from leaderboard.score import score_submission
from leaderboard.store import add_result, connect, entries
from zoo_builder.symmetry import KINDS

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def zoo(tiny_preset_zoo):
    from zoo_builder.storage import load_zoo

    return load_zoo(tiny_preset_zoo)


@pytest.fixture(scope="module")
def tasks(zoo):
    from benchmark.tasks import load_task

    cache = {}

    def get(name, split="id"):
        if (name, split) not in cache:
            cache[name, split] = load_task(name, zoo, split)
        return cache[name, split]

    return get


def answers(task):
    from benchmark.tasks import test_targets

    return test_targets(task)


def oracle(task) -> dict:
    """Predictions equal to the true targets (twins get their original's), from the scorer's answers."""
    a = answers(task)
    index = {i: k for k, i in enumerate(a["ids"])}
    of = {i: a["twins"].get(i, i) for i in task.test.ids}
    if task.name == "generalization":
        return {i: {t: float(a["targets"][t][index[of[i]]]) for t in task.targets} for i in task.test.ids}
    if task.name == "classification":
        return {i: {t: task.classes[t][a["targets"][t][index[of[i]]]] for t in task.targets}
                for i in task.test.ids}
    if task.name == "retrieval":
        # one-hot of the true dataset, plus a small per-network offset so that no two networks tie
        n = len(task.classes["dataset"])
        jitter = np.random.default_rng(0).normal(scale=1e-3, size=(len(a["ids"]), n))
        return {i: 10 * np.eye(n)[a["targets"]["dataset"][index[of[i]]]] + jitter[index[of[i]]]
                for i in task.test.ids}
    from zoo_builder.permutation import permutation_spec

    preds = {p.pair_id: {k: np.arange(v) for k, v in permutation_spec(task.test.arch(p.id_b)).sizes.items()}
             for p in task.test.pairs}
    preds.update({pid: dict(perms) for pid, perms in a["synthetic_permutations"].items()})
    return preds


def random_generalization(task, seed=1) -> dict:
    rng = np.random.default_rng(seed)
    return {i: {"test_acc": float(rng.random()), "gen_gap": float(rng.random())} for i in task.test.ids}


def doc_for(the_task, predictions, **meta) -> dict:
    """A JSON submission document, bypassing write_submission's checks (to plant problems)."""
    doc = task_metadata(the_task, method="m").to_doc()
    doc.update(meta)
    doc["predictions"] = jsonable(predictions)
    return doc


def write_doc(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def problems_of(path, zoo) -> str:
    with pytest.raises(SubmissionError) as e:
        validate_submission(path, zoo)
    assert str(e.value).startswith(str(path))
    return str(e.value)


# --------------------------------------------------------------------------- writing and reading


@pytest.mark.parametrize("name", ["generalization", "classification", "retrieval", "merging"])
def test_json_and_npz_round_trip(tmp_path, tasks, zoo, name):
    task = tasks(name)
    preds = oracle(task)
    subs = [validate_submission(write_submission(tmp_path / f"s.{ext}", task=task, method="oracle",
                                                 predictions=preds), zoo)[0] for ext in ("json", "npz")]
    assert subs[0].encoding == "json" and subs[1].encoding == "npz"
    assert subs[0].metadata == subs[1].metadata
    assert subs[0].metadata.zoo_name == zoo.name
    assert set(subs[0].predictions) == set(subs[1].predictions) == set(preds)
    for k in preds:
        a, b = subs[0].predictions[k], subs[1].predictions[k]
        if isinstance(a, dict):
            for t in a:
                assert np.array_equal(np.asarray(a[t]), np.asarray(b[t])), (k, t)
        else:
            assert np.array_equal(a, b)


def test_write_submission_refuses_invalid_predictions_and_writes_nothing(tmp_path, tasks):
    task = tasks("generalization")
    preds = random_generalization(task)
    preds.pop(task.test.ids[0])
    path = tmp_path / "s.json"
    with pytest.raises(SubmissionError, match=f"{task.test.ids[0]}: missing"):
        write_submission(path, task=task, method="m", predictions=preds)
    assert not path.exists()


def test_npz_written_by_hand_with_numpy_is_valid(tmp_path, tasks, zoo):
    """The docs' recipe: np.savez with a JSON metadata string, ids and one array per target."""
    task = tasks("retrieval")
    meta = task_metadata(task, method="numpy-recipe").to_doc()
    emb = np.random.default_rng(0).normal(size=(len(task.test.ids), 5)).astype(np.float32)
    path = tmp_path / "s.npz"
    np.savez(path, metadata=np.array(json.dumps(meta)), ids=np.array(task.test.ids), embedding=emb)
    sub, _ = validate_submission(path, zoo)
    assert sub.metadata.method == "numpy-recipe" and len(sub.predictions) == len(task.test.ids)


# --------------------------------------------------------------------------- malformed submissions


def test_unknown_format_refused(tmp_path, zoo):
    path = tmp_path / "s.json"
    path.write_bytes(b"id,test_acc\nabc,0.5\n")
    assert "not a zoobench submission" in problems_of(path, zoo)


def test_unparsable_json_refused(tmp_path, zoo):
    path = tmp_path / "s.json"
    path.write_text('{"format": "zoobench-submission", "predictions": {', encoding="utf-8")
    assert "not valid JSON" in problems_of(path, zoo)


def test_file_over_size_limit_refused_before_parsing(tmp_path, monkeypatch):
    import benchmark.submission_format as S

    def never(*args, **kwargs):
        raise AssertionError("parsed a file over the size limit")

    monkeypatch.setattr(S, "_parse_json", never)
    monkeypatch.setattr(S, "_parse_npz", never)
    path = tmp_path / "s.json"
    path.write_text("{" + " " * 2000 + "}", encoding="utf-8")
    with pytest.raises(SubmissionError, match="over the 1000-byte limit"):
        read_submission(path, max_bytes=1000)


def test_missing_unknown_and_duplicate_ids(tmp_path, tasks, zoo):
    task = tasks("generalization")
    preds = random_generalization(task)
    gone = task.test.ids[0]
    preds.pop(gone)
    preds["not-a-network"] = {"test_acc": 0.5, "gen_gap": 0.1}
    text = json.dumps(doc_for(task, preds))
    dup = task.test.ids[1]
    extra = f'"{dup}": {{"test_acc": 0.1, "gen_gap": 0.0}}, '
    text = text.replace('"predictions": {', '"predictions": {' + extra, 1)
    msg = problems_of(_write_text(tmp_path / "s.json", text), zoo)
    assert f"{gone}: missing" in msg
    assert "not-a-network: unknown id" in msg
    assert f"{dup}: duplicate key" in msg

    # duplicate ids in an NPZ's ids array
    ids = list(task.test.ids) + [task.test.ids[2]]
    path = tmp_path / "d.npz"
    np.savez(path, metadata=np.array(json.dumps(task_metadata(task, method="m").to_doc())),
             ids=np.array(ids), test_acc=np.zeros(len(ids)), gen_gap=np.zeros(len(ids)))
    assert f"{task.test.ids[2]}: duplicate id in ids" in problems_of(path, zoo)


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_nan_and_inf_refused_and_every_problem_listed(tmp_path, tasks, zoo):
    task = tasks("generalization")
    preds = random_generalization(task)
    a, b, c = task.test.ids[:3]
    preds[a]["test_acc"] = float("nan")
    preds[b]["gen_gap"] = float("inf")
    preds[c]["test_acc"] = "high"
    msg = problems_of(write_doc(tmp_path / "s.json", doc_for(task, preds)), zoo)
    assert f"{a}.test_acc: expected a finite number, got nan" in msg
    assert f"{b}.gen_gap: expected a finite number, got inf" in msg
    assert f"{c}.test_acc: expected a number, got str" in msg
    assert "(3 problems)" in msg


def test_wrong_shapes_and_types_in_npz(tmp_path, tasks, zoo):
    task = tasks("generalization")
    n = len(task.test.ids)
    path = tmp_path / "s.npz"
    np.savez(path, metadata=np.array(json.dumps(task_metadata(task, method="m").to_doc())),
             ids=np.array(task.test.ids), test_acc=np.zeros(n - 1), gen_gap=np.zeros(n), extra=np.zeros(3))
    msg = problems_of(path, zoo)
    assert f"test_acc: expected {n} rows (one per id), got shape ({n - 1},)" in msg
    assert "extra: unknown member" in msg
    np.savez(path, metadata=np.array(json.dumps(task_metadata(task, method="m").to_doc())),
             ids=np.arange(n), test_acc=np.zeros(n), gen_gap=np.zeros(n))
    assert "ids: expected a 1-d unicode array" in problems_of(path, zoo)


def test_class_outside_the_tasks_classes(tmp_path, tasks, zoo):
    task = tasks("classification")
    preds = oracle(task)
    a, b, c = task.test.ids[:3]
    preds[a]["dataset"] = "imagenet"
    preds[b]["optimizer"] = [1.0] + [0.0] * len(task.classes["optimizer"])
    preds[c]["optimizer"] = [0.7] * len(task.classes["optimizer"])
    msg = problems_of(write_doc(tmp_path / "s.json", doc_for(task, preds)), zoo)
    assert f"{a}.dataset: class 'imagenet' is not one of the task's classes" in msg
    assert f"{b}.optimizer: expected {len(task.classes['optimizer'])} probabilities" in msg
    assert f"{c}.optimizer: probabilities must be >= 0 and sum to 1" in msg


def test_embedding_of_inconsistent_dimension(tmp_path, tasks, zoo):
    task = tasks("retrieval")
    preds = {i: np.zeros(4) for i in task.test.ids}
    odd = task.test.ids[3]
    preds[odd] = np.zeros(7)
    preds[task.test.ids[4]] = [[1.0, 2.0]]
    msg = problems_of(write_doc(tmp_path / "s.json", doc_for(task, preds)), zoo)
    assert f"{odd}: embedding of length 7, but most have length 4" in msg
    assert f"{task.test.ids[4]}: expected an embedding" in msg


def test_invalid_permutations(tmp_path, tasks, zoo):
    task = tasks("merging")
    preds = oracle(task)
    pairs = list(preds)
    p0, p1, p2 = pairs[:3]
    preds[p0]["P_0"] = np.zeros_like(preds[p0]["P_0"])            # not a bijection
    preds[p1]["P_0"] = np.arange(len(preds[p1]["P_0"]) + 1)        # wrong length
    preds[p2].pop("P_0")                                           # missing layer
    msg = problems_of(write_doc(tmp_path / "s.json", doc_for(task, preds)), zoo)
    assert f"{p0}.P_0: not a bijection" in msg
    assert f"{p1}.P_0: expected a permutation of 0..{len(preds[p1]['P_0']) - 2}" in msg
    assert f"{p2}.P_0: missing layer" in msg


def test_wrong_zoo_split_and_task(tmp_path, tasks, zoo):
    task = tasks("generalization")
    preds = random_generalization(task)
    doc = doc_for(task, preds, zoo={"name": zoo.name, "weights_fingerprint": "0" * 64})
    msg = problems_of(write_doc(tmp_path / "a.json", doc), zoo)
    assert "zoo.weights_fingerprint: the submission was made for '0000" in msg
    doc = doc_for(task, preds, split_fingerprint="f" * 64)
    assert "split_fingerprint: the submission was made for 'ffff" in problems_of(
        write_doc(tmp_path / "b.json", doc), zoo)
    # a submission for another split: its split fingerprint and ids are not those of this zoo's split
    doc = doc_for(task, preds, split="ood-width")
    msg = problems_of(write_doc(tmp_path / "c.json", doc), zoo)
    assert f"split_fingerprint: the submission was made for {task.split_fingerprint!r}" in msg
    assert "unknown id; not a test item" in msg
    # checked against another task than the one it names
    retrieval = tasks("retrieval")
    path = write_submission(tmp_path / "d.json", task=retrieval, method="m",
                            predictions={i: np.zeros(3) for i in retrieval.test.ids})
    with pytest.raises(SubmissionError, match="task: the submission was made for 'retrieval'"):
        validate_submission(path, task=task)
    doc = doc_for(task, preds, task="segmentation", format="other")
    msg = problems_of(write_doc(tmp_path / "e.json", doc), zoo)
    assert "task: expected one of" in msg and f"format: expected {FORMAT!r}" in msg


# --------------------------------------------------------------------------- pickles are never loaded


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickles_refused_and_never_loaded(tmp_path, zoo):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"predictions": _Evil(marker)})
    assert payload[:1] == b"\x80"
    for name in ("s.pkl", "s.json", "s.npz"):
        path = tmp_path / name
        path.write_bytes(payload)
        assert "pickle" in problems_of(path, zoo)
    path = tmp_path / "obj.npz"
    np.savez(path, metadata=np.array("{}"), ids=np.array(["a"]), embedding=np.array([_Evil(marker)], object))
    msg = problems_of(path, zoo)
    assert "embedding: an object array (pickled); refused unloaded" in msg
    assert not marker.exists()
    # the marker machinery works: loading the pickle would have created it
    pickle.loads(payload)
    assert marker.exists()


# --------------------------------------------------------------------------- metrics


def test_kendall_tau_hand_computed_and_scipy():
    y, p = [1, 2, 3, 4], [1, 3, 2, 4]
    # 6 pairs: 5 concordant, 1 discordant, no ties: (5 - 1) / 6
    assert task_metrics.kendall_tau(y, p) == pytest.approx(4 / 6)
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 5, 15).astype(float), rng.integers(0, 5, 15).astype(float)  # with ties
        assert task_metrics.kendall_tau(y, p) == pytest.approx(kendalltau(y, p, variant="b").statistic)
    assert task_metrics.kendall_tau([1, 2, 3], [5, 5, 5]) == 0.0


def test_r2_accuracy_macro_f1_match_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y, p = rng.normal(size=12), rng.normal(size=12)
        assert task_metrics.r2(y, p) == pytest.approx(r2_score(y, p)) == pytest.approx(M.fast_r2(y, p))
        c, d = rng.integers(0, 4, 12), rng.integers(0, 4, 12)
        expected = f1_score(c, d, labels=np.unique(c), average="macro", zero_division=0.0)
        assert task_metrics.macro_f1(c, d) == pytest.approx(expected) == pytest.approx(M.fast_macro_f1(c, d))
    assert M.fast_r2([1.0, 1.0], [1.0, 1.0]) == task_metrics.r2([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert M.fast_r2([1.0, 1.0], [1.0, 2.0]) == task_metrics.r2([1.0, 1.0], [1.0, 2.0]) == 0.0
    assert task_metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    # y = [0, 0, 1], pred = [0, 1, 1]: F1_0 = 2/(2+0+1), F1_1 = 2/(2+1+0)
    assert task_metrics.macro_f1([0, 0, 1], [0, 1, 1]) == pytest.approx(2 / 3)


def test_map_and_recall_on_a_toy_ranking():
    # query 0 at angle 0, gallery 1..4 at angles 0.1..0.4 rad (cosine ranks by angle; lengths do not
    # matter, so scale them); relevant (label a): items 2, 4
    angles = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    emb = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1.0], [7.0], [0.5], [3.0], [2.0]])
    labels = np.array(["a", "b", "a", "b", "a"])
    r = task_metrics.retrieval_per_query(emb, labels, ks=(1, 2))
    q0 = list(r["query"]).index(0)
    # relevant at ranks 2 and 4: AP = (1/2 + 2/4) / 2
    assert r["ap"][q0] == pytest.approx(0.5)
    assert r["hit@1"][q0] == 0.0 and r["hit@2"][q0] == 1.0
    # the per-query formula of sklearn's label ranking AP, with scores = -distance
    d = task_metrics.distances(emb)
    for j, q in enumerate(r["query"]):
        g = np.arange(5) != q
        expected = label_ranking_average_precision_score([labels[g] == labels[q]], [-d[q, g]])
        assert r["ap"][j] == pytest.approx(expected)


def test_ties_are_pessimistic():
    labels = np.array([0, 0, 1, 1, 1, 0])
    r = task_metrics.retrieval_per_query(np.zeros((6, 3)), labels)
    # constant embeddings: chance level |R|/|G| per query, and no hit@1 (5 gallery items tied)
    expected = [(np.sum(labels == labels[q]) - 1) / 5 for q in range(6)]
    assert np.allclose(r["ap"], expected)
    assert not r["hit@1"].any()


def test_loss_barrier_on_a_toy_path():
    lam = np.linspace(0, 1, 11)
    loss = 1.0 + lam + 0.5 * np.sin(np.pi * lam)  # chord 1 + lam, bump of 0.5 at lam = 0.5
    assert loss_barrier(lam, loss) == pytest.approx(0.5)
    assert loss_barrier(lam, 1.0 + lam) == pytest.approx(0.0)
    assert loss_barrier(lam, np.r_[loss[:5], np.nan, loss[6:]]) == float("inf")


def test_bootstrap_reproducible_by_seed():
    rng = np.random.default_rng(2)
    y, p = rng.normal(size=30), rng.normal(size=30)
    a = M.estimate(task_metrics.kendall_tau, y, p, seed=0)
    b = M.estimate(task_metrics.kendall_tau, y, p, seed=0)
    c = M.estimate(task_metrics.kendall_tau, y, p, seed=1)
    assert a == b and (a.low, a.high) != (c.low, c.high)
    assert a.low <= a.value <= a.high
    slow = M.estimate(task_metrics.r2, y, p, seed=0, resamples=200)
    fast = M.estimate(task_metrics.r2, y, p, seed=0, resamples=200, fast=M.fast_r2)
    assert (slow.low, slow.high) == pytest.approx((fast.low, fast.high))
    pooled = M.ratio_estimate([3, 1], [4, 4])
    assert pooled.value == 0.5


def test_symmetry_consistency_functions():
    c = M.regression_consistency([1.0, 2.0], [1.5, 2.0], [0.0, 1.0, 2.0, 3.0])
    assert c["mean_abs_diff"] == pytest.approx(0.25)
    assert c["normalized"] == pytest.approx(0.25 / np.std([0.0, 1.0, 2.0, 3.0]))
    assert M.class_agreement([0, 1, 2], [0, 1, 1]) == pytest.approx(2 / 3)
    originals = np.array([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]])
    e = M.embedding_consistency(originals[[0, 2]] + 0.1, originals[[0, 2]], originals, np.array([0, 2]))
    assert e["nearest_original"] == 1.0 and 0.99 < e["mean_cosine"] <= 1.0


# --------------------------------------------------------------------------- scoring


def test_oracle_scores_tau_one_and_random_near_zero(tmp_path, tasks, zoo):
    task = tasks("generalization")
    best = score_submission(write_submission(tmp_path / "o.json", task=task, method="oracle",
                                             predictions=oracle(task)), zoo)
    for t in task.targets:
        assert best["metrics"][f"{t}/kendall_tau"]["value"] == pytest.approx(1.0)
        assert best["metrics"][f"{t}/r2"]["value"] == pytest.approx(1.0)
        for kind in KINDS:  # the tiny zoo's id split has twins of every kind
            assert best["symmetry"][f"{kind}/{t}/normalized_abs_diff"] == 0.0
    n = len(answers(task)["ids"])
    assert best["metrics"]["test_acc/kendall_tau"]["n"] == n
    taus = []
    for seed in range(5):
        r = score_submission(write_submission(tmp_path / f"r{seed}.npz", task=task, method="random",
                                              predictions=random_generalization(task, seed)), zoo,
                             resamples=100)
        taus.append(r["metrics"]["test_acc/kendall_tau"]["value"])
    assert abs(np.mean(taus)) < 0.3


def test_consistency_is_reported_per_kind_of_twin(tmp_path, tasks, zoo):
    """A method that respects permutations and sign flips but not rescaling is caught on scale twins only."""
    task = tasks("generalization")
    kinds = answers(task)["twin_kinds"]
    preds = oracle(task)
    for twin, kind in kinds.items():
        if kind == "scale":
            preds[twin] = {t: v + 0.25 for t, v in preds[twin].items()}
    r = score_submission(write_submission(tmp_path / "s.json", task=task, method="scale-blind",
                                          predictions=preds), zoo, resamples=20)
    for t in task.targets:
        assert r["symmetry"][f"scale/{t}/mean_abs_diff"] == pytest.approx(0.25)
        assert r["symmetry"][f"permutation/{t}/mean_abs_diff"] == 0.0
        assert r["symmetry"][f"sign/{t}/mean_abs_diff"] == 0.0
        assert r["metrics"][f"{t}/kendall_tau"]["value"] == pytest.approx(1.0)  # twins are not primary items


def test_oracle_classification_retrieval_and_merging(tmp_path, tasks, zoo):
    task = tasks("classification")
    r = score_submission(write_submission(tmp_path / "c.json", task=task, method="oracle",
                                          predictions=oracle(task)), zoo, resamples=50)
    assert r["metrics"]["dataset/accuracy"]["value"] == 1.0 == r["metrics"]["optimizer/macro_f1"]["value"]
    assert all(r["symmetry"][f"{kind}/dataset/agreement"] == 1.0 for kind in KINDS)
    task = tasks("retrieval")
    r = score_submission(write_submission(tmp_path / "r.npz", task=task, method="oracle",
                                          predictions=oracle(task)), zoo, resamples=50)
    assert r["metrics"]["mAP"]["value"] == 1.0 and r["metrics"]["recall@1"]["value"] == 1.0
    assert [r["symmetry"][f"{kind}/mean_cosine"] for kind in KINDS] == pytest.approx([1.0] * 3)
    task = tasks("merging")
    preds = oracle(task)
    r = score_submission(write_submission(tmp_path / "m.npz", task=task, method="oracle",
                                          predictions=preds), zoo, resamples=50)
    assert r["metrics"]["unit_match_acc"]["value"] == 1.0
    # Scored over the real pairs, aligned as submitted (the identity): the per-pair definition's mean.
    # (A barrier is never negative, so `>= 0` alone could not fail.)
    dataset_of = dict(zip(zoo.final["network_id"], zoo.final["dataset"], strict=True))
    part = task.test
    barriers = [evaluate_pair(part.arch(p.id_a), part.params(p.id_a), part.params(p.id_b), preds[p.pair_id],
                              *evaluation_data(zoo, dataset_of[p.id_a]))["loss_barrier"]
                for p in answers(task)["pairs"]]
    assert r["metrics"]["loss_barrier"]["value"] == pytest.approx(np.mean(barriers), abs=1e-4)
    assert r["metrics"]["acc_ratio"]["n"] == len(task.test.pairs)
    assert r["symmetry"] == {}


# --------------------------------------------------------------------------- store


def test_rescoring_the_same_file_stores_one_row(tmp_path, tasks, zoo):
    task = tasks("generalization")
    preds = random_generalization(task)
    path = write_submission(tmp_path / "s.json", task=task, method="m", predictions=preds)
    conn = connect(tmp_path / "lb.sqlite")
    first = add_result(conn, score_submission(path, zoo, resamples=50))
    second = add_result(conn, score_submission(path, zoo, resamples=50))
    assert first[1] is True and second == (first[0], False)
    assert len(entries(conn)) == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


_WRITER = """
import sys
from leaderboard.store import add_result, connect
for k in range(30):
    conn = connect(sys.argv[1])  # a connection per row: opening races too
    add_result(conn, {"method": sys.argv[2], "version": "0", "description": "", "task": "generalization",
                      "split": "id", "all_checkpoints": False,
                      "zoo": {"name": "z", "weights_fingerprint": "f"},
                      "split_fingerprint": "s", "metrics": {}, "symmetry": {}, "bootstrap": {},
                      "sha256": f"{sys.argv[2]}-{k}"})
    conn.close()
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    db = tmp_path / "lb.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), name], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for name in "ab"]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 60
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def _cli(*args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "zoobench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_scoring_in_two_processes_at_once(tmp_path, tasks, tiny_preset_zoo):
    task = tasks("generalization")
    files = [write_submission(tmp_path / f"s{k}.json", task=task, method=f"m{k}",
                              predictions=random_generalization(task, k)) for k in range(2)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "zoobench.cli", "leaderboard", "score", str(f),
                               "--zoo", str(tiny_preset_zoo), "--resamples", "50", "--json"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for f in files]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    conn = sqlite3.connect(tmp_path / "leaderboard.sqlite")
    assert sorted(r[0] for r in conn.execute("SELECT method FROM submissions")) == ["m0", "m1"]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_cli_score_and_show_json(tmp_path, tasks, tiny_preset_zoo):
    task = tasks("generalization")
    good = write_submission(tmp_path / "good.json", task=task, method="oracle", predictions=oracle(task))
    bad = tmp_path / "bad.json"
    bad.write_bytes(pickle.dumps([1, 2]))
    db = tmp_path / "x.sqlite"
    r = _cli("leaderboard", "score", str(good), str(bad), "--zoo", str(tiny_preset_zoo), "--db", str(db),
             "--resamples", "50", "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert doc["ok"] is False
    ok, refused = doc["results"]
    assert ok["ok"] and ok["stored"] and ok["metrics"]["test_acc/kendall_tau"]["value"] == pytest.approx(1.0)
    assert not refused["ok"] and "pickle" in refused["error"]
    r = _cli("leaderboard", "show", "--db", str(db), "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tables = json.loads(r.stdout)["tables"]
    assert [(t["task"], [row["method"] for row in t["rows"]]) for t in tables] == [
        ("generalization", ["oracle"])]
    r = _cli("leaderboard", "show", "--db", str(db), "--format", "markdown", cwd=tmp_path)
    assert "| oracle 0 | **1.000 ± 0.000**" in r.stdout


def test_json_schema_accepts_a_written_submission(tmp_path, tasks):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "benchmark" / "submission.schema.json").read_text(encoding="utf-8"))
    for name in ("generalization", "classification", "retrieval", "merging"):
        task = tasks(name)
        path = write_submission(tmp_path / f"{name}.json", task=task, method="m", predictions=oracle(task))
        jsonschema.validate(json.loads(path.read_text(encoding="utf-8")), schema)


def test_json_schema_catches_what_the_builtin_checks_catch(tmp_path, tasks, monkeypatch):
    """With jsonschema installed, a structurally wrong document also fails the schema."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "benchmark" / "submission.schema.json").read_text(encoding="utf-8"))
    task = tasks("generalization")
    doc = doc_for(task, random_generalization(task))
    doc["predictions"][task.test.ids[0]] = {"test_acc": "high", "gen_gap": 0.0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_all_checkpoints_submission_uses_id_at_epoch_keys(tmp_path, zoo):
    from benchmark.tasks import load_task

    task = load_task("generalization", zoo, "id", all_checkpoints=True)
    a = answers(task)
    truth = {(i, int(e)): float(v) for i, e, v in zip(a["ids"], a["epochs"], a["targets"]["test_acc"],
                                                       strict=True)}
    preds = {f"{i}@{int(e)}": {"test_acc": truth[a["twins"].get(i, i), int(e)], "gen_gap": 0.0}
             for i, e in zip(task.test.ids, task.test.epochs, strict=True)}
    path = write_submission(tmp_path / "s.npz", task=task, method="m", predictions=preds)
    r = score_submission(path, zoo, resamples=50)
    assert r["all_checkpoints"] is True
    assert r["metrics"]["test_acc/kendall_tau"]["value"] == pytest.approx(1.0)
    assert r["metrics"]["test_acc/kendall_tau"]["n"] == len(a["ids"]) > len(set(a["ids"]))
    assert r["symmetry"]["permutation/test_acc/mean_abs_diff"] == 0.0
    bad = {k.split("@")[0]: v for k, v in preds.items()}
    with pytest.raises(SubmissionError, match="expected 'NETWORK_ID@EPOCH'"):
        write_submission(tmp_path / "t.json", task=task, method="m", predictions=bad)


def _row(method, barrier, ratio, sha):
    m = {"loss_barrier": {"value": barrier, "ci_low": barrier - 0.1, "ci_high": barrier + 0.1, "n": 5},
         "acc_ratio": {"value": ratio, "ci_low": None, "ci_high": None, "n": 5}}
    return {"method": method, "version": "1", "description": "", "task": "merging", "split": "id",
            "all_checkpoints": False, "zoo": {"name": "z", "weights_fingerprint": "f" * 64},
            "split_fingerprint": "s", "metrics": m, "symmetry": {}, "bootstrap": {}, "sha256": sha}


def test_show_tables_bold_the_best_and_keep_the_latest_row(tmp_path):
    from leaderboard.table import render

    conn = connect(tmp_path / "lb.sqlite")
    add_result(conn, _row("a", 0.5, 0.9, "1"))
    add_result(conn, _row("b", 0.2, 0.8, "2"))
    add_result(conn, _row("a", 0.4, 0.95, "3"))  # a newer a 1 replaces the first
    rows = entries(conn, task="merging")
    assert entries(conn, task="retrieval") == []
    conn.close()
    md = render(rows, "markdown")
    # columns: acc_ratio, loss_barrier (lower is better), unit_match_acc, merged_acc, seeds, symmetry
    assert "| a 1 | **0.950** | 0.400 ± 0.100 | – | – |  | n/a | n/a | n/a |" in md
    assert "| b 1 | 0.800 | **0.200 ± 0.100** | – | – |  | n/a | n/a | n/a |" in md
    text = render(rows, "text")
    assert "merging / id on zoo z" in text and "consistency/scale" in text
    assert json.loads(render(rows, "json"))["tables"][0]["metrics"][:2] == ["acc_ratio", "loss_barrier"]


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    path = tmp_path / "lb.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ValueError, match="lb.sqlite: not a usable leaderboard database"):
        connect(path)
