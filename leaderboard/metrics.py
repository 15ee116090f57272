"""The leaderboard's metrics (docs/tasks.md defines them) with bootstrap confidence intervals.

Every metric is a pure function of arrays. `bootstrap` resamples the test
networks (items, queries or pairs) with replacement and reports the 95%
percentile interval; it is seeded, so a score is reproducible.

Retrieval ties are pessimistic, as docs/tasks.md says: a gallery item tied in
distance with others is ranked after all of them, so constant embeddings score
chance level and no method gains from ties.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import kendalltau
from sklearn.metrics import f1_score, r2_score

DEFAULT_SEED = 0
DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A metric's value on the test set and its bootstrap percentile interval."""

    value: float
    low: float
    high: float
    n: int

    def to_doc(self) -> dict:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "n": self.n}


# --------------------------------------------------------------------------- point metrics


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


def fast_r2(y, y_pred) -> float:
    """`r2` without sklearn's overhead (same edge cases), for bootstrap resamples."""
    y, y_pred = np.asarray(y, np.float64), np.asarray(y_pred, np.float64)
    if len(y) < 2:
        return 0.0
    ss_res = float(np.sum((y - y_pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


def accuracy(y, y_pred) -> float:
    """Fraction of items whose predicted class index is the true one."""
    return float(np.mean(np.asarray(y) == np.asarray(y_pred))) if len(y) else float("nan")


def macro_f1(y, y_pred) -> float:
    """Mean over the classes present in `y` of 2·TP/(2·TP + FP + FN) (sklearn f1_score, labels=unique(y))."""
    y, y_pred = np.asarray(y), np.asarray(y_pred)
    if not len(y):
        return float("nan")
    return float(f1_score(y, y_pred, labels=np.unique(y), average="macro", zero_division=0.0))


def fast_macro_f1(y, y_pred) -> float:
    """`macro_f1` without sklearn's overhead, for bootstrap resamples."""
    y, y_pred = np.asarray(y), np.asarray(y_pred)
    if not len(y):
        return float("nan")
    f1 = []
    for c in np.unique(y):
        tp = np.sum((y == c) & (y_pred == c))
        fp = np.sum((y != c) & (y_pred == c))
        fn = np.sum((y == c) & (y_pred != c))
        f1.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))


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
    """Euclidean distances (len(a), len(b)), row by row: exact, so equal embeddings tie exactly."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.stack([np.sqrt(((b - row) ** 2).sum(axis=1)) for row in a]) if len(a) else np.zeros((0, len(b)))


def retrieval_per_query(embeddings, labels, ks: Sequence[int] = (1, 10)) -> dict[str, np.ndarray]:
    """Per-query AP and hit@k of each item queried against all the others (ties pessimistic).

    For query q, gallery G = every other item and R = those with q's label:
    ``AP(q) = mean_{r∈R} |{r'∈R: d(r') ≤ d(r)}| / |{g∈G: d(g) ≤ d(r)}|`` and
    ``hit@k(q) = [min_{r∈R} |{g∈G: d(g) ≤ d(r)}| ≤ k]``. Queries with empty R are
    dropped; ``query`` gives the indices of the kept ones.
    """
    labels = np.asarray(labels)
    d = distances(embeddings)
    n = len(labels)
    ap, hits, kept = [], {k: [] for k in ks}, []
    for q in range(n):
        gallery = np.arange(n) != q
        rel = gallery & (labels == labels[q])
        if not rel.any():
            continue
        dg, dr = d[q, gallery], d[q, rel]
        # pessimistic rank of each relevant item: every gallery item at distance <= its own
        rank = (dg[None, :] <= dr[:, None]).sum(axis=1)
        rel_rank = (dr[None, :] <= dr[:, None]).sum(axis=1)
        ap.append(float(np.mean(rel_rank / rank)))
        for k in ks:
            hits[k].append(float(rank.min() <= k))
        kept.append(q)
    out = {"ap": np.array(ap), "query": np.array(kept, np.int64)}
    out.update({f"hit@{k}": np.array(v) for k, v in hits.items()})
    return out


def loss_barrier(lambdas, losses) -> float:
    """See `benchmark.merging.loss_barrier` (re-exported: the scorer's metric)."""
    from benchmark.merging import loss_barrier as barrier  # noqa: PLC0415

    return barrier(lambdas, losses)


# --------------------------------------------------------------------------- bootstrap


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, *, seed: int = DEFAULT_SEED,
              resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over `resamples` resamples of range(n) with replacement.

    Seeded (``np.random.default_rng(seed)``), so the same inputs give the same
    interval. Resamples where the statistic is nan are left out; (nan, nan) if
    all are, or n is 0.
    """
    if n == 0 or resamples < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    stats = np.array([statistic(i) for i in idx], np.float64)
    stats = stats[~np.isnan(stats)]
    if not len(stats):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [alpha, 100 - alpha])
    return float(low), float(high)


def estimate(metric: Callable, *arrays, seed: int = DEFAULT_SEED, resamples: int = DEFAULT_RESAMPLES,
             fast: Callable | None = None) -> Estimate:
    """`metric(*arrays)` on all items, with the bootstrap interval over items (rows of every array).

    `fast`, if given, is an equal but quicker function used for the resamples.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    value = metric(*arrays) if n else float("nan")
    fast = fast or metric
    low, high = bootstrap(lambda i: fast(*(a[i] for a in arrays)), n, seed=seed, resamples=resamples)
    return Estimate(float(value), low, high, n)


def mean_estimate(values, *, seed: int = DEFAULT_SEED, resamples: int = DEFAULT_RESAMPLES) -> Estimate:
    """Mean of per-item values (nan items ignored: nanmean), with its bootstrap interval."""
    v = np.asarray(values, np.float64)

    def mean(x):
        x = x[~np.isnan(x)]
        return float(np.mean(x)) if len(x) else float("nan")

    low, high = bootstrap(lambda i: mean(v[i]), len(v), seed=seed, resamples=resamples)
    return Estimate(mean(v), low, high, len(v))


def ratio_estimate(numerators, denominators, *, seed: int = DEFAULT_SEED,
                   resamples: int = DEFAULT_RESAMPLES) -> Estimate:
    """Pooled ratio ``Σ num / Σ den`` over items (matched units / units over pairs), with its interval."""
    num, den = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)

    def ratio(i):
        total = den[i].sum()
        return float(num[i].sum() / total) if total else float("nan")

    low, high = bootstrap(ratio, len(num), seed=seed, resamples=resamples)
    return Estimate(ratio(np.arange(len(num))), low, high, len(num))


