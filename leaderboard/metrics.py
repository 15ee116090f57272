"""The leaderboard's estimates: the tasks' metrics (`benchmark.metrics`) with bootstrap intervals,
and the symmetry-consistency numbers.

`bootstrap` resamples the test networks (items, queries or pairs) with
replacement and reports the 95% percentile interval; it is seeded, so a score
is reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from benchmark.metrics import cross_distances, l2_normalise

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


# --------------------------------------------------------------------------- fast point metrics


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
