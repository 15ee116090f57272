"""`zoobench reproduce --preset tiny` end to end: every table, score and file it promises, and resuming."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pytest

from baselines.classic import NEURAL as CLASSIC_NEURAL
from baselines.run import MERGING_METHODS, PREDICTION_METHODS
from benchmark.tasks import TASK_SPLITS
from zoo_builder.symmetry import KINDS
from zoobench import cli


def _tables(markdown: str) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
    """{(task, split): {method: {column: cell}}} from the leaderboard's markdown."""
    out, current, header = {}, None, None
    for line in markdown.splitlines():
        m = re.match(r"^### (\S+) / (\S+) on zoo", line)
        if m:
            current, header = (m.group(1), m.group(2)), None
            out[current] = {}
        elif line.startswith("|") and current and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            else:
                out[current][cells[0].split()[0]] = dict(zip(header, cells, strict=True))
    return out


NEURAL = (*CLASSIC_NEURAL, "ng-gnn")


def _value(cell: str) -> float:
    return float(cell.strip("*").split()[0])


@pytest.fixture(scope="module")
def reproduced(tiny_preset_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    code = cli.main(["reproduce", "--preset", "tiny", "--zoo", str(tiny_preset_zoo), "--out", str(out),
                     "--no-progress"])
    return code, out


def test_every_baseline_on_every_task_and_split(reproduced):
    code, out = reproduced
    assert code == 0
    record = json.loads((out / "reproduce.json").read_text())
    assert record["failed"] == [] and record["profile"] == "smoke"
    assert set(record["timings_s"]) == {"zoo", "tasks", "baselines", "score", "report", "total"}
    tables = _tables((out / "leaderboard.md").read_text())
    expected = {(t, s) for t, splits in TASK_SPLITS.items() for s in splits}
    assert set(tables) == expected
    for (task, _), rows in tables.items():
        methods = MERGING_METHODS if task == "merging" else PREDICTION_METHODS
        assert set(rows) == set(methods)
        assert all(r["seeds"] == "1" for r in rows.values())
    assert len(record["runs"]) == sum(len(MERGING_METHODS if t == "merging" else PREDICTION_METHODS)
                                      for t, _ in expected)
    with sqlite3.connect(out / "leaderboard.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == len(record["runs"])
    # Every neural run records its learning curve and whether early stopping ended it before the cap.
    for name, run in record["runs"].items():
        if any(name.endswith(f"-{m}-seed0.json") for m in NEURAL) and not name.startswith("merging"):
            epochs = [h for h in run["history"] if "epoch" in h]
            assert len(epochs) == run["epochs"] >= 1 and run["epochs"] <= run["epoch_cap"], name
            assert run["stopped_early"] == (run["epochs"] < run["epoch_cap"])
            assert all(np.isfinite(h["train_loss"]) for h in epochs)


def test_scores_show_the_symmetries(reproduced):
    _, out = reproduced
    tables = _tables((out / "leaderboard.md").read_text())
    for split in TASK_SPLITS["merging"]:
        rows = tables[("merging", split)]
        # The synthetic pairs are exact permutations: alignment recovers every unit, naive almost none.
        assert _value(rows["weight-matching"]["unit_match_acc"]) == 1.0
        assert _value(rows["ng-gnn"]["unit_match_acc"]) == 1.0
        assert _value(rows["naive"]["unit_match_acc"]) < 0.5
    for split in TASK_SPLITS["generalization"]:
        rows = tables[("generalization", split)]
        for method in ("ng-gnn", "nfn-np", "statnn", "statnn-gbt"):  # permutation invariant by construction
            sym = rows[method]["consistency/permutation"]
            assert "test_acc/mean_abs_diff 0.000" in sym, (method, sym)
        assert "test_acc/mean_abs_diff 0.000" not in rows["flat-mlp"]["consistency/permutation"]
        for kind in KINDS:  # probe reads only the function: invariant to every kind there is
            sym = rows["probe"][f"consistency/{kind}"]
            assert sym == "n/a" or "test_acc/mean_abs_diff 0.000" in sym, (split, kind, sym)
    # The tiny zoo's id split has ReLU and tanh test networks: every method has a number for every
    # kind of twin there. Merging uses no twins: n/a.
    for task in ("generalization", "classification", "retrieval"):
        for method, row in tables[(task, "id")].items():
            for kind in KINDS:
                assert row[f"consistency/{kind}"] != "n/a", (task, method, kind)
    assert {row[f"consistency/{k}"] for row in tables[("merging", "id")].values() for k in KINDS} == {"n/a"}


def test_page_and_plots(reproduced):
    _, out = reproduced
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert any(i.startswith("generalization-") for i in images)
    assert any(i.startswith("embedding-") for i in images)
    assert "learning-curves.png" in images
    assert len([i for i in images if i.startswith("bars-")]) == sum(len(s) for s in TASK_SPLITS.values())
    for image in images:
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_what_is_done_and_redoes_what_is_missing(reproduced, tiny_preset_zoo, capsys):
    code, out = reproduced
    before = (out / "leaderboard.md").read_text()
    missing = "generalization-id-statnn-seed0.json"
    (out / "submissions" / missing).unlink()
    capsys.readouterr()
    assert cli.main(["reproduce", "--preset", "tiny", "--zoo", str(tiny_preset_zoo), "--out", str(out),
                     "--no-progress", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    redone = {name for name, r in record["runs"].items() if not r.get("skipped")}
    assert redone == {missing}
    # The same seed gives the same predictions, so the same file: already scored, tables unchanged.
    assert record["scores"][missing].get("skipped") is True
    assert (out / "leaderboard.md").read_text() == before
