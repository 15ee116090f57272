"""PNG plots for the static leaderboard page (matplotlib, Agg backend: no display needed).

* `metric_bars`: one panel per metric of a table (`leaderboard.table.group_rows`), one bar per
  method with its bootstrap interval as an error bar (mean ± std over seeds
  for a row aggregated over several seeds);
* `generalization_scatter`: predicted vs true test accuracy, one panel per method;
* `learning_curves`: train loss and validation metric per epoch of baseline runs;
* `embedding_projection`: a 2-D PCA (numpy SVD) of a retrieval submission's
  embeddings, coloured by the item's label (the dataset it was trained on).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display, deterministic raster output

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator, ScalarFormatter  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAVE = {"format": "png", "dpi": 90, "metadata": {"Software": None}}


def _num(v) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _text(value) -> str:
    """A submission's string as literal plot text: a `$` would otherwise start matplotlib mathtext."""
    return str(value).replace("$", r"\$")


def _save(fig, path, layout: bool = True) -> None:
    if layout:
        fig.tight_layout()
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def _loss_ticks(ax, values) -> None:
    """A log-scale loss axis with plain labels at 1, 2, 5 × 10^k (nice steps when fewer than two
    fall in the data's range): narrow labels the fixed `_grid_margins` hold, and no mathtext,
    whose 10^k labels were a third of the learning curves' drawing time."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    locator = LogLocator(subs=(1.0, 2.0, 5.0))
    ax.yaxis.set_minor_locator(NullLocator())
    if len(v) and len([t for t in locator.tick_values(v.min(), v.max()) if v.min() <= t <= v.max()]) < 2:
        # a narrow range: linear steps, with as many digits as the steps need
        ax.yaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
        return
    ax.yaxis.set_major_locator(locator)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:.3g}"))


def _grid_margins(fig, nrow: int, ncol: int, panel: tuple[float, float]) -> None:
    """Fixed margins in inches around `panel`-sized grid cells: room for a title above each
    panel, an x label below, and y labels on both sides (twin axes). `tight_layout` finds
    about the same for the learning curves' 60-odd panels, at 2-3 s a figure."""
    width, height = panel[0] * ncol, panel[1] * nrow
    left, right, gap_x, top, bottom = 0.5, 0.75, 1.0, 0.3, 0.4  # inches
    axes_w = (width - left - right - (ncol - 1) * gap_x) / ncol
    axes_h = (height - nrow * (top + bottom)) / nrow
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height, wspace=gap_x / axes_w, hspace=(top + bottom) / axes_h)


def metric_bars(group: dict, path) -> None:
    """Bars of every metric of `group` (from `table.group_rows`), one per method, with interval whiskers."""
    # the metrics some row has (a table may list primary metrics no submission reports)
    metrics = [m for m in group["metrics"] if any(m in r["metrics"] for r in group["rows"])] or ["(none)"]
    labels = [_text(f"{r['method']} {r['version']}" + (f" ({r['seeds']} seeds)" if (r.get("seeds") or 0) > 1
                                                          else "")) for r in group["rows"]]
    ncol = min(len(metrics), 4)
    nrow = math.ceil(len(metrics) / ncol)
    height = 1.4 + 0.35 * max(len(labels), 2) * nrow
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 1.2, height), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        values, lo, hi = [], [], []
        for r in group["rows"]:
            m = r["metrics"].get(metric) or {}
            v, low, high = _num(m.get("value")), _num(m.get("ci_low")), _num(m.get("ci_high"))
            values.append(0.0 if math.isnan(v) else v)
            ok = not (math.isnan(v) or math.isnan(low) or math.isnan(high))
            lo.append(max(v - low, 0.0) if ok else 0.0)
            hi.append(max(high - v, 0.0) if ok else 0.0)
        y = np.arange(len(labels))
        ax.barh(y, values, xerr=[lo, hi], color="#4c72b0", ecolor="#222222", capsize=3)
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.axvline(0, color="#888888", linewidth=0.5)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    head = ", ".join([f"{group['task']} / {group['split']}", *group.get("qualifiers", ())])
    fig.suptitle(_text(f"{head} (95% bootstrap intervals; "
                       "± std for rows over several seeds)"), fontsize=9)
    _save(fig, path)


