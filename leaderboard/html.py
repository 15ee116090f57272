"""A static leaderboard page: OUT_DIR/index.html plus PNG plots next to it.

No server, no network, nothing external: the CSS and a small sortable-table
script are inlined. One sortable table per item set (task, split, zoo,
checkpoints, split file) as in `leaderboard.table` (methods × metrics as value ± half-interval, or mean ± std
over seeds, the number of seeds, symmetry consistency per kind of twin), a bar plot of the
metrics with their intervals per table and,
when per-network predictions are given (`prediction_details`: the stored rows
hold only the metrics), predicted vs true test accuracy and a 2-D PCA of
retrieval embeddings.

Every string that comes from a submission or the database is escaped with
`html.escape`; file names are built from a sanitised slug plus a hash, never
from raw names. The page is deterministic: the same rows give the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from pathlib import Path

import numpy as np

from benchmark.splits import as_zoo
from benchmark.submission import SubmissionError, check_against_task, load_submission_task, read_with_problems
from benchmark.tasks import test_targets
from leaderboard import plots
from leaderboard.score import _items
from leaderboard.table import (
    PLUS_MINUS,
    SYMMETRY_COLUMNS,
    _cell,
    _num,
    _seeds_cell,
    best,
    group_rows,
    symmetry_cells,
    symmetry_sort_values,
)

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}
.meta{color:#666;font-size:.85em}
"""

