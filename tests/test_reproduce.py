"""`zoobench reproduce --preset tiny` end to end: every table, score and file it promises, and resuming."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pytest

from baselines.classic import NEURAL as CLASSIC_NEURAL
from baselines.run import METHODS, PREDICTION_METHODS, applies
from benchmark.tasks import CLASSIFIER_TASKS, TASK_SPLITS
from zoo_builder.symmetry import KINDS
from zoobench import cli


def _tables(markdown: str) -> dict[tuple[str, ...], dict[str, dict[str, str]]]:
    """{(task, split): {method: {column: cell}}} from the leaderboard's markdown, for the `tiny` zoo's
    tables; (task, split, zoo) for the other zoo's."""
    out, current, header = {}, None, None
    for line in markdown.splitlines():
        m = re.match(r"^### (\S+) / (\S+) on zoo (\S+)", line)
        if m:
            current, header = (m.group(1), m.group(2), m.group(3))[:2 if m.group(3) == "tiny" else 3], None
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
def reproduced(tiny_preset_zoo, inr_tiny_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    code = cli.main(["reproduce", "--preset", "tiny", "--zoo", str(tiny_preset_zoo), "--inr-zoo",
                     str(inr_tiny_zoo), "--out", str(out), "--no-progress"])
    return code, out


def test_every_baseline_on_every_task_and_split(reproduced):
    code, out = reproduced
    assert code == 0
    record = json.loads((out / "reproduce.json").read_text())
    assert record["failed"] == [] and record["profile"] == "smoke"
    assert set(record["timings_s"]) == {"zoo", "tasks", "baselines", "score", "report", "total"}
    tables = _tables((out / "leaderboard.md").read_text())
    expected = {(t, s) for t in CLASSIFIER_TASKS for s in TASK_SPLITS[t]}
    expected |= {("inr-classification", "id", "inr-tiny"), ("retrieval", "id", "inr-tiny")}
    assert set(tables) == expected
    assert [z["name"] for z in record["zoos"]] == ["tiny", "inr-tiny"]

    def methods(task):
        return [m for m in METHODS if applies(task, m)]

    for key, rows in tables.items():
        assert set(rows) == set(methods(key[0])), key
        assert all(r["seeds"] == "1" for r in rows.values())
    assert "flat-mlp-aug" in methods("inr-classification") and "flat-mlp-aug" not in PREDICTION_METHODS
    assert len(record["runs"]) == sum(len(methods(key[0])) for key in expected)
    assert sum(name.startswith("submissions-inr-tiny/") for name in record["runs"]) == \
        len(methods("inr-classification")) + len(methods("retrieval"))
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
    # INRs have permutation and sign twins (sine is odd), no scale twins; probe agrees on both.
    for method, row in tables[("inr-classification", "id", "inr-tiny")].items():
        assert row["consistency/scale"] == "n/a", method
        assert row["consistency/permutation"] != "n/a" and row["consistency/sign"] != "n/a", method
    inr_probe = tables[("inr-classification", "id", "inr-tiny")]["probe"]
    assert "label/agreement 1.000" in inr_probe["consistency/sign"], inr_probe


def test_page_and_plots(reproduced):
    _, out = reproduced
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert any(i.startswith("generalization-") for i in images)
    assert any(i.startswith("embedding-") for i in images)
    assert "learning-curves.png" in images
    assert [i for i in images if i.startswith("inr-reconstructions-")] == [
        i for i in images if i.startswith("inr-reconstructions-inr-tiny")]  # the INR zoo's, only
    assert len([i for i in images if i.startswith("inr-reconstructions-")]) == 1
    tables = _tables((out / "leaderboard.md").read_text())
    assert len([i for i in images if i.startswith("bars-")]) == len(tables)  # one per table, both zoos
    for image in images:
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_what_is_done_and_redoes_what_is_missing(reproduced, tiny_preset_zoo, inr_tiny_zoo,
                                                              capsys):
    code, out = reproduced
    before = (out / "leaderboard.md").read_text()
    missing = "generalization-id-statnn-seed0.json"
    (out / "submissions" / missing).unlink()
    capsys.readouterr()
    assert cli.main(["reproduce", "--preset", "tiny", "--zoo", str(tiny_preset_zoo), "--inr-zoo",
                     str(inr_tiny_zoo), "--out", str(out), "--no-progress", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    redone = {name for name, r in record["runs"].items() if not r.get("skipped")}
    assert redone == {missing}
    # The same seed gives the same predictions, so the same file: already scored, tables unchanged.
    assert record["scores"][missing].get("skipped") is True
    assert (out / "leaderboard.md").read_text() == before
