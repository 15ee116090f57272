"""Paper-style leaderboard tables from stored rows: methods × metrics, mean ± spread.

One table per item set: (task, split, zoo, final or every checkpoint, split
file). Numbers over different items are not comparable: another zoo or split,
every checkpoint of a network instead of its final one, or an older split file
of the same name. The title names the checkpoints when they are every one, and
the split file's fingerprint when the database holds runs on several files of
that split. Rows are grouped by (method, version). Unseeded submissions: the
latest wins, shown as value ± bootstrap half-interval. Seeded submissions (as
papers report them): the latest per seed is kept and the row shows the mean
over seeds ± their sample standard deviation, with the number of seeds. In
markdown the best value of each column is bold (the smallest for loss
barriers, else the largest), compared on those means. Symmetry consistency has
one column per kind of twin (`SYMMETRY_COLUMNS`), "n/a" where the test part has
no twins of that kind (merging, or a zoo without ReLU or tanh networks).
"""

from __future__ import annotations

import json
import math

import numpy as np

from leaderboard.score import LOWER_IS_BETTER, PRIMARY, strict_json
from zoo_builder.symmetry import KINDS

FORMATS = ("text", "markdown", "json")
PLUS_MINUS = "± : 95% bootstrap half-interval for one run; standard deviation over seeds when seeds > 1"
_TABLE_KEYS = ("task", "split", "zoo_name", "zoo_fingerprint", "all_checkpoints", "split_fingerprint")
SYMMETRY_COLUMNS = tuple(f"consistency/{kind}" for kind in KINDS)
_JSON_ROW_KEYS = ("method", "version", "seeds", "seed_values", "metrics", "symmetry", "sha256", "scored_at")


def _num(v):
    """A stored number (None for nan, "inf" strings) as a float."""
    if v is None:
        return math.nan
    return float(v)


def _cell(m: dict | None) -> str:
    if not m:
        return "–"
    value, low, high = _num(m["value"]), _num(m["ci_low"]), _num(m["ci_high"])
    if math.isnan(value):
        return "nan"
    if math.isnan(low) or math.isnan(high) or math.isinf(high - low):
        return f"{value:.3f}"
    return f"{value:.3f} ± {(high - low) / 2:.3f}"


def symmetry_by_kind(sym: dict) -> dict[str, dict]:
    """A row's symmetry numbers as kind -> {name: value}; names without a kind (rows scored before
    scale and sign twins existed) are permutation's."""
    out: dict[str, dict] = {}
    for key, value in sym.items():
        kind, _, name = key.partition("/")
        if kind not in KINDS:
            kind, name = "permutation", key
        out.setdefault(kind, {})[name] = value
    return out


def _shown(sym: dict, kind: str) -> list[tuple[str, float]]:
    """The numbers a table shows of one kind: mean |ŷ(twin) − ŷ(original)|, class agreement or
    twin–original cosine, one per target."""
    numbers = symmetry_by_kind(sym).get(kind, {})
    return [(k, _num(v)) for k, v in sorted(numbers.items())
            if not k.endswith("/normalized_abs_diff") and k != "nearest_original"]


def symmetry_cells(sym: dict) -> list[str]:
    """One cell per `KINDS`: its shown numbers, or "n/a" where the run had no twins of that kind."""
    return [", ".join(f"{k} {v:.3f}" for k, v in _shown(sym, kind)) or "n/a" for kind in KINDS]


def symmetry_sort_values(sym: dict) -> list[str]:
    """Per `KINDS`, the first shown number (what the page sorts a column by); "" where there is none."""
    return [repr(shown[0][1]) if (shown := _shown(sym, kind)) else "" for kind in KINDS]


def _seeds_cell(r: dict) -> str:
    return str(r["seeds"]) if r.get("seeds") else ""


def aggregate_metric(runs: list[dict]) -> dict:
    """One metric over seeds: mean ± sample std (ddof=1) as value and interval, plus std and seeds.

    A single seed keeps its run's bootstrap interval (std 0): one run's spread is
    the bootstrap's, the spread over seeds needs two.
    """
    if len(runs) == 1:
        return {**runs[0], "std": 0.0, "seeds": 1}
    values = np.array([_num(m["value"]) for m in runs], np.float64)
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    # rows scored before n_clusters existed lack it
    clusters = {"n_clusters": runs[-1]["n_clusters"]} if "n_clusters" in runs[-1] else {}
    return {"value": mean, "ci_low": mean - std, "ci_high": mean + std, "n": runs[-1]["n"], **clusters,
            "std": std, "seeds": len(runs)}


