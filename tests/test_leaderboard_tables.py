"""Leaderboard tables hold one item set each: keyed by checkpoints and split file, not only task/split/zoo."""

from __future__ import annotations

import json

from leaderboard.html import render_site
from leaderboard.store import add_result, connect, entries
from leaderboard.table import group_rows, render, symmetry_cells, symmetry_sort_values
from zoobench.reproduce import summary_markdown

SPLIT_A, SPLIT_B = "a" * 64, "b" * 64


def _result(method, tau, sha, *, all_checkpoints=False, split_fingerprint=SPLIT_A) -> dict:
    metrics = {"test_acc/kendall_tau": {"value": tau, "ci_low": tau - 0.1, "ci_high": tau + 0.1, "n": 10}}
    return {"method": method, "version": "1", "description": "", "task": "generalization", "split": "id",
            "all_checkpoints": all_checkpoints, "zoo": {"name": "z", "weights_fingerprint": "f" * 64},
            "split_fingerprint": split_fingerprint, "metrics": metrics,
            "symmetry": {"test_acc/mean_abs_diff": 0.002, "test_acc/normalized_abs_diff": 0.5},
            "bootstrap": {}, "sha256": sha, "seed": None}


def _rows(tmp_path, *results) -> list[dict]:
    conn = connect(tmp_path / "lb.sqlite")
    try:
        for r in results:
            add_result(conn, r)
        return entries(conn)
    finally:
        conn.close()


def test_final_and_every_checkpoint_runs_are_two_tables(tmp_path):
    rows = _rows(tmp_path, _result("a", 0.5, "1"), _result("a", 0.9, "2", all_checkpoints=True))
    final, every = group_rows(rows)
    assert (final["all_checkpoints"], every["all_checkpoints"]) == (False, True)
    assert [r["sha256"] for r in final["rows"]] == ["1"]  # not replaced by the later every-checkpoint run
    assert [r["sha256"] for r in every["rows"]] == ["2"]
    text = render(rows, "text")
    titles = [line for line in text.splitlines() if line.startswith("generalization / id on zoo z")]
    assert len(titles) == 2
    assert "every checkpoint" not in titles[0] and "every checkpoint" in titles[1]
    tables = json.loads(render(rows, "json"))["tables"]
    assert [t["all_checkpoints"] for t in tables] == [False, True]


def test_runs_on_another_split_file_are_another_table_named_by_its_fingerprint(tmp_path):
    rows = _rows(tmp_path, _result("a", 0.5, "1"), _result("a", 0.9, "2", split_fingerprint=SPLIT_B))
    groups = group_rows(rows)
    assert [(g["split_fingerprint"], [r["sha256"] for r in g["rows"]]) for g in groups] == [
        (SPLIT_A, ["1"]), (SPLIT_B, ["2"])]
    md = render(rows, "markdown")
    titles = [line for line in md.splitlines() if line.startswith("### ")]
    assert len(titles) == 2
    assert f"split file {SPLIT_A[:12]}" in titles[0] and f"split file {SPLIT_B[:12]}" in titles[1]
    # With one split file there is nothing to tell apart: the title stays short.
    [single] = [line for line in render(rows[:1], "markdown").splitlines() if line.startswith("### ")]
    assert "split file" not in single and "every checkpoint" not in single
    assert [t["split_fingerprint"] for t in json.loads(render(rows, "json"))["tables"]] == [SPLIT_A, SPLIT_B]


def test_the_page_has_a_table_and_a_plot_per_item_set(tmp_path):
    rows = _rows(tmp_path, _result("a", 0.5, "1"), _result("a", 0.9, "2", all_checkpoints=True),
                 _result("a", 0.7, "3", split_fingerprint=SPLIT_B))
    page = render_site(rows, tmp_path / "site").read_text()
    assert page.count("<table") == 3
    assert len(list((tmp_path / "site").glob("bars-*.png"))) == 3
    assert "every checkpoint" in page and f"split file {SPLIT_B[:12]}" in page


def test_summary_keeps_the_item_sets_apart(tmp_path):
    rows = _rows(tmp_path, _result("a", 0.5, "1"), _result("a", 0.9, "2", all_checkpoints=True))
    md = summary_markdown(rows)
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert "test_acc/kendall_tau (id)" in header and "test_acc/kendall_tau (id, every checkpoint)" in header
    assert "| a | 0.500 | – | 0.900 | – |" in md


def test_symmetry_columns_show_mean_abs_diff_per_kind_and_n_a_where_a_kind_has_no_twins():
    sym = {"permutation/test_acc/mean_abs_diff": 0.0, "permutation/test_acc/normalized_abs_diff": 0.0,
           "scale/test_acc/mean_abs_diff": 0.031, "scale/test_acc/normalized_abs_diff": 0.44}
    assert symmetry_cells(sym) == ["test_acc/mean_abs_diff 0.000", "test_acc/mean_abs_diff 0.031", "n/a"]
    assert symmetry_sort_values(sym) == ["0.0", "0.031", ""]
    assert symmetry_cells({"sign/dataset/agreement": 0.5, "sign/optimizer/agreement": 1.0}) == [
        "n/a", "n/a", "dataset/agreement 0.500, optimizer/agreement 1.000"]
    cosine = {"scale/mean_cosine": 0.25, "scale/nearest_original": 1.0}
    assert symmetry_cells(cosine)[1] == "mean_cosine 0.250"
    assert symmetry_cells({}) == ["n/a"] * 3
    # Rows scored before scale and sign twins existed: their unprefixed numbers are permutation's.
    legacy = _result("a", 0.5, "1")["symmetry"]
    assert symmetry_cells(legacy) == ["test_acc/mean_abs_diff 0.002", "n/a", "n/a"]
    md = render(_rows_of(sym), "markdown")
    assert "| consistency/permutation | consistency/scale | consistency/sign |" in md
    assert "| test_acc/mean_abs_diff 0.000 | test_acc/mean_abs_diff 0.031 | n/a |" in md


def _rows_of(sym):
    return [{**_result("a", 0.5, "1"), "symmetry": sym, "zoo_name": "z", "zoo_fingerprint": "f" * 64}]
