"""Leaderboard tables hold one item set each: keyed by checkpoints and split file, not only task/split/zoo."""

from __future__ import annotations

from leaderboard.store import add_result, connect, entries
from leaderboard.table import _symmetry_cell

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


def test_symmetry_column_shows_mean_abs_diff_not_the_normalized_value():
    sym = _result("a", 0.5, "1")["symmetry"]
    assert _symmetry_cell(sym) == "test_acc/mean_abs_diff 0.002"
    assert _symmetry_cell({"agreement": 1.0}) == "agreement 1.000"
    assert _symmetry_cell({"mean_cosine": 0.25, "nearest_original": 1.0}) == "mean_cosine 0.250"