# Click a header to sort by it (numbers by their value; again to reverse).
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){
    th.addEventListener("click",function(){
      var asc=!th.classList.contains("asc");
      t.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc?"asc":"desc");
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i].getAttribute("data-v"),y=b.cells[i].getAttribute("data-v");
        var nx=parseFloat(x),ny=parseFloat(y),c;
        if(!isNaN(nx)&&!isNaN(ny)){c=nx-ny;}else{c=String(x).localeCompare(String(y));}
        return asc?c:-c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def esc(value) -> str:
    """`value` as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def safe_name(*parts) -> str:
    """A file name stem from arbitrary strings: a short [A-Za-z0-9_-] slug plus a hash of the originals."""
    raw = "\x00".join(str(p) for p in parts)
    slug = _SLUG.sub("_", "_".join(str(p) for p in parts)).strip("_")[:40] or "x"
    return f"{slug}-{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:10]}"


def _sort_value(m: dict | None) -> str:
    v = _num(m["value"]) if m else math.nan
    return "" if math.isnan(v) else repr(v)


def _table(group: dict) -> str:
    head = ["method", "version", *group["metrics"], "seeds", *SYMMETRY_COLUMNS]
    out = ['<table class="sortable">', "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
           + "</tr></thead>", "<tbody>"]
    for r in group["rows"]:
        cells = [f'<td data-v="{esc(r["method"])}" title="{esc(r["description"])}">{esc(r["method"])}</td>',
                 f'<td data-v="{esc(r["version"])}">{esc(r["version"])}</td>']
        for m in group["metrics"]:
            metric = r["metrics"].get(m)
            top = best(group, m)
            cls = "num best" if metric and top is not None and _num(metric["value"]) == top else "num"
            cells.append(f'<td class="{cls}" data-v="{esc(_sort_value(metric))}">{esc(_cell(metric))}</td>')
        seeds = _seeds_cell(r)
        cells.append(f'<td class="num" data-v="{esc(seeds)}">{esc(seeds)}</td>')
        for sym, v in zip(symmetry_cells(r["symmetry"]), symmetry_sort_values(r["symmetry"]), strict=True):
            cells.append(f'<td data-v="{esc(v)}">{esc(sym)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _same_items(detail: dict, group: dict) -> bool:
    """Whether a submission's predictions (`prediction_details`) are over the items of table `group`.

    Details without checkpoints or split file (older callers) count as final-checkpoint runs on any file.
    """
    return (detail["task"] == group["task"] and detail["split"] == group["split"]
            and detail.get("all_checkpoints", False) == group["all_checkpoints"]
            and detail.get("split_fingerprint", group["split_fingerprint"]) == group["split_fingerprint"])


def render_site(rows: list[dict], out_dir, details: list[dict] | None = None, *,
                title: str = "zoobench leaderboard", curves: list[dict] | None = None,
                figures: list[dict] | None = None) -> Path:
    """Write OUT_DIR/index.html and its PNG plots; returns the page's path.

    Args:
      rows: stored rows (`store.entries`).
      details: optional per-submission predictions (`prediction_details`):
        dicts with method, version, task, split (optionally all_checkpoints and
        split_fingerprint, to place them in the right table) and either ``y_true``/``y_pred``
        (generalization, test accuracy) or ``embeddings``/``labels`` (retrieval).
      curves: optional learning curves of the runs (`plots.learning_curves`): dicts
        with ``title`` and ``history``; drawn in one figure at the end.
      figures: optional figures already drawn into OUT_DIR (e.g. INR reconstructions): dicts
        with ``file`` (a name in OUT_DIR), ``title`` and ``caption``; shown after the tables.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    details = list(details or [])
    groups = group_rows(rows)
    body = [f"<h1>{esc(title)}</h1>"]
    if not groups:
        body.append("<p>no scored submissions</p>")
    for g in groups:
        head = ", ".join([f"{g['task']} / {g['split']}", *g["qualifiers"]])
        # One name per item set: the plots of two tables never overwrite each other.
        item_set = (g["split"], g["zoo_fingerprint"][:12], int(g["all_checkpoints"]),
                    g["split_fingerprint"][:12])
        body.append(f"<h2>{esc(head)}</h2>")
        body.append(f'<p class="meta">zoo {esc(g["zoo_name"])} ({esc(g["zoo_fingerprint"][:12])}); '
                    f"{len(g['rows'])} method(s); {esc(PLUS_MINUS)}</p>")
        body.append(_table(g))
        png = f"bars-{safe_name(g['task'], *item_set)}.png"
        plots.metric_bars(g, out_dir / png)
        body.append(f'<img src="{esc(png)}" alt="{esc("metrics of " + head)}">')
        mine = sorted((d for d in details if _same_items(d, g)), key=lambda d: (d["method"], d["version"]))
        gen = [d for d in mine if d["task"] == "generalization"]
        if gen:
            png = f"generalization-{safe_name(*item_set)}.png"
            plots.generalization_scatter(gen, out_dir / png)
            body.append("<h3>predicted vs true test accuracy</h3>")
            body.append(f'<img src="{esc(png)}" alt="predicted vs true test accuracy">')
        for d in (d for d in mine if d["task"] == "retrieval"):
            png = f"embedding-{safe_name(d['method'], d['version'], *item_set)}.png"
            plots.embedding_projection(d, out_dir / png)
            body.append(f"<h3>{esc(d['method'])} {esc(d['version'])}: embeddings (PCA)</h3>")
            body.append(f'<img src="{esc(png)}" alt="{esc("PCA of " + d["method"])}">')
    for fig in figures or ():
        body.append(f"<h2>{esc(fig['title'])}</h2>")
        body.append(f'<p class="meta">{esc(fig["caption"])}</p>')
        body.append(f'<img src="{esc(fig["file"])}" alt="{esc(fig["title"])}">')
    if curves:
        plots.learning_curves(curves, out_dir / "learning-curves.png")
        body.append("<h2>learning curves</h2>")
        body.append('<p class="meta">train loss (blue, log scale) and validation metric (orange) per epoch; '
                    "the dashed line marks the epoch model selection kept</p>")
        body.append('<img src="learning-curves.png" alt="learning curves of the baseline runs">')
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n")
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def prediction_details(paths, zoo) -> list[dict]:
    """Per-network predictions of submission files, with the truth, for the plots.

    Generalization: ``y_true``/``y_pred`` of test accuracy over the original test
    items; retrieval: ``embeddings`` and the ``labels`` (dataset names). Other
    tasks give nothing to plot. Files that do not validate against `zoo` raise
    `SubmissionError`.
    """
    zoo = as_zoo(zoo)
    out, tasks = [], {}
    for path in paths:
        sub, problems = read_with_problems(path)
        if sub is None:
            raise SubmissionError(path, problems)
        m = sub.metadata
        if m.task not in ("generalization", "retrieval"):
            continue
        key = (m.task, m.split, m.all_checkpoints)
        if key not in tasks:
            tasks[key] = load_submission_task(sub, zoo)
        task = tasks[key]
        problems += check_against_task(sub, task)
        if problems:
            raise SubmissionError(path, problems)
        answers = test_targets(task)
        originals, _ = _items(task, answers, m.all_checkpoints)
        d = {"method": m.method, "version": m.version, "task": m.task, "split": m.split,
             "all_checkpoints": m.all_checkpoints, "split_fingerprint": m.split_fingerprint}
        if m.task == "generalization":
            d["y_true"] = [float(v) for v in answers["targets"]["test_acc"]]
            d["y_pred"] = [float(sub.predictions[k]["test_acc"]) for k in originals]
        else:
            target = task.targets[0]  # what makes two networks relevant: dataset, or an INR's class
            classes = list(task.classes[target])
            d["embeddings"] = np.stack([np.asarray(sub.predictions[k], float) for k in originals])
            d["labels"] = [classes[int(i)] for i in answers["targets"][target]]
        out.append(d)
    return out