def method_row(runs: list[dict]) -> dict:
    """The table row of one method and version from its runs (oldest first), all seeded or all not.

    Unseeded: the latest run. Seeded: the latest run per seed, metrics aggregated
    by `aggregate_metric` and symmetry numbers averaged; ``seeds`` counts them
    (None when unseeded) and ``seed_values`` lists them.
    """
    latest = runs[-1]
    if latest.get("seed") is None:
        return {**latest, "seeds": None, "seed_values": []}
    by_seed = {r["seed"]: r for r in runs}  # a resubmitted seed replaces its earlier run
    per_seed = [by_seed[s] for s in sorted(by_seed)]
    metrics = {m: aggregate_metric([r["metrics"][m] for r in per_seed if m in r["metrics"]])
               for m in dict.fromkeys(m for r in per_seed for m in r["metrics"])}
    symmetry = {k: float(np.mean([_num(r["symmetry"][k]) for r in per_seed if k in r["symmetry"]]))
                for k in dict.fromkeys(k for r in per_seed for k in r["symmetry"])}
    return strict_json({**latest, "metrics": metrics, "symmetry": symmetry, "seeds": len(per_seed),
                        "seed_values": sorted(by_seed)})


def group_rows(rows: list[dict]) -> list[dict]:
    """Tables {task, split, zoo_name, zoo_fingerprint, all_checkpoints, split_fingerprint, qualifiers,
    metrics, rows}, one per item set; a row per method+version.

    ``qualifiers`` says what sets a table apart from the others of its task, split
    and zoo ("every checkpoint", "split file <fingerprint>"); empty by default.
    Seeded and unseeded runs of one method and version make two rows: a
    latest-wins run is not one more seed.
    """
    groups: dict[tuple, dict] = {}
    for r in rows:  # oldest first
        key = tuple(r[k] for k in _TABLE_KEYS)
        g = groups.setdefault(key, {**dict(zip(_TABLE_KEYS, key, strict=True)), "runs": {}})
        g["runs"].setdefault((r["method"], r["version"], r.get("seed") is not None), []).append(r)
    split_files: dict[tuple, set] = {}
    for task, split, zoo_name, zoo_fingerprint, _, split_fingerprint in groups:
        split_files.setdefault((task, split, zoo_name, zoo_fingerprint), set()).add(split_fingerprint)
    out = []
    for key in sorted(groups):
        g = groups[key]
        table_rows = [method_row(g["runs"][k]) for k in sorted(g["runs"])]
        metrics = list(PRIMARY.get(g["task"], ()))
        extra = sorted({m for r in table_rows for m in r["metrics"]} - set(metrics))
        qualifiers = ["every checkpoint"] if g["all_checkpoints"] else []
        if len(split_files[key[:4]]) > 1:
            qualifiers.append(f"split file {g['split_fingerprint'][:12]}")
        out.append({**{k: g[k] for k in _TABLE_KEYS}, "qualifiers": qualifiers,
                    "metrics": metrics + extra, "rows": table_rows})
    return out


def title(group: dict) -> str:
    """A table's title: task / split on zoo NAME (fingerprint), then its qualifiers if any."""
    return ", ".join([f"{group['task']} / {group['split']} on zoo {group['zoo_name']} "
                      f"({group['zoo_fingerprint'][:12]})", *group["qualifiers"]])


def best(group: dict, metric: str) -> float | None:
    """The best shown value of `metric` in a table (row means for seeded rows), None if it has none."""
    values = [_num(r["metrics"][metric]["value"]) for r in group["rows"] if metric in r["metrics"]]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    return min(values) if metric in LOWER_IS_BETTER else max(values)


def render(rows: list[dict], fmt: str = "text") -> str:
    """The stored `rows` (from `store.entries`) as text, markdown or JSON tables."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    groups = group_rows(rows)
    if fmt == "json":
        return json.dumps({"tables": [{**{k: g[k] for k in (*_TABLE_KEYS, "metrics")},
                                       "plus_minus": PLUS_MINUS,
                                       "rows": [{k: r[k] for k in _JSON_ROW_KEYS} for r in g["rows"]]}
                                      for g in groups]},
                          indent=2, sort_keys=True)
    if not groups:
        return "no scored submissions"
    parts = []
    for g in groups:
        header = ["method", *g["metrics"], "seeds", *SYMMETRY_COLUMNS]
        body = []
        for r in g["rows"]:
            cells = [f"{r['method']} {r['version']}"]
            for m in g["metrics"]:
                cell = _cell(r["metrics"].get(m))
                top = best(g, m)
                if (fmt == "markdown" and m in r["metrics"] and top is not None
                        and _num(r["metrics"][m]["value"]) == top):
                    cell = f"**{cell}**"
                cells.append(cell)
            cells.append(_seeds_cell(r))
            cells += symmetry_cells(r["symmetry"])
            body.append(cells)
        if fmt == "markdown":
            lines = [f"### {title(g)}", "", PLUS_MINUS, "", "| " + " | ".join(header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(c) + " |" for c in body]
        else:
            widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
            lines = [title(g), PLUS_MINUS, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
            lines.append("  ".join("-" * w for w in widths))
            lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
