"""Training seeds end to end: the optional ``seed`` of a submission, its store column, mean ± std tables."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from benchmark.submission import (
    Metadata,
    SubmissionError,
    read_submission,
    task_metadata,
    write_submission,
)
from benchmark.submission_format import jsonable
from leaderboard.store import add_result, connect, entries
from leaderboard.table import PLUS_MINUS, group_rows, render

REPO = Path(__file__).resolve().parents[1]
SEED_PROBLEM = "seed: expected a non-negative integer"
# The metadata keys of a submission before seeds existed: a seedless file must have exactly these.
OLD_KEYS = ["all_checkpoints", "description", "format", "format_version", "method", "split",
            "split_fingerprint", "task", "version", "zoo"]


def _meta(seed=None) -> Metadata:
    return Metadata(method="m", version="1", description="", task="generalization", split="id",
                    all_checkpoints=False, zoo_name="z", weights_fingerprint="w", split_fingerprint="0" * 64,
                    seed=seed)


def _json_file(path: Path, **meta) -> Path:
    """A structurally complete JSON submission (no zoo needed to read it) with metadata keys replaced."""
    doc = {**_meta().to_doc(), **meta, "predictions": {"n0": {"test_acc": 0.5, "gen_gap": 0.1}}}
    path = path.with_suffix(".json")
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _npz_file(path: Path, **meta) -> Path:
    doc = {**_meta().to_doc(), **meta}
    path = path.with_suffix(".npz")
    np.savez(path, metadata=np.array(json.dumps(doc)), ids=np.array(["n0"]),
             test_acc=np.array([0.5]), gen_gap=np.array([0.1]))
    return path


# --------------------------------------------------------------------------- the submission field


@pytest.mark.parametrize("write", [_json_file, _npz_file], ids=["json", "npz"])
@pytest.mark.parametrize("bad", [-1, True, False, "3", 1.5, None, [1]])
def test_invalid_seeds_are_refused_by_name(tmp_path, write, bad):
    path = write(tmp_path / "s", seed=bad)
    with pytest.raises(SubmissionError) as e:
        read_submission(path)
    assert [p for p in e.value.problems if p.startswith(SEED_PROBLEM)], e.value.problems


@pytest.mark.parametrize("write", [_json_file, _npz_file], ids=["json", "npz"])
def test_valid_or_absent_seed_is_read(tmp_path, write):
    assert read_submission(write(tmp_path / "a.x", seed=0)).metadata.seed == 0
    assert read_submission(write(tmp_path / "b.x", seed=12345)).metadata.seed == 12345
    assert read_submission(write(tmp_path / "c.x")).metadata.seed is None


def test_seed_written_only_when_given():
    assert sorted(_meta().to_doc()) == OLD_KEYS
    assert _meta(seed=3).to_doc() == {**_meta().to_doc(), "seed": 3}


def test_json_schema_knows_the_seed():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "benchmark" / "submission.schema.json").read_text(encoding="utf-8"))
    doc = {**_meta().to_doc(), "predictions": {"n0": {"test_acc": 0.5, "gen_gap": 0.1}}}
    for seed in (0, 7):
        jsonschema.validate({**doc, "seed": seed}, schema)
    for seed in (-1, True, "3", 1.5, None):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**doc, "seed": seed}, schema)


# --------------------------------------------------------------------------- writing and scoring (tiny zoo)


@pytest.fixture(scope="module")
def zoo(tiny_preset_zoo):
    from zoo_builder.storage import load_zoo

    return load_zoo(tiny_preset_zoo)


@pytest.fixture(scope="module")
def task(zoo):
    from benchmark.tasks import load_task

    return load_task("generalization", zoo, "id")


def _preds(task, seed=1) -> dict:
    rng = np.random.default_rng(seed)
    return {i: {"test_acc": float(rng.random()), "gen_gap": float(rng.random())} for i in task.test.ids}


def test_file_without_seed_is_byte_identical_to_before(tmp_path, task):
    preds = _preds(task)
    plain = write_submission(tmp_path / "plain.json", task=task, method="m", predictions=preds)
    none = write_submission(tmp_path / "none.json", task=task, method="m", predictions=preds, seed=None)
    m = task_metadata(task, method="m")
    # what the writer produced before seeds existed: the old keys, sorted, one line
    before = {"format": "zoobench-submission", "format_version": 1, "method": "m", "version": "0",
              "description": "", "task": "generalization", "split": "id",
              "all_checkpoints": m.all_checkpoints,
              "zoo": {"name": m.zoo_name, "weights_fingerprint": m.weights_fingerprint},
              "split_fingerprint": m.split_fingerprint, "predictions": jsonable(preds)}
    expected = (json.dumps(before, sort_keys=True) + "\n").encode("utf-8")
    assert plain.read_bytes() == none.read_bytes() == expected
    seeded = write_submission(tmp_path / "seeded.json", task=task, method="m", predictions=preds, seed=4)
    doc = json.loads(seeded.read_bytes())
    assert doc.pop("seed") == 4 and doc == json.loads(expected)
    npz = write_submission(tmp_path / "seeded.npz", task=task, method="m", predictions=preds, seed=4)
    assert read_submission(npz).metadata.seed == 4


@pytest.mark.parametrize("bad", [-1, True, "3"])
def test_writer_refuses_an_invalid_seed(tmp_path, task, bad):
    with pytest.raises(ValueError, match=SEED_PROBLEM):
        write_submission(tmp_path / "s.json", task=task, method="m", predictions=_preds(task), seed=bad)
    assert not (tmp_path / "s.json").exists()
    assert task_metadata(task, method="m", seed=np.int64(2)).seed == 2


def test_score_and_store_carry_the_seed(tmp_path, task, zoo):
    from leaderboard.score import score_submission

    seeded = write_submission(tmp_path / "a.json", task=task, method="m", predictions=_preds(task), seed=9)
    plain = write_submission(tmp_path / "b.json", task=task, method="m", predictions=_preds(task, 2))
    results = [score_submission(p, zoo, resamples=20) for p in (seeded, plain)]
    assert [r["seed"] for r in results] == [9, None]
    assert results[0]["bootstrap"]["seed"] == 0  # the bootstrap's seed is its own
    conn = connect(tmp_path / "lb.sqlite")
    for r in results:
        add_result(conn, r)
    assert [e["seed"] for e in entries(conn)] == [9, None]
    conn.close()


# --------------------------------------------------------------------------- the store


# The table as schema version 1 created it (no seed column).
OLD_SCHEMA = """
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, method TEXT NOT NULL, version TEXT NOT NULL,
    description TEXT NOT NULL, task TEXT NOT NULL, split TEXT NOT NULL, all_checkpoints INTEGER NOT NULL,
    zoo_name TEXT NOT NULL, zoo_fingerprint TEXT NOT NULL, split_fingerprint TEXT NOT NULL,
    metrics TEXT NOT NULL, symmetry TEXT NOT NULL, bootstrap TEXT NOT NULL, sha256 TEXT NOT NULL,
    scored_at TEXT NOT NULL, UNIQUE (sha256, zoo_fingerprint));
