"""The tasks' metrics as point values (docs/tasks.md defines them).

One definition for everyone who computes them: the scorer (`leaderboard.metrics`
adds bootstrap intervals) and the methods that select models on validation.
Every metric is a pure function of arrays.

Retrieval ties are pessimistic, as docs/tasks.md says: a gallery item tied in
distance with others is ranked after all of them, so constant embeddings score
chance level and no method gains from ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import kendalltau
from sklearn.metrics import f1_score, label_ranking_average_precision_score, r2_score


def kendall_tau(y, y_pred) -> float:
    """Kendall's τ-b (scipy); 0 where undefined (constant predictions or targets, fewer than 2 items)."""
    y, y_pred = np.asarray(y, np.float64), np.asarray(y_pred, np.float64)
    if len(y) < 2:
        return 0.0
    tau = kendalltau(y, y_pred, variant="b").statistic
    return float(tau) if np.isfinite(tau) else 0.0


def r2(y, y_pred) -> float:
    """R² (sklearn r2_score: 1 − SS_res/SS_tot; may be negative; constant y gives 1 if exact else 0)."""
    if len(y) < 2:
        return 0.0
    return float(r2_score(np.asarray(y, np.float64), np.asarray(y_pred, np.float64)))


def accuracy(y, y_pred) -> float:
    """Fraction of items whose predicted class index is the true one."""
    return float(np.mean(np.asarray(y) == np.asarray(y_pred))) if len(y) else float("nan")


def macro_f1(y, y_pred) -> float:
    """Mean over the classes present in `y` of 2·TP/(2·TP + FP + FN) (sklearn f1_score, labels=unique(y))."""
    y, y_pred = np.asarray(y), np.asarray(y_pred)
    if not len(y):
        return float("nan")
    return float(f1_score(y, y_pred, labels=np.unique(y), average="macro", zero_division=0.0))


def l2_normalise(embeddings) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): retrieval ranks by cosine similarity."""
    e = np.asarray(embeddings, np.float64)
    norms = np.linalg.norm(e, axis=-1, keepdims=True)
    return np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)


def distances(embeddings) -> np.ndarray:
    """Pairwise Euclidean distances (n, n) between L2-normalised embeddings (n, d).

    On unit vectors ``d² = 2 − 2·cos``, so ranking by this distance is ranking by
    cosine similarity, as the retrieval task defines it.
    """
    e = l2_normalise(embeddings)
    return cross_distances(e, e)


def cross_distances(a, b) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) (scipy cdist: each pair summed on its own, so equal
    embeddings tie exactly)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return cdist(a, b) if len(a) and len(b) else np.zeros((len(a), len(b)))


def retrieval_per_query(embeddings, labels, ks: Sequence[int] = (1, 10)) -> dict[str, np.ndarray]:
    """Per-query AP and hit@k of each item queried against all the others (ties pessimistic).

    For query q, gallery G = every other item and R = those with q's label:
    ``AP(q) = mean_{r∈R} |{r'∈R: d(r') ≤ d(r)}| / |{g∈G: d(g) ≤ d(r)}|``, which is
    scikit-learn's label ranking average precision of the row (scores −d), and
    ``hit@k(q) = [|{g∈G: d(g) ≤ min_{r∈R} d(r)}| ≤ k]``. Queries with empty R are
    dropped; ``query`` gives the indices of the kept ones.
    """
    labels = np.asarray(labels)
    d = distances(embeddings)
    n = len(labels)
    ap, hits, kept = [], {k: [] for k in ks}, []
    for q in range(n):
        gallery = np.arange(n) != q
        rel = labels[gallery] == labels[q]
        if not rel.any():
            continue
        dg = d[q, gallery]
        ap.append(float(label_ranking_average_precision_score(rel[None], -dg[None])))
        first = int((dg <= dg[rel].min()).sum())  # pessimistic rank of the nearest relevant item
        for k in ks:
            hits[k].append(float(first <= k))
        kept.append(q)
    out = {"ap": np.array(ap), "query": np.array(kept, np.int64)}
    out.update({f"hit@{k}": np.array(v) for k, v in hits.items()})
    return out