# --------------------------------------------------------------------------- symmetry consistency


def regression_consistency(pred_twin, pred_original, pred_originals_all) -> dict[str, float]:
    """Mean |ŷ(twin) − ŷ(original)|, raw and divided by the std of the predictions on the originals.

    A permutation-invariant method scores 0. With constant predictions the
    normalised value is 0 if the twins agree, else inf.
    """
    diff = np.abs(np.asarray(pred_twin, np.float64) - np.asarray(pred_original, np.float64))
    if not len(diff):
        return {"mean_abs_diff": float("nan"), "normalized": float("nan")}
    mad = float(diff.mean())
    std = float(np.std(np.asarray(pred_originals_all, np.float64)))
    normalized = mad / std if std > 0 else (0.0 if mad == 0 else float("inf"))
    return {"mean_abs_diff": mad, "normalized": normalized}


def class_agreement(pred_twin, pred_original) -> float:
    """Fraction of twins given their original's class (1 for a permutation-invariant method)."""
    a, b = np.asarray(pred_twin), np.asarray(pred_original)
    return float(np.mean(a == b)) if len(a) else float("nan")


def embedding_consistency(twin_emb, original_emb, originals_emb, original_index) -> dict[str, float]:
    """Nearest-original rate (docs/tasks.md) and mean cosine similarity of twin and original embeddings.

    ``nearest_original``: fraction of twins whose original is strictly the nearest
    (cosine, as retrieval ranks) of all original test networks (ties pessimistic: a tie is a miss).
    """
    t = np.asarray(twin_emb, np.float64)
    o = np.asarray(original_emb, np.float64)
    if not len(t):
        return {"nearest_original": float("nan"), "mean_cosine": float("nan")}
    all_o = np.asarray(originals_emb, np.float64)
    d = cross_distances(l2_normalise(t), l2_normalise(all_o))
    own = d[np.arange(len(t)), original_index]
    nearest = float(np.mean((d <= own[:, None]).sum(axis=1) == 1))
    norms = np.linalg.norm(t, axis=1) * np.linalg.norm(o, axis=1)
    cos = np.where(norms > 0, (t * o).sum(axis=1) / np.where(norms > 0, norms, 1.0),
                   np.where(np.all(t == o, axis=1), 1.0, 0.0))
    return {"nearest_original": nearest, "mean_cosine": float(np.mean(cos))}