CREATE INDEX submissions_task ON submissions (task, split);
INSERT INTO submissions (method, version, description, task, split, all_checkpoints, zoo_name,
    zoo_fingerprint, split_fingerprint, metrics, symmetry, bootstrap, sha256, scored_at)
    VALUES ('old', '1', '', 'merging', 'id', 0, 'z', 'f', 's',
            '{"acc_ratio": {"value": 0.9, "ci_low": 0.8, "ci_high": 1.0, "n": 5}}', '{}', '{}', 'x',
            '2026-01-01T00:00:00+00:00');
PRAGMA user_version = 1;
"""


def test_a_database_without_the_seed_column_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.close()
    conn = connect(path)
    assert "seed" in {row[1] for row in conn.execute("PRAGMA table_info(submissions)")}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    [row] = entries(conn)
    assert (row["method"], row["seed"], row["metrics"]["acc_ratio"]["value"]) == ("old", None, 0.9)
    add_result(conn, _result("new", 0.5, "y", seed=3))
    conn.close()
    conn = connect(path)  # migrating again changes nothing
    assert [(r["method"], r["seed"]) for r in entries(conn)] == [("old", None), ("new", 3)]
    conn.close()


def test_a_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(ValueError, match="schema version 99"):
        connect(path)


# --------------------------------------------------------------------------- tables


def _result(method, ratio, sha, seed=None, barrier=0.3, version="1", sym=0.1) -> dict:
    m = {"acc_ratio": {"value": ratio, "ci_low": ratio - 0.05, "ci_high": ratio + 0.05, "n": 5},
         "loss_barrier": {"value": barrier, "ci_low": barrier - 0.1, "ci_high": barrier + 0.1, "n": 5}}
    return {"method": method, "version": version, "description": "", "task": "merging", "split": "id",
            "all_checkpoints": False, "zoo": {"name": "z", "weights_fingerprint": "f" * 64},
            "split_fingerprint": "s", "metrics": m, "symmetry": {"agreement": sym}, "bootstrap": {},
            "sha256": sha, "seed": seed}


@pytest.fixture()
def rows(tmp_path):
    conn = connect(tmp_path / "lb.sqlite")
    add_result(conn, _result("a", 0.70, "1", seed=0, barrier=0.5, sym=0.1))
    add_result(conn, _result("a", 0.10, "2", seed=1, barrier=0.9, sym=0.2))  # replaced below
    add_result(conn, _result("a", 0.80, "3", seed=2, barrier=0.4, sym=0.3))
    add_result(conn, _result("a", 0.95, "4", seed=1, barrier=0.2, sym=0.5))  # seed 1 again: replaces
    add_result(conn, _result("b", 0.99, "5", barrier=0.6))
    add_result(conn, _result("b", 0.85, "6", barrier=0.1))  # unseeded: the latest wins
    out = entries(conn)
    conn.close()
    return out


def test_seeded_runs_become_one_row_with_mean_and_std(rows):
    [table] = group_rows(rows)
    a, b = table["rows"]
    assert (a["method"], a["seeds"], a["seed_values"]) == ("a", 3, [0, 1, 2])
    for metric, values in (("acc_ratio", [0.70, 0.95, 0.80]), ("loss_barrier", [0.5, 0.2, 0.4])):
        mean, std = np.mean(values), np.std(values, ddof=1)
        assert a["metrics"][metric] == {"value": mean, "ci_low": mean - std, "ci_high": mean + std, "n": 5,
                                        "std": std, "seeds": 3}
    assert a["symmetry"] == {"agreement": np.mean([0.1, 0.5, 0.3])}
    assert (b["method"], b["seeds"], b["sha256"]) == ("b", None, "6")
    assert b["metrics"]["acc_ratio"] == pytest.approx({"value": 0.85, "ci_low": 0.8, "ci_high": 0.9, "n": 5})


def test_one_seed_keeps_its_bootstrap_interval():
    rows = [{**_result("a", 0.7, "1", seed=5), "zoo_name": "z", "zoo_fingerprint": "f" * 64}]
    [table] = group_rows(rows)
    [row] = table["rows"]
    assert row["seeds"] == 1
    assert row["metrics"]["acc_ratio"] == {"value": 0.7, "ci_low": 0.7 - 0.05, "ci_high": 0.7 + 0.05, "n": 5,
                                           "std": 0.0, "seeds": 1}


def test_seeded_and_unseeded_runs_of_one_method_are_two_rows():
    rows = [{**_result("a", r, str(k), seed=s), "zoo_name": "z", "zoo_fingerprint": "f" * 64}
            for k, (r, s) in enumerate([(0.5, None), (0.6, 0), (0.7, 1)])]
    [table] = group_rows(rows)
    assert [(r["method"], r["seeds"]) for r in table["rows"]] == [("a", None), ("a", 2)]


def test_markdown_and_text_show_seeds_and_what_plus_minus_means(rows):
    md = render(rows, "markdown")
    assert PLUS_MINUS in md
    header = ["method", "acc_ratio", "loss_barrier", "unit_match_acc", "merged_acc", "seeds",
              "consistency/permutation", "consistency/scale", "consistency/sign"]
    assert "| " + " | ".join(header) + " |" in md
    ratio, barrier = [0.70, 0.95, 0.80], [0.5, 0.2, 0.4]
    a = (f"| a 1 | {np.mean(ratio):.3f} ± {np.std(ratio, ddof=1):.3f} | "
         f"{np.mean(barrier):.3f} ± {np.std(barrier, ddof=1):.3f} | – | – | 3 |")
    assert a in md
    # bold on the means: b's latest 0.85 beats a's mean 0.817; a's mean barrier 0.367 loses to b's 0.1
    assert "| b 1 | **0.850 ± 0.050** | **0.100 ± 0.100** | – | – |  |" in md
    text = render(rows, "text")
    assert PLUS_MINUS in text and " seeds " in text


def test_json_tables_carry_seeds_and_std(rows):
    [table] = json.loads(render(rows, "json"))["tables"]
    a, b = table["rows"]
    assert (a["seeds"], a["seed_values"], b["seeds"], b["seed_values"]) == (3, [0, 1, 2], None, [])
    assert a["metrics"]["acc_ratio"]["std"] == pytest.approx(np.std([0.70, 0.95, 0.80], ddof=1))
    assert "std" not in b["metrics"]["acc_ratio"]
    assert table["plus_minus"] == PLUS_MINUS