def generalization_scatter(details: list[dict], path) -> None:
    """Predicted vs true test accuracy: `details` items have method, version, y_true, y_pred."""
    n = max(len(details), 1)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, d in zip(axes.flat, details, strict=False):
        t, p = np.asarray(d["y_true"], float), np.asarray(d["y_pred"], float)
        ax.scatter(t, p, s=8, alpha=0.7, color="#dd8452")
        both = np.concatenate([t, p]) if t.size else np.array([0.0, 1.0])
        low, high = float(np.min(both)), float(np.max(both))
        ax.plot([low, high], [low, high], color="#555555", linewidth=0.8, linestyle="--")
        ax.set_xlabel("true test accuracy", fontsize=7)
        ax.set_ylabel("predicted", fontsize=7)
        ax.set_title(_text(f"{d['method']} {d['version']} ({d['split']})"), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(details):]:
        ax.axis("off")
    _save(fig, path)


def pca_2d(x) -> np.ndarray:
    """The rows of `x` projected on their first two principal components (numpy SVD; sign fixed)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        return np.zeros((0, 2))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    # deterministic orientation: the largest-magnitude loading of each component is positive
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    out = x @ comps.T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out


def embedding_projection(detail: dict, path) -> None:
    """PCA of `detail['embeddings']` coloured by `detail['labels']`."""
    xy = pca_2d(detail["embeddings"])
    labels = [str(v) for v in detail["labels"]]
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    cmap = plt.get_cmap("tab10")
    for k, lab in enumerate(sorted(set(labels))):
        mask = np.array([v == lab for v in labels], bool)
        ax.scatter(xy[mask, 0], xy[mask, 1], s=10, alpha=0.8, color=cmap(k % 10), label=_text(lab))
    if labels:
        ax.legend(fontsize=6, loc="best")
    ax.set_xlabel("PC 1", fontsize=7)
    ax.set_ylabel("PC 2", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_title(_text(f"{detail['method']} {detail['version']} ({detail['split']}): embeddings"), fontsize=8)
    _save(fig, path)


def learning_curves(curves: list[dict], path) -> None:
    """Train loss and validation metric per epoch, one panel per run.

    `curves` items have ``title`` and ``history`` (dicts with ``epoch``,
    ``train_loss``, ``val_metric``); ``best`` marks the epoch model selection kept
    (the best validation metric), so a reader sees whether early stopping fired.
    """
    curves = [c for c in curves if any("epoch" in h for h in c["history"])]
    n = max(len(curves), 1)
    ncol = min(n, 4)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.4 * nrow), squeeze=False)
    for ax, c in zip(axes.flat, curves, strict=False):
        h = [e for e in c["history"] if "epoch" in e]
        epochs = [e["epoch"] for e in h]
        loss = [_num(e["train_loss"]) for e in h]
        ax.plot(epochs, loss, color="#4c72b0", linewidth=1.0)
        ax.set_ylabel("train loss", fontsize=6, color="#4c72b0")
        ax.set_yscale("log")
        _loss_ticks(ax, loss)
        ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        val = ax.twinx()
        metric = [_num(e["val_metric"]) for e in h]
        val.plot(epochs, metric, color="#dd8452", linewidth=1.0)
        val.yaxis.set_major_locator(MaxNLocator(5))
        if np.isfinite(metric).any():
            best = int(np.nanargmax(metric))
            val.axvline(epochs[best], color="#555555", linewidth=0.6, linestyle="--")
        val.set_ylabel("val metric", fontsize=6, color="#dd8452")
        ax.set_title(_text(c["title"]), fontsize=7)
        ax.set_xlabel("epoch", fontsize=6)
        for a in (ax, val):
            a.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    _grid_margins(fig, nrow, ncol, (3.0, 2.4))
    _save(fig, path, layout=False)
