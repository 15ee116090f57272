"""Paper-style leaderboard tables from stored rows: methods × metrics, mean ± half-interval.

One table per (task, split, zoo): numbers from different zoos or splits are not
comparable. A method submitted several times (same name and version) shows its
latest row. In markdown the best value of each column is bold (the smallest
for loss barriers, else the largest).
"""

from __future__ import annotations

import json
import math

from leaderboard.score import LOWER_IS_BETTER, PRIMARY

FORMATS = ("text", "markdown", "json")


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


def _symmetry_cell(sym: dict) -> str:
    if not sym:
        return "n/a"
    # The figures: mean |ŷ(twin) − ŷ(original)|, class agreement, twin–original cosine.
    return ", ".join(f"{k} {_num(v):.3f}" for k, v in sorted(sym.items())
                     if not k.endswith("/normalized") and k != "nearest_original")


def group_rows(rows: list[dict]) -> list[dict]:
    """Tables {task, split, zoo_name, zoo_fingerprint, metrics, rows}; rows: latest per method+version."""
    groups: dict[tuple, dict] = {}
    for r in rows:  # oldest first: later rows replace earlier ones of the same method and version
        key = (r["task"], r["split"], r["zoo_name"], r["zoo_fingerprint"])
        g = groups.setdefault(key, {"task": r["task"], "split": r["split"], "zoo_name": r["zoo_name"],
                                    "zoo_fingerprint": r["zoo_fingerprint"], "rows": {}})
        g["rows"][(r["method"], r["version"])] = r
    out = []
    for key in sorted(groups):
        g = groups[key]
        metrics = list(PRIMARY.get(g["task"], ()))
        extra = sorted({m for r in g["rows"].values() for m in r["metrics"]} - set(metrics))
        out.append({**g, "metrics": metrics + extra,
                    "rows": sorted(g["rows"].values(), key=lambda r: (r["method"], r["version"]))})
    return out


def _best(group: dict, metric: str) -> float | None:
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
        return json.dumps({"tables": [{**{k: g[k] for k in ("task", "split", "zoo_name", "zoo_fingerprint",
                                                              "metrics")},
                                       "rows": [{k: r[k] for k in ("method", "version", "metrics",
                                                                   "symmetry", "sha256", "scored_at")}
                                                for r in g["rows"]]} for g in groups]},
                          indent=2, sort_keys=True)
    if not groups:
        return "no scored submissions"
    parts = []
    for g in groups:
        title = f"{g['task']} / {g['split']} on zoo {g['zoo_name']} ({g['zoo_fingerprint'][:12]})"
        header = ["method", *g["metrics"], "symmetry consistency"]
        body = []
        for r in g["rows"]:
            cells = [f"{r['method']} {r['version']}"]
            for m in g["metrics"]:
                cell = _cell(r["metrics"].get(m))
                best = _best(g, m)
                if (fmt == "markdown" and m in r["metrics"] and best is not None
                        and _num(r["metrics"][m]["value"]) == best):
                    cell = f"**{cell}**"
                cells.append(cell)
            cells.append(_symmetry_cell(r["symmetry"]))
            body.append(cells)
        if fmt == "markdown":
            lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(c) + " |" for c in body]
        else:
            widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
            lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
            lines.append("  ".join("-" * w for w in widths))
            lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
